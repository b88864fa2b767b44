"""Reap idle leaked EphemeralRunners, and nothing else.

An EphemeralRunner is *provably leaked* when every job field in its status is
empty (jobRequestId, jobId, jobRepositoryName, jobWorkflowRef, workflowRunId,
jobDisplayName) and either its owning EphemeralRunnerSet is at replicas=0, or
the set holds more runners than it desires and this idle runner is part of
that excess.  Leaked runners keep Running pods alive and stalled the
2026-06-09 freeze drain for its whole 20-minute window.

Safety rules, each enforced by :func:`select` and property-tested:

* a runner with any job field set is never selected;
* a warm pool (owning AutoscalingRunnerSet with minRunners > 0) whose current
  count equals its desired count is never touched;
* a runner without a resolvable owner, or already being deleted, is left alone;
* the excess is filled with idle runners only, at most ``current - desired``.

:func:`reap` re-reads every chosen CR (and its set) just before deleting it,
deletes gracefully with a resourceVersion precondition, then waits, bounded,
for the deleted CRs to go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from flywheel_runtime.kube import ARC_SCALE_SET_LABEL

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client

JOB_FIELDS = ("jobRequestId", "jobId", "jobRepositoryName", "jobWorkflowRef", "workflowRunId", "jobDisplayName")
OWNER_AT_ZERO, EXCESS = "owner-at-zero", "excess"


@dataclass(frozen=True)
class Leak:
    namespace: str
    name: str
    owner: str
    reason: str  # OWNER_AT_ZERO or EXCESS
    resource_version: str | None


@dataclass(frozen=True)
class SetReport:
    namespace: str
    name: str
    scale_set: str | None
    replicas: int | None
    current: int
    with_job: int
    warm_pool: bool
    verdict: str  # what the reaper concluded for this set


@dataclass
class Plan:
    leaks: list[Leak] = field(default_factory=list)
    sets: list[SetReport] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # runners left alone, and why

    def to_dict(self) -> dict[str, Any]:
        return {"leaks": [asdict(x) for x in self.leaks], "sets": [asdict(s) for s in self.sets],
                "skipped": self.skipped}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def has_job(runner: dict[str, Any]) -> bool:
    """True when any job field is set: None, "" and 0 all mean empty."""
    status = runner.get("status") or {}
    return any(status.get(f) not in (None, "", 0) for f in JOB_FIELDS)


def _owner(obj: dict[str, Any], kind: str) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("name"):
            return str(ref["name"])
    return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _excess_order(idle: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which idle runners go first: not-yet-running ones, then the newest."""
    out = sorted(idle, key=lambda r: _meta(r).get("name", ""))
    out.sort(key=lambda r: str(_meta(r).get("creationTimestamp") or ""), reverse=True)
    out.sort(key=lambda r: ((r.get("status") or {}).get("phase") == "Running"))
    return out


