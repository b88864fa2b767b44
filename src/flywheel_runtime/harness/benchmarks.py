"""Measurements against a running cluster, shared by ``tests/bench`` and
``bench/harness_figures.py``: pod latencies per scale set, burst scenarios
shaped like the design document's capacity-planning table, cluster up times.

Scenarios are data: each names how many runners of which workflow label (or
GitLab runners) arrive at once.  Counts are resolved against the topology, so
a changed envelope or cap changes the figures, not this code.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from flywheel_runtime.kube import Client, wait_for
from flywheel_runtime.topology import Topology, render

# The capacity-planning table: Quiet = 3 GitLab + 0 ARC; Normal = 3 GitLab + 2
# warm Nix; Burst = 3 GitLab + 4-6 ARC ("exceeds cluster, queue builds").
# "max" is every scale set at its maxRunners at once (opt-in: ~90 pods).
SCENARIOS: dict[str, dict[str, Any]] = {
    "quiet": {"gitlab": True, "arc": {}},
    "normal": {"gitlab": True, "arc": {"tinyland-nix": 2}},
    # Burst: six ARC runners, both owner overlays' heavy lanes among them.
    "burst": {"gitlab": True, "arc": {"tinyland-nix": 2, "tinyland-nix-heavy": 1, "jess-nix-heavy": 1,
                                      "tinyland-dind": 1, "tinyland-nix-compute-expansion": 1}},
    "max": {"gitlab": True, "arc": "max"},
}


@dataclass
class ScenarioResult:
    scenario: str
    pods: int
    admitted: int
    queued: int
    queued_reasons: dict[str, int] = field(default_factory=dict)
    seconds_to_verdict: float = 0.0
    seconds_to_drain: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gitlab_pods(topo: Topology) -> list[tuple[str, str | None, dict[str, Any]]]:
    """One pod per GitLab runner replica at its minimum, from the rendered Deployment's template."""
    out: list[tuple[str, str | None, dict[str, Any]]] = []
    for obj in render.gitlab_deployments(topo):
        if obj["kind"] != "Deployment":
            continue
        tmpl = obj["spec"]["template"]
        for i in range(obj["spec"]["replicas"]):
            out.append((f"gitlab-{obj['metadata']['name']}-{i}", None,
                        {"apiVersion": "v1", "kind": "Pod", "metadata": copy.deepcopy(tmpl["metadata"]),
                         "spec": copy.deepcopy(tmpl["spec"])}))
    return out


