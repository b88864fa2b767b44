"""Warm-pool schedule and cleanup policy: pure functions on an injected clock,
and consistency with the CronJobs the topology renders."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flywheel_runtime.audit import cleanup, warmpool
from flywheel_runtime.audit.warmpool import Cron, desired_min_runners, last_fire
from flywheel_runtime.cli import build_parser
from flywheel_runtime.topology import load, render
from flywheel_runtime.topology.model import CleanupPolicy, WarmPoolSchedule

UTC = dt.timezone.utc
BUSINESS = (WarmPoolSchedule("0 13 * * 1-5", 1), WarmPoolSchedule("0 1 * * *", 0))


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


@pytest.mark.parametrize("now,want", [
    ("2026-11-30T13:00:00", 1),  # Monday 13:00: business hours start
    ("2026-11-30T12:59:59", 0),  # a second before: Monday 01:00 fired last
    ("2026-11-30T23:59:00", 1),
    ("2026-12-01T00:59:00", 1),  # Tuesday before 01:00: Monday 13:00 still wins
    ("2026-12-01T01:00:00", 0),
    ("2026-12-04T13:30:00", 1),  # Friday
    ("2026-12-05T13:30:00", 0),  # Saturday: no warm pool
    ("2026-12-06T18:00:00", 0),  # Sunday
    ("2026-12-07T00:59:00", 0),  # Monday before 01:00: Sunday's 01:00 fired last
])
def test_latest_fire_at_or_before_now_wins(now: str, want: int) -> None:
    assert desired_min_runners(BUSINESS, at(now)) == want


def test_no_fire_within_the_window_gives_the_default() -> None:
    assert desired_min_runners([WarmPoolSchedule("0 13 29 2 *", 1)], at("2026-11-30T13:00:00"), default=7) == 7
    assert last_fire([], at("2026-11-30T13:00:00")) is None


def test_cron_fields() -> None:
    c = Cron.parse("*/15 9-17 * * 1-5")
    assert c.minutes == {0, 15, 30, 45} and c.hours == set(range(9, 18)) and c.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert Cron.parse("5,10 1 * * *").minutes == {5, 10}
    # Vixie semantics: both day fields restricted -> either matches.
    either = Cron.parse("0 0 1 * 1")
    assert either.matches(at("2026-12-01T00:00:00"))  # the 1st (a Tuesday)
    assert either.matches(at("2026-12-07T00:00:00"))  # a Monday
    assert not either.matches(at("2026-12-08T00:00:00"))
    for bad in ("0 13 * *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "5-1 * * * *"):
        with pytest.raises(ValueError):
            Cron.parse(bad)


def test_scale_set_without_warm_pool_keeps_its_own_min() -> None:
    topo = load()
    assert warmpool.scale_set_min_runners(topo.scale_set("tinyland-docker"), at("2026-11-30T14:00:00")) == 0


def test_rendered_warm_pool_cronjobs_match_the_schedules_and_this_cli() -> None:
    topo = load()
    parser = build_parser()
    jobs = render.warm_pool_cronjobs(topo)
    assert jobs, "the shipped topology has a warm pool"
    for job in jobs:
        spec = job["spec"]
        container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        args = parser.parse_args(container["args"])
        assert args.handler.__name__ == "_warm_pool" and args.apply
        ss = topo.scale_set(args.scale_set)
        assert ss.warm_pool is not None
        sched = next(s for s in ss.warm_pool.schedules if s.cron == spec["schedule"])
        # At the CronJob's own fire instant, reconcile converges to that schedule's value.
        fire = next(t for t in (at("2026-11-30T00:00:00") + dt.timedelta(minutes=m) for m in range(7 * 24 * 60))
                    if Cron.parse(spec["schedule"]).matches(t))
        assert warmpool.scale_set_min_runners(ss, fire) == sched.min_runners
        assert spec["timeZone"] in ("Etc/UTC", "UTC") and ss.warm_pool.timezone == "UTC"


class FakeCustomObjects:
    """Records reconcile's calls: the real API is exercised in tests/e2e."""

    def __init__(self, min_runners: int) -> None:
        self.obj = {"spec": {"minRunners": min_runners}}
        self.patches: list[dict[str, Any]] = []

    def get_namespaced_custom_object(self, *a: Any) -> dict[str, Any]:
        return self.obj

    def patch_namespaced_custom_object(self, *a: Any) -> None:
        self.patches.append(a[-1])
        self.obj = {"spec": {**self.obj["spec"], **a[-1]["spec"]}}


