"""Warm pool: the scheduled minRunners override (tinyland-nix).

The warm-pool CronJobs run ``flywheel-runtime warm-pool reconcile``.  The
desired minRunners at any instant is that of the schedule which fired last
(13:00 UTC weekdays -> 1, 01:00 UTC daily -> 0), so a reconcile at any time
converges; a missed CronJob run is repaired by the next one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flywheel_runtime.kube import ARC_GROUP, ARC_VERSION
from flywheel_runtime.topology.model import ScaleSet, Topology, WarmPoolSchedule

ARC_PLURAL = "autoscalingrunnersets"


def _field(expr: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in expr.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            step = int(s)
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
        else:
            a = b = int(part)
        if a < lo or b > hi or a > b:
            raise ValueError(f"cron field {expr!r} out of range {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return out


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression (minute hour day-of-month month day-of-week)."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # cron numbering: 0 = Sunday
    dom_any: bool
    dow_any: bool

    @classmethod
    def parse(cls, expr: str) -> "Cron":
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"cron expression {expr!r} must have 5 fields, has {len(parts)}")
        minute, hour, dom, month, dow = parts
        return cls(expr, frozenset(_field(minute, 0, 59)), frozenset(_field(hour, 0, 23)),
                   frozenset(_field(dom, 1, 31)), frozenset(_field(month, 1, 12)),
                   frozenset(d % 7 for d in _field(dow, 0, 7)),  # 0 and 7 are both Sunday
                   dom == "*", dow == "*")

    def matches(self, t: dt.datetime) -> bool:
        cron_dow = (t.weekday() + 1) % 7  # Python Monday=0 -> cron Monday=1
        dom_ok, dow_ok = t.day in self.days, cron_dow in self.weekdays
        # Vixie cron: when both day fields are restricted, either may match.
        day_ok = (dom_ok or dow_ok) if not (self.dom_any or self.dow_any) else (dom_ok and dow_ok)
        return t.minute in self.minutes and t.hour in self.hours and t.month in self.months and day_ok


def cron_matches(cron: str, t: dt.datetime) -> bool:
    """Does the 5-field cron expression fire at minute ``t``?"""
    return Cron.parse(cron).matches(t)


def last_fire(schedules: Iterable[WarmPoolSchedule], now: dt.datetime,
              tz: str = "UTC") -> WarmPoolSchedule | None:
    """The schedule that fired most recently at or before ``now`` (within 8 days).

    Cron fields are read in ``tz`` (the warm pool's timezone); a naive ``now``
    is taken as UTC.  On a tie the later-listed schedule wins.
    """
    from zoneinfo import ZoneInfo

    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    t = now.astimezone(ZoneInfo(tz)).replace(second=0, microsecond=0)
    parsed = [(Cron.parse(s.cron), s) for s in schedules]
    for _ in range(8 * 24 * 60):
        hits = [s for c, s in parsed if c.matches(t)]
        if hits:
            return hits[-1]
        t -= dt.timedelta(minutes=1)
    return None


def desired_min_runners(schedules: Iterable[WarmPoolSchedule], now: dt.datetime, default: int = 0) -> int:
    """minRunners of the schedule that fired last at or before ``now``; ``default`` if none did."""
    fired = last_fire(schedules, now)
    return fired.min_runners if fired else default


def scale_set_min_runners(ss: ScaleSet, now: dt.datetime) -> int:
    """The minRunners a scale set should have at ``now``: its warm pool's, else its own."""
    if ss.warm_pool is None:
        return ss.min_runners
    fired = last_fire(ss.warm_pool.schedules, now, ss.warm_pool.timezone)
    return fired.min_runners if fired else ss.min_runners


def _get(custom_api: Any, ss: ScaleSet) -> dict[str, Any]:
    try:
        return custom_api.get_namespaced_custom_object(ARC_GROUP, ARC_VERSION, ss.namespace, ARC_PLURAL, ss.name)
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            from flywheel_runtime.errors import ClusterError

            raise ClusterError(f"AutoscalingRunnerSet {ss.namespace}/{ss.name} not found: install the scale set "
                               "before its warm pool runs") from exc
        raise


def reconcile(custom_api: Any, topo: Topology, now: dt.datetime, *, apply: bool = True,
              only: str | None = None) -> list[dict[str, Any]]:
    """Patch each warm-pool AutoscalingRunnerSet's spec.minRunners to the schedule's value."""
    changes = []
    for ss in topo.scale_sets:
        if ss.warm_pool is None or (only and ss.name != only):
            continue
        want = scale_set_min_runners(ss, now)
        obj = _get(custom_api, ss)
        have = (obj.get("spec") or {}).get("minRunners")
        change = {"scale_set": ss.name, "namespace": ss.namespace, "from": have, "to": want, "applied": False}
        if have != want and apply:
            custom_api.patch_namespaced_custom_object(ARC_GROUP, ARC_VERSION, ss.namespace, ARC_PLURAL, ss.name,
                                                      {"spec": {"minRunners": want}})
            change["applied"] = True
        changes.append(change)
    return changes