def scenario_pods(topo: Topology, scenario: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(name, namespace, manifest) of every pod the scenario creates, runners exactly as
    rendered.  The namespace is None where :func:`run_scenario`'s own is used; a device
    lane's pod names its lane's (see :func:`.placement.lane_pod`)."""
    from flywheel_runtime.harness.placement import lane_pod

    spec = SCENARIOS[scenario]
    pods = _gitlab_pods(topo) if spec["gitlab"] else []
    if spec["arc"] == "max":
        wanted = [(ss, ss.max_runners) for ss in topo.scale_sets]
    else:
        wanted = [(topo.scale_set(name), n) for name, n in spec["arc"].items()]
    counts: dict[str, int] = {}
    for ss, n in wanted:
        for _ in range(n):
            k = counts[ss.name] = counts.get(ss.name, 0) + 1
            ns, body = lane_pod(topo, ss.name, "")
            pods.append((f"{ss.name}-{k}", ns or None, body))
    return pods


def _verdict(pod: Any) -> str | None:
    """"scheduled", "unschedulable" (settled), or None while undecided."""
    if pod.spec.node_name:
        return "scheduled"
    for c in pod.status.conditions or []:
        if c.type == "PodScheduled" and c.reason == "Unschedulable" and "waiting for" not in (c.message or ""):
            return "unschedulable"
    return None


def _reason(pod: Any) -> str:
    for c in pod.status.conditions or []:
        if c.type == "PodScheduled":
            msg = c.message or ""
            for key in ("Too many pods", "Insufficient ephemeral-storage", "Insufficient memory",
                        "Insufficient cpu", "untolerated taint", "didn't match"):
                if key in msg:
                    return key
            return msg[:60]
    return "?"


def run_scenario(kube: Client, topo: Topology, namespace: str, scenario: str, timeout: float = 300) -> ScenarioResult:
    """Create the scenario's pods at once; count admitted vs queued once the
    scheduler has judged each; then play the jobs out (finish running jobs,
    delete completed pods as the cleanup policy would) until every pod has run."""
    from flywheel_runtime.harness.bootstrap import gitlab_service_accounts

    pods = scenario_pods(topo, scenario)
    for sa in gitlab_service_accounts(topo, namespace):
        kube.apply(sa)
    where = {name: ns or namespace for name, ns, _ in pods}
    t0 = time.monotonic()
    for name, _, body in pods:
        kube.create_pod(body, namespace=where[name], name=name)
    names = set(where)

    def listed() -> list[Any]:
        return [p for ns in sorted(set(where.values())) for p in kube.core.list_namespaced_pod(ns).items
                if p.metadata.name in names and where[p.metadata.name] == ns]

    def all_judged() -> list[Any] | None:
        items = listed()
        return items if len(items) == len(names) and all(_verdict(p) for p in items) else None

    judged = wait_for(all_judged, timeout, f"a verdict on every {scenario} pod")
    t_verdict = time.monotonic() - t0
    queued = [p for p in judged if _verdict(p) == "unschedulable"]
    reasons: dict[str, int] = {}
    for p in queued:
        reasons[_reason(p)] = reasons.get(_reason(p), 0) + 1

    remaining = set(names)
    finished: set[str] = set()
    deadline = time.monotonic() + timeout
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{scenario}: {len(remaining)} pods never ran within {timeout:.0f}s")
        for p in listed():
            n = p.metadata.name
            if n not in remaining:
                continue
            if p.status.phase == "Running" and n not in finished:
                kube.finish_job(where[n], n)
                finished.add(n)
            elif p.status.phase in ("Succeeded", "Failed"):
                kube.delete_pod(where[n], n)
                remaining.discard(n)
        time.sleep(0.05)
    return ScenarioResult(scenario, len(pods), len(pods) - len(queued), len(queued), reasons,
                          round(t_verdict, 3), round(time.monotonic() - t0, 3))


def pod_latency(kube: Client, topo: Topology, namespace: str, scale_set: str, timeout: float = 60, *,
                manifest: dict[str, Any] | None = None, until: str = "Running") -> dict[str, Any]:
    """Seconds from create to PodScheduled and on to ``until`` for one rendered pod; deletes it after.

    ``until`` is ``"Running"`` (kwok, or a real kubelet with the lane's image) or
    ``"kubelet"``: the node's kubelet has taken the pod on (hostIP and startTime set).
    """
    from flywheel_runtime.harness.placement import lane_pod

    if manifest is None:  # a device lane's pod runs in its own namespace (see lane_pod)
        namespace, manifest = lane_pod(topo, scale_set, namespace)
    t0 = time.monotonic()
    name = kube.create_pod(manifest, namespace=namespace)
    placed = kube.wait_scheduled(namespace, name, timeout=timeout)
    t_sched = time.monotonic() - t0
    if until == "Running":
        kube.wait_phase(namespace, name, "Running", timeout=timeout)
    else:
        wait_for(lambda: (p := kube.core.read_namespaced_pod(name, namespace)).status.host_ip
                 and p.status.start_time, timeout, f"the kubelet to take {name}", interval=0.05)
    t_next = time.monotonic() - t0
    kube.delete_pod(namespace, name)
    wait_for(lambda: not any(p.metadata.name == name for p in kube.core.list_namespaced_pod(namespace).items),
             timeout, f"{name} to be gone")
    key = "running_s" if until == "Running" else "kubelet_s"
    return {"node": placed.node, "scheduled_s": round(t_sched, 3), key: round(t_next, 3)}


def time_up(name: str, topo: Topology, backend: str = "sim") -> dict[str, float]:
    """Cold ``up`` of a fresh cluster (binaries and node image cached), then a warm (reusing) ``up``; tears it down."""
    from flywheel_runtime.harness import get_backend, quiet_log

    cluster = get_backend(backend, name, log=quiet_log)
    cluster.down(quiet=True)
    try:
        t0 = time.monotonic()
        cluster.up(topo)
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        cluster.up(topo)
        warm = time.monotonic() - t0
    finally:
        t0 = time.monotonic()
        cluster.down(quiet=True)
        down = time.monotonic() - t0
    return {"cold_up_s": round(cold, 2), "warm_up_s": round(warm, 3), "down_s": round(down, 2)}