def test_reconcile_dry_run_and_apply() -> None:
    topo = load()
    api = FakeCustomObjects(0)
    dry = warmpool.reconcile(api, topo, at("2026-11-30T13:05:00"), apply=False)
    assert [(c["scale_set"], c["from"], c["to"], c["applied"]) for c in dry] == [("tinyland-nix", 0, 1, False)]
    assert api.patches == []
    done = warmpool.reconcile(api, topo, at("2026-11-30T13:05:00"))
    assert done[0]["applied"] and api.patches == [{"spec": {"minRunners": 1}}]


# -- cleanup ------------------------------------------------------------------

POLICY = CleanupPolicy("*/5 * * * *", "Forbid", terminating_after_s=300, succeeded_after_s=600, failed_after_s=1800)
NOW = at("2026-05-12T12:00:00")


def pod(name: str, phase: str, finished_s_ago: float | None = None, deleting_s_ago: float | None = None,
        grace: int = 30) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "arc-runners",
                            "creationTimestamp": (NOW - dt.timedelta(hours=3)).isoformat()}
    status: dict[str, Any] = {"phase": phase, "startTime": (NOW - dt.timedelta(hours=2)).isoformat()}
    if finished_s_ago is not None:
        status["containerStatuses"] = [{"name": "runner", "state": {"terminated": {
            "finishedAt": (NOW - dt.timedelta(seconds=finished_s_ago)).isoformat().replace("+00:00", "Z")}}}]
    if deleting_s_ago is not None:
        # deletionTimestamp = request time + grace period.
        meta["deletionTimestamp"] = (NOW - dt.timedelta(seconds=deleting_s_ago) + dt.timedelta(seconds=grace)
                                     ).isoformat()
        meta["deletionGracePeriodSeconds"] = grace
    return {"metadata": meta, "status": status}


def test_cleanup_policy_boundaries() -> None:
    pods = [
        pod("ok-young", "Succeeded", 599), pod("ok-old", "Succeeded", 601),
        pod("failed-young", "Failed", 1799), pod("failed-old", "Failed", 1801),
        pod("running", "Running"), pod("pending", "Pending"),
        pod("term-young", "Running", deleting_s_ago=299), pod("term-old", "Running", deleting_s_ago=301),
    ]
    actions = cleanup.select(pods, POLICY, NOW)
    assert sorted((a.name, a.kind) for a in actions) == [
        ("failed-old", "delete"), ("ok-old", "delete"), ("term-old", "force-delete")]
    force = next(a for a in actions if a.kind == "force-delete")
    assert force.grace_period_seconds == 0
    assert next(a for a in actions if a.kind == "delete").grace_period_seconds is None


def test_cleanup_uses_the_injected_clock_only() -> None:
    p = [pod("done", "Succeeded", 0)]
    assert cleanup.select(p, POLICY, NOW) == []
    assert [a.name for a in cleanup.select(p, POLICY, NOW + dt.timedelta(seconds=601))] == ["done"]


def test_cleanup_cronjob_matches_the_policy_and_this_cli() -> None:
    topo = load()
    cj = render.cleanup_cronjob(topo)
    assert cj["spec"]["schedule"] == topo.cleanup.schedule == "*/5 * * * *"
    assert cj["spec"]["concurrencyPolicy"] == topo.cleanup.concurrency_policy == "Forbid"
    assert (topo.cleanup.terminating_after_s, topo.cleanup.succeeded_after_s, topo.cleanup.failed_after_s) == (
        300, 600, 1800)
    container = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.handler.__name__ == "_cleanup" and args.apply
    assert cj["metadata"]["namespace"] in cleanup.runner_namespaces(topo)
    # The CronJob's service account may list and delete pods where it runs.
    roles = [o for o in render.operator_rbac(topo) if o["kind"] == "Role"
             and o["metadata"]["namespace"] == cj["metadata"]["namespace"]]
    pod_rule = next(r for r in roles[0]["rules"] if "pods" in r["resources"])
    assert {"list", "delete"} <= set(pod_rule["verbs"])
