"""The leaked-runner reaper's selection: examples and generated states.

Property tests run in the default suite with 1,000 examples each: nothing with
a job, and no warm pool at current == desired, is ever selected; the
provably leaked are selected.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel_runtime.audit.reaper import EXCESS, JOB_FIELDS, OWNER_AT_ZERO, has_job, select

NS = "arc-runners"


def ars(name: str, min_runners: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"minRunners": min_runners, "maxRunners": 10}}


def ers(name: str, replicas: int | None, owner: str | None = None, current: int | None = None,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if owner:
        meta["ownerReferences"] = [{"kind": "AutoscalingRunnerSet", "name": owner, "uid": "u-" + owner}]
    if deleting:
        meta["deletionTimestamp"] = "2026-06-09T10:00:00Z"
    spec = {} if replicas is None else {"replicas": replicas}
    status = {} if current is None else {"currentReplicas": current}
    return {"metadata": meta, "spec": spec, "status": status}


def runner(name: str, owner: str | None, job: dict[str, Any] | None = None, phase: str = "Running",
           created: str = "2026-06-09T09:00:00Z", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "creationTimestamp": created, "resourceVersion": "7"}
    if owner:
        meta["ownerReferences"] = [{"kind": "EphemeralRunnerSet", "name": owner, "uid": "u-" + owner}]
    if deleting:
        meta["deletionTimestamp"] = "2026-06-09T10:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, **(job or {})}}


def test_job_fields_are_the_six_arc_status_fields() -> None:
    assert JOB_FIELDS == ("jobRequestId", "jobId", "jobRepositoryName", "jobWorkflowRef", "workflowRunId",
                          "jobDisplayName")


def test_empty_values_mean_no_job_and_any_set_field_means_a_job() -> None:
    assert not has_job(runner("a", "s", {"jobRequestId": 0, "jobId": "", "workflowRunId": None}))
    for f in JOB_FIELDS:
        value = 42 if f in ("jobRequestId", "workflowRunId") else "x"
        assert has_job(runner("a", "s", {f: value})), f


def test_owner_at_zero_selects_every_idle_runner_but_not_the_busy_one() -> None:
    runners = [runner("idle-1", "set"), runner("idle-2", "set", phase="Pending"),
               runner("busy", "set", {"jobId": "123", "jobDisplayName": "build"})]
    plan = select(runners, [ers("set", 0, "tinyland-nix")], [ars("tinyland-nix")])
    assert sorted((x.name, x.reason) for x in plan.leaks) == [("idle-1", OWNER_AT_ZERO), ("idle-2", OWNER_AT_ZERO)]
    assert plan.leaks[0].resource_version == "7"


def test_excess_takes_only_idle_runners_pending_first_then_newest() -> None:
    runners = [runner("old-running", "set", created="2026-06-09T08:00:00Z"),
               runner("new-running", "set", created="2026-06-09T09:30:00Z"),
               runner("pending", "set", phase="Pending", created="2026-06-09T07:00:00Z"),
               runner("busy", "set", {"jobRequestId": 9})]
    plan = select(runners, [ers("set", 2, "tinyland-docker")], [ars("tinyland-docker")])
    assert [(x.name, x.reason) for x in plan.leaks] == [("pending", EXCESS), ("new-running", EXCESS)]


def test_warm_pool_at_desired_is_untouchable_even_with_idle_runners() -> None:
    runners = [runner("warm-1", "set")]
    plan = select(runners, [ers("set", 1, "tinyland-nix", current=1)], [ars("tinyland-nix", min_runners=1)])
    assert plan.leaks == []
    assert plan.sets[0].verdict == "warm pool at desired: untouchable"


def test_runners_without_a_known_owner_or_already_deleting_are_left_alone() -> None:
    runners = [runner("orphan", None), runner("stranger", "other-set"), runner("going", "set", deleting=True)]
    plan = select(runners, [ers("set", 0)], [])
    assert plan.leaks == []
    assert {s["name"] for s in plan.skipped} == {"orphan", "stranger", "going"}


def test_arc_writes_zero_replicas_as_none_beside_its_patch_id() -> None:
    """ARC 0.14.0's EphemeralRunnerSetSpec: `replicas,omitempty`, `patchID` always: a set at zero
    reads {"patchID": N} and its idle runner is owner-at-zero."""
    at_zero = ers("s1", None)
    at_zero["spec"] = {"patchID": 0}
    plan = select([runner("a", "s1")], [at_zero])
    assert [(x.name, x.reason) for x in plan.leaks] == [("a", "owner-at-zero")]


def test_set_without_replicas_or_being_deleted_is_not_provable() -> None:
    plan = select([runner("a", "s1"), runner("b", "s2")], [ers("s1", None), ers("s2", 0, deleting=True)])
    assert plan.leaks == []


# -- generated states ---------------------------------------------------------

JOB_VALUES = {
    "jobRequestId": st.one_of(st.none(), st.just(0), st.integers(1, 2**62)),
    "jobId": st.one_of(st.none(), st.just(""), st.text("0123456789abcdef", min_size=1, max_size=8)),
    "jobRepositoryName": st.one_of(st.none(), st.just(""), st.sampled_from(["tinyland-inc/lab", "a/b"])),
    "jobWorkflowRef": st.one_of(st.none(), st.just(""), st.just("a/b/.github/workflows/ci.yml@refs/heads/main")),
    "workflowRunId": st.one_of(st.none(), st.just(0), st.integers(1, 2**62)),
    "jobDisplayName": st.one_of(st.none(), st.just(""), st.just("build")),
}


# A job status: each field absent, empty (None/""/0) or set.  Mostly empty,
# so that "exactly one field set" edges come up often.
JOB_STATUS = st.fixed_dictionaries({}, optional={f: v for f, v in JOB_VALUES.items()})

RUNNER = st.tuples(
    st.sampled_from([0, 0, 0, 1, 2]),  # 0: owned by its set; 1: no owner; 2: an unknown set
    JOB_STATUS,
    st.sampled_from(["Pending", "Running", "Failed", "Succeeded", "Outdated"]),
    st.integers(0, 59),  # creation minute
    st.integers(0, 9),  # 0: already being deleted
)
SET = st.tuples(
    st.integers(0, 2),  # the AutoscalingRunnerSet's minRunners (> 0: warm pool)
    st.one_of(st.none(), st.integers(0, 5)),  # spec.replicas
    st.one_of(st.none(), st.integers(0, 7)),  # status.currentReplicas (may be stale)
    st.integers(0, 3),  # 0: the set is being deleted
    st.lists(RUNNER, max_size=7),
)


@st.composite
def cluster_state(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    scale_sets, runner_sets, runners = [], [], []
    for i, (min_runners, replicas, current, deleting, members) in enumerate(draw(st.lists(SET, min_size=1,
                                                                                            max_size=4))):
        ars_name, ers_name = f"ss-{i}", f"ss-{i}-ers"
        scale_sets.append(ars(ars_name, min_runners))
        if current is None and members and draw(st.booleans()):
            current = len(members)  # often exactly right, as on a live cluster
        runner_sets.append(ers(ers_name, replicas, ars_name, current, deleting=deleting == 0))
        for j, (owner, job, phase, minute, gone) in enumerate(members):
            runners.append(runner(f"{ers_name}-r{j}", [ers_name, None, "ghost-set"][owner], job, phase,
                                  f"2026-06-09T09:{minute:02d}:00Z", deleting=gone == 0))
    return runners, runner_sets, scale_sets


def _live(runners: list[dict[str, Any]], ers_name: str) -> list[dict[str, Any]]:
    return [r for r in runners if not r["metadata"].get("deletionTimestamp")
            and any(o["name"] == ers_name for o in r["metadata"].get("ownerReferences", []))]


def check_safety(plan: Any, runners: list[dict[str, Any]], runner_sets: list[dict[str, Any]],
                 min_of: dict[str, int]) -> None:
    """Nothing with a job, nothing deleting, no warm pool at desired, never below desired."""
    by_name = {r["metadata"]["name"]: r for r in runners}
    for leak in plan.leaks:
        r = by_name[leak.name]
        assert not has_job(r), f"selected {leak.name} which carries a job"
        assert not r["metadata"].get("deletionTimestamp")
    for s in runner_sets:
        name = s["metadata"]["name"]
        owner = s["metadata"]["ownerReferences"][0]["name"]
        replicas = s["spec"].get("replicas")
        live = _live(runners, name)
        chosen = [x for x in plan.leaks if x.owner == name]
        at_desired = replicas is not None and (len(live) == replicas or s["status"].get("currentReplicas") == replicas)
        if min_of[owner] > 0 and at_desired:
            assert chosen == [], f"warm pool {name} at desired lost {chosen}"
        if replicas is None or s["metadata"].get("deletionTimestamp"):
            assert chosen == []
        if replicas:
            assert len(chosen) <= max(0, len(live) - replicas)


def check_liveness(plan: Any, runners: list[dict[str, Any]], runner_sets: list[dict[str, Any]],
                   min_of: dict[str, int]) -> None:
    """Every provably leaked runner is selected (the whole excess, all idle at zero)."""
    for s in runner_sets:
        name = s["metadata"]["name"]
        if s["metadata"].get("deletionTimestamp") or s["spec"].get("replicas") is None:
            continue
        replicas = s["spec"]["replicas"]
        live = _live(runners, name)
        idle = [r for r in live if not has_job(r)]
        warm_at_desired = min_of[s["metadata"]["ownerReferences"][0]["name"]] > 0 and (
            len(live) == replicas or s["status"].get("currentReplicas") == replicas)
        chosen = {x.name for x in plan.leaks if x.owner == name}
        if warm_at_desired:
            continue
        if replicas == 0:
            assert chosen == {r["metadata"]["name"] for r in idle}
            assert all(x.reason == OWNER_AT_ZERO for x in plan.leaks if x.owner == name)
        else:
            assert len(chosen) == min(len(idle), max(0, len(live) - replicas))
            assert all(x.reason == EXCESS for x in plan.leaks if x.owner == name)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster_state())
def test_reaper_properties_over_generated_states(state: Any) -> None:
    """1,000 generated cluster states: safety and liveness of the selection."""
    runners, runner_sets, scale_sets = state
    plan = select(runners, runner_sets, scale_sets)
    min_of = {a["metadata"]["name"]: a["spec"]["minRunners"] for a in scale_sets}
    check_safety(plan, runners, runner_sets, min_of)
    check_liveness(plan, runners, runner_sets, min_of)


def test_the_property_checks_can_fail() -> None:
    """The checks above reject a plan that deletes a busy runner or drains a warm pool."""
    import pytest

    from flywheel_runtime.audit.reaper import Leak, Plan

    runners = [runner("busy", "set", {"jobId": "1"}), runner("warm", "wset")]
    sets = [ers("set", 0, "a"), ers("wset", 1, "b", current=1)]
    bad = Plan(leaks=[Leak(NS, "busy", "set", OWNER_AT_ZERO, "7")])
    with pytest.raises(AssertionError):
        check_safety(bad, runners, sets, {"a": 0, "b": 1})
    bad = Plan(leaks=[Leak(NS, "warm", "wset", EXCESS, "7")])
    with pytest.raises(AssertionError):
        check_safety(bad, runners, sets, {"a": 0, "b": 1})
    with pytest.raises(AssertionError):  # missing a leak: the idle runner of a set at zero
        check_liveness(Plan(), [runner("idle", "set")], sets, {"a": 0, "b": 1})