def select(runners: Iterable[dict[str, Any]], runner_sets: Iterable[dict[str, Any]],
           scale_sets: Iterable[dict[str, Any]] = ()) -> Plan:
    """Pure: the provably leaked EphemeralRunners in one snapshot.

    ``runners`` are EphemeralRunners, ``runner_sets`` EphemeralRunnerSets and
    ``scale_sets`` AutoscalingRunnerSets, all in Kubernetes JSON shape.
    """
    plan = Plan()
    ars_by_key = {(_meta(a).get("namespace", ""), _meta(a).get("name", "")): a for a in scale_sets}
    sets = {(_meta(s).get("namespace", ""), _meta(s).get("name", "")): s for s in runner_sets}
    members: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in sets}
    for r in runners:
        m = _meta(r)
        ns, name = m.get("namespace", ""), m.get("name", "")
        owner = _owner(r, "EphemeralRunnerSet")
        if m.get("deletionTimestamp"):
            plan.skipped.append({"namespace": ns, "name": name, "why": "already being deleted"})
            continue
        if owner is None or (ns, owner) not in sets:
            plan.skipped.append({"namespace": ns, "name": name, "why": "no EphemeralRunnerSet owner in the snapshot"})
            continue
        members[(ns, owner)].append(r)

    for (ns, set_name), ers in sorted(sets.items()):
        mine = members[(ns, set_name)]
        spec = ers.get("spec") or {}
        replicas = _int(spec.get("replicas"))
        if replicas is None and "patchID" in spec:
            # ARC's own type: `replicas,omitempty` beside an always-written `patchID`, so a set
            # ARC wrote at zero carries no replicas at all (seen on 0.14.0's live controller).
            replicas = 0
        status_current = _int((ers.get("status") or {}).get("currentReplicas"))
        ars_name = _owner(ers, "AutoscalingRunnerSet") or (_meta(ers).get("labels") or {}).get(ARC_SCALE_SET_LABEL)
        ars = ars_by_key.get((ns, ars_name or ""))
        min_runners = _int(((ars or {}).get("spec") or {}).get("minRunners")) or 0
        warm = min_runners > 0
        idle = [r for r in mine if not has_job(r)]
        busy = len(mine) - len(idle)
        current = len(mine)

        def report(verdict: str) -> None:
            plan.sets.append(SetReport(ns, set_name, ars_name, replicas, current, busy, warm, verdict))

        def keep(why: str) -> None:
            for r in idle:
                plan.skipped.append({"namespace": ns, "name": _meta(r).get("name", ""), "why": why})

        if _meta(ers).get("deletionTimestamp"):
            keep("its EphemeralRunnerSet is being deleted")
            report("set being deleted: left to ARC")
            continue
        if replicas is None:
            keep("its EphemeralRunnerSet has no spec.replicas")
            report("no spec.replicas: not provable")
            continue
        if warm and (current == replicas or status_current == replicas):
            keep("warm pool at current == desired")
            report("warm pool at desired: untouchable")
            continue
        if replicas == 0:
            chosen = [(r, OWNER_AT_ZERO) for r in idle]
        else:
            excess = current - replicas
            chosen = [(r, EXCESS) for r in _excess_order(idle)[:max(0, excess)]]
        picked = {id(r) for r, _ in chosen}
        for r, why in chosen:
            m = _meta(r)
            plan.leaks.append(Leak(ns, m.get("name", ""), set_name, why, m.get("resourceVersion")))
        for r in idle:
            if id(r) not in picked:
                plan.skipped.append({"namespace": ns, "name": _meta(r).get("name", ""),
                                     "why": "idle but within desired"})
        report(f"{len(chosen)} leaked" if chosen else "clean")
    return plan


@dataclass
class ReapResult:
    plan: Plan
    deleted: list[str] = field(default_factory=list)
    spared: list[dict[str, str]] = field(default_factory=list)  # chosen, but the fresh re-check said no
    settled: bool = True
    unsettled: list[str] = field(default_factory=list)  # deleted, but still present at the deadline

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "deleted": self.deleted, "spared": self.spared, "settled": self.settled,
                "unsettled": self.unsettled}


def reap(cluster: Client, namespace: str | None, *, apply: bool, settle_timeout_s: float = 60.0,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ReapResult:
    """List, select, and (with ``apply``) delete with a just-in-time re-check each."""

    def snapshot(ns: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return (cluster.list_arc("ephemeralrunners", ns), cluster.list_arc("ephemeralrunnersets", ns),
                cluster.list_arc("autoscalingrunnersets", ns))

    plan = select(*snapshot(namespace))
    result = ReapResult(plan)
    if not apply:
        return result
    for leak in plan.leaks:
        # Fresh look at this runner's world: the runner, its set and siblings.
        runners, sets, scale_sets = snapshot(leak.namespace)
        fresh = next((r for r in runners if _meta(r).get("name") == leak.name), None)
        if fresh is None:
            result.spared.append({"name": leak.name, "why": "gone before deletion"})
            continue
        again = select(runners, sets, scale_sets)
        still = next((x for x in again.leaks if x.name == leak.name and x.namespace == leak.namespace), None)
        if still is None:
            why = "picked up a job" if has_job(fresh) else "no longer provably leaked"
            result.spared.append({"name": leak.name, "why": why})
            continue
        if cluster.delete_arc("ephemeralrunners", leak.namespace, leak.name,
                              resource_version=still.resource_version):
            result.deleted.append(f"{leak.namespace}/{leak.name}")
        else:
            result.spared.append({"name": leak.name, "why": "changed or gone between re-check and delete"})
    # Bounded wait: the deleted CRs must go before callers (the freeze) proceed.
    deadline = clock() + settle_timeout_s
    pending = list(result.deleted)
    while pending:
        pending = [k for k in pending if cluster.get_arc("ephemeralrunners", *k.split("/", 1)) is not None]
        if not pending:
            break
        if clock() >= deadline:
            result.settled = False
            result.unsettled = pending
            break
        sleep(0.5)
    return result
