"""The runner cleanup policy (the arc-runners cleanup CronJob).

Succeeded pods older than 600 s and Failed pods older than 1800 s are deleted;
pods Terminating for longer than 300 s are force-deleted (grace 0): a kubelet
that never confirms termination keeps the pod, and its slot, forever.
Selection is a pure function over pods in Kubernetes' JSON shape and an
injected clock, so the CronJob, the CLI and the tests share it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flywheel_runtime.topology.model import CleanupPolicy, Topology

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client


@dataclass(frozen=True)
class Action:
    namespace: str
    name: str
    kind: str  # "delete" or "force-delete"
    why: str

    @property
    def grace_period_seconds(self) -> int | None:
        return 0 if self.kind == "force-delete" else None


def _time(value: Any) -> dt.datetime | None:
    from flywheel_runtime._files import parse_time

    return parse_time(value)


def _finished_at(pod: dict[str, Any]) -> dt.datetime | None:
    """When the pod became terminal: the latest container finish, else its start."""
    status = pod.get("status") or {}
    ends = []
    for cs in status.get("containerStatuses") or []:
        term = ((cs.get("state") or {}).get("terminated")) or {}
        if term.get("finishedAt"):
            ends.append(_time(term["finishedAt"]))
    if ends:
        return max(e for e in ends if e is not None)
    return _time(status.get("startTime")) or _time((pod.get("metadata") or {}).get("creationTimestamp"))


def select(pods: list[dict[str, Any]], policy: CleanupPolicy, now: dt.datetime) -> list[Action]:
    """Which pods the cleanup policy acts on at ``now`` (tz-aware UTC)."""
    now = _time(now)  # type: ignore[assignment]
    out: list[Action] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        deleting = _time(meta.get("deletionTimestamp"))
        phase = (pod.get("status") or {}).get("phase")
        if deleting is not None:
            # deletionTimestamp is when the grace period ends; Terminating started
            # that many seconds earlier.
            grace = int(meta.get("deletionGracePeriodSeconds") or 0)
            age = (now - (deleting - dt.timedelta(seconds=grace))).total_seconds()
            if age > policy.terminating_after_s:
                out.append(Action(ns, name, "force-delete", f"Terminating for {int(age)}s > {policy.terminating_after_s}s"))
            continue
        limit = {"Succeeded": policy.succeeded_after_s, "Failed": policy.failed_after_s}.get(phase or "")
        if limit is None:
            continue
        done = _finished_at(pod)
        if done is None:
            continue
        age = (now - done).total_seconds()
        if age > limit:
            out.append(Action(ns, name, "delete", f"{phase} {int(age)}s ago > {limit}s"))
    return out


def runner_namespaces(topo: Topology) -> list[str]:
    """The namespaces the policy covers: every namespace a scale set runs pods in."""
    return sorted({ss.namespace for ss in topo.scale_sets})


def run(cluster: Client, policy: CleanupPolicy, now: dt.datetime, namespaces: list[str], *,
        apply: bool) -> list[dict[str, Any]]:
    """List pods, select, and with ``apply`` delete (grace 0 for force-delete).

    A pod already gone (404) counts as done: another cleanup run or ARC got there first.
    """
    from kubernetes.client.rest import ApiException

    from flywheel_runtime.kube import REQUEST_TIMEOUT_S, api_errors

    pods: list[dict[str, Any]] = []
    for ns in namespaces:
        with api_errors(cluster, f"listing pods in {ns}"):
            items = cluster.core.list_namespaced_pod(ns, _request_timeout=REQUEST_TIMEOUT_S).items
        pods += [cluster.to_dict(p) for p in items]
    out = []
    for a in select(pods, policy, now):
        entry: dict[str, Any] = {"namespace": a.namespace, "name": a.name, "kind": a.kind, "why": a.why,
                                 "applied": False}
        if apply:
            try:
                with api_errors(cluster, f"deleting pod {a.namespace}/{a.name}", passthrough=(404,)):
                    cluster.core.delete_namespaced_pod(a.name, a.namespace,
                                                       grace_period_seconds=a.grace_period_seconds,
                                                       _request_timeout=REQUEST_TIMEOUT_S)
                entry["applied"] = True
            except ApiException as exc:
                if exc.status != 404:
                    raise
                entry["applied"], entry["why"] = True, entry["why"] + " (already gone)"
        out.append(entry)
    return out
