"""Warm pool: the scheduled minRunners override (tinyland-nix).

The warm-pool CronJobs run ``flywheel-runtime warm-pool reconcile``.  The
desired minRunners at any instant is that of the schedule which fired last
(13:00 UTC weekdays -> 1, 01:00 UTC daily -> 0), so a reconcile at any time
converges; a missed CronJob run is repaired by the next one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from flywheel_runtime.topology.model import ScaleSet, Topology, WarmPoolSchedule

ARC_GROUP, ARC_VERSION, ARC_PLURAL = "actions.github.com", "v1alpha1", "autoscalingrunnersets"


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


def cron_matches(cron: str, t: dt.datetime) -> bool:
    """Does the 5-field cron expression fire at minute ``t`` (UTC)?"""
    minute, hour, dom, month, dow = cron.split()
    dows = {d % 7 for d in _field(dow, 0, 7)}  # 0 and 7 are both Sunday
    cron_dow = (t.weekday() + 1) % 7  # Python Monday=0 -> cron Monday=1
    day_ok_dom, day_ok_dow = t.day in _field(dom, 1, 31), cron_dow in dows
    # Vixie cron: when both day fields are restricted, either may match.
    if dom != "*" and dow != "*":
        day_ok = day_ok_dom or day_ok_dow
    else:
        day_ok = day_ok_dom and day_ok_dow
    return (t.minute in _field(minute, 0, 59) and t.hour in _field(hour, 0, 23)
            and t.month in _field(month, 1, 12) and day_ok)


def last_fire(schedules: Iterable[WarmPoolSchedule], now: dt.datetime) -> WarmPoolSchedule | None:
    """The schedule that fired most recently at or before ``now`` (within 8 days)."""
    now = now.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
    scheds = list(schedules)
    t = now
    for _ in range(8 * 24 * 60):
        hits = [s for s in scheds if cron_matches(s.cron, t)]
        if hits:
            return hits[-1]
        t -= dt.timedelta(minutes=1)
    return None


def desired_min_runners(ss: ScaleSet, now: dt.datetime) -> int:
    if ss.warm_pool is None:
        return ss.min_runners
    fired = last_fire(ss.warm_pool.schedules, now)
    return fired.min_runners if fired else ss.min_runners


def reconcile(custom_api: Any, topo: Topology, now: dt.datetime, *, apply: bool = True,
              only: str | None = None) -> list[dict[str, Any]]:
    """Patch each warm-pool AutoscalingRunnerSet's spec.minRunners to the schedule's value."""
    changes = []
    for ss in topo.scale_sets:
        if ss.warm_pool is None or (only and ss.name != only):
            continue
        want = desired_min_runners(ss, now)
        obj = custom_api.get_namespaced_custom_object(ARC_GROUP, ARC_VERSION, ss.namespace, ARC_PLURAL, ss.name)
        have = (obj.get("spec") or {}).get("minRunners")
        change = {"scale_set": ss.name, "namespace": ss.namespace, "from": have, "to": want, "applied": False}
        if have != want and apply:
            custom_api.patch_namespaced_custom_object(ARC_GROUP, ARC_VERSION, ss.namespace, ARC_PLURAL, ss.name,
                                                      {"spec": {"minRunners": want}})
            change["applied"] = True
        changes.append(change)
    return changes
