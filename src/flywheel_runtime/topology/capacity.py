"""How many runners fit where, by which resource, and global capacity debt.

Counts use requests, as the kube-scheduler does, and every pod that takes a
node's slots: runner pods, and the *standing* pods that are always there --
the ARC controller, one listener per scale set (placed by the topology, e.g.
nine on honey), the GitLab runners at their minimum replicas, and the pods
outside the contract a node is told it carries (``nodes.<n>.other_pods``:
control plane, system DaemonSets, services; not in the facts, so 0 unless
set).  The utility CronJobs' pods (cleanup, warm pool) carry no selector or
toleration, so they land on the untainted schedulable node -- honey -- and
count there at peak.  Views:

* per scale set, alone on its pinned node beside the standing pods (``fit``):
  runners by cpu, memory, ephemeral-storage and pod count, and which binds first;
* per label (``labels``): the label's scale sets across overlays packed
  together on their nodes, each up to its own cap (``admits``), and the same
  while every other lane on those nodes runs at its cap (``admits_at_peak``).
  Summed caps beyond those are the document's "global capacity debt": honest
  queueing, not runner label debt;
* per node (``node_demand``): every lane pinned there at its cap, summed;
* per node (``pod_ceiling``): the 2026-05-11 lesson offline -- how many pods
  outside the contract it takes before the node's pod count, not CPU, memory
  or storage, refuses each lane pinned there, while other nodes have room;
* ``scenario``: runners asked at once, what is admitted, what queues and on
  which resource.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flywheel_runtime.topology.model import RESOURCE_NAMES, ScaleSet, Topology
from flywheel_runtime.topology.quantity import format_cpu, human_bytes


@dataclass(frozen=True)
class ScaleSetFit:
    scale_set: str
    overlay: str
    label: str
    node: str | None
    max_runners: int
    fits: dict[str, int | None]  # per resource (and pods) beside the standing pods; None = not requested
    admits: int  # runners the node admits alone: the minimum over resources
    binding: str  # which resource binds first
    node_schedulable: bool


@dataclass(frozen=True)
class LabelCapacity:
    label: str
    scale_sets: list[str]
    summed_caps: int
    admits: int  # the label's own sets packed on their nodes, nothing else running
    debt: int  # summed caps beyond ``admits``
    overlays: list[str] = field(default_factory=list)
    admits_at_peak: int = 0  # ... while every other lane on those nodes runs at its cap
    debt_at_peak: int = 0  # summed caps beyond ``admits_at_peak``


@dataclass(frozen=True)
class NodeDemand:
    node: str
    lanes: list[str]
    at_caps: dict[str, int]  # summed requests with every pinned lane at its cap (and pods)
    allocatable: dict[str, int]
    overcommitted: list[str]  # resources where demand at caps exceeds allocatable
    standing: dict[str, int] = field(default_factory=dict)  # standing pods: lane -> count


Lane = tuple[str, dict[str, int], int]  # (lane, pod requests incl. one pod slot, pod count)


def _arc_pods(topo: Topology, node: str) -> list[Lane]:
    """The ARC controller and the listeners placed on ``node``."""
    out: list[Lane] = []
    if topo.arc is not None and topo.arc.controller.node == node:
        c = topo.arc.controller
        out.append(("arc controller", {**c.envelope.pod_requests(), "pods": 1}, c.replicas))
    out += [(f"listener {lst.scale_set}", {**lst.envelope.pod_requests(), "pods": 1}, 1)
            for lst in topo.listeners if lst.node == node]
    return out


OTHER_PODS = "pods outside the contract"
_SLOT_ONLY = {r: 0 for r in RESOURCE_NAMES} | {"pods": 1}  # a pod counted by its slot alone


def _other(topo: Topology, node: str) -> list[Lane]:
    n = topo.node(node).other_pods
    return [(OTHER_PODS, dict(_SLOT_ONLY), n)] if n else []


def standing(topo: Topology, node: str) -> list[Lane]:
    """Pods always on ``node``: controller, listeners, GitLab runners at min
    replicas, and the pods outside the contract."""
    return _arc_pods(topo, node) + [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1},
                                     g.min_replicas) for g in topo.gitlab_runners if g.node == node
                                    ] + _other(topo, node)


def utility_jobs(topo: Topology) -> list[str]:
    """The rendered CronJobs, whose pods carry no selector (one running pod
    each at most: cleanup forbids overlap; a warm-pool run is one short pod)."""
    from flywheel_runtime.topology import render

    return [cj["metadata"]["name"] for cj in (render.cleanup_cronjob(topo), *render.warm_pool_cronjobs(topo))]


def _utility(topo: Topology, node: str) -> list[Lane]:
    # Counted only where the node they land on is unambiguous (one default node).
    default = topo.default_nodes()
    if len(default) != 1 or default[0].name != node:
        return []
    return [(f"utility job {name}", dict(_SLOT_ONLY), 1) for name in utility_jobs(topo)]


def _pinned(topo: Topology, node: str) -> list[Lane]:
    """Every pod on ``node`` with each lane at its cap (GitLab at max replicas),
    the utility jobs running, and the pods outside the contract."""
    out = [(f"scale set {s.name}", {**s.envelope.pod_requests(), "pods": 1}, s.max_runners)
           for s in topo.scale_sets if s.node == node]
    out += [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1}, g.max_replicas)
            for g in topo.gitlab_runners if g.node == node]
    return out + _arc_pods(topo, node) + _utility(topo, node) + _other(topo, node)


def _free(topo: Topology, node: str, lanes: list[Lane]) -> dict[str, int]:
    n = topo.node(node)
    return {r: n.allocatable.get(r) - sum(req[r] * count for _, req, count in lanes)
            for r in (*RESOURCE_NAMES, "pods")}


def _pack(free: dict[str, int], sets: list[ScaleSet]) -> int:
    """Runners of ``sets`` admitted into ``free`` (mutated), each up to its cap."""
    return sum(_admit(free, {**s.envelope.pod_requests(), "pods": 1}, s.max_runners)[0] for s in sets)


def node_demand(topo: Topology, node_name: str) -> NodeDemand:
    node = topo.node(node_name)
    keys = (*RESOURCE_NAMES, "pods")
    lanes = _pinned(topo, node_name)
    total = {r: sum(req[r] * cap for _, req, cap in lanes) for r in keys}
    alloc = {r: node.allocatable.get(r) for r in keys}
    return NodeDemand(node_name, [name for name, _, _ in lanes], total, alloc,
                      [r for r in keys if total[r] > alloc[r]],
                      {name: count for name, _, count in standing(topo, node_name) if count})


def fit(topo: Topology, ss: ScaleSet) -> ScaleSetFit:
    if ss.node is None:
        return ScaleSetFit(ss.name, ss.overlay, ss.label, None, ss.max_runners, {}, 0, "unpinned", False)
    node = topo.node(ss.node)
    req = ss.envelope.pod_requests()
    free = _free(topo, node.name, standing(topo, node.name))
    fits: dict[str, int | None] = {}
    for r in RESOURCE_NAMES:
        fits[r] = max(0, free[r]) // req[r] if req[r] > 0 else None
    fits["pods"] = max(0, free["pods"])
    bounded = {r: n for r, n in fits.items() if n is not None}
    binding = min(bounded, key=lambda r: (bounded[r], list(bounded).index(r)))
    return ScaleSetFit(ss.name, ss.overlay, ss.label, node.name, ss.max_runners, fits, bounded[binding], binding,
                       node.schedulable)


def labels(topo: Topology) -> list[LabelCapacity]:
    out = []
    for rc in topo.runner_classes:
        sets = topo.scale_sets_for(rc.name)
        if not sets:
            continue
        # What the nodes admit for this label: runners of its scale sets packed
        # together, per node, taking each set up to its cap.
        admits = peak = 0
        mine = {f"scale set {s.name}" for s in sets}
        for node_name in dict.fromkeys(s.node for s in sets):
            if node_name is None:
                continue
            node = topo.node(node_name)
            here = [s for s in sets if s.node == node_name]
            free = _free(topo, node_name, standing(topo, node_name))
            admits += _pack(dict(free), here)
            free = {r: node.allocatable.get(r) for r in (*RESOURCE_NAMES, "pods")}
            for lane, req, cap in _pinned(topo, node_name):
                if lane not in mine:
                    for r in free:
                        free[r] -= req[r] * cap
            peak += _pack(free, here)
        caps = sum(s.max_runners for s in sets)
        out.append(LabelCapacity(rc.name, [s.name for s in sets], caps, admits, max(0, caps - admits),
                                 sorted({s.overlay for s in sets}), peak, max(0, caps - peak)))
    return out


@dataclass(frozen=True)
class Scenario:
    """Runners asked of named scale sets at once, beside the standing pods."""

    asked: dict[str, int]
    admitted: dict[str, int]  # by requests, packed per node in the order asked
    queued: dict[str, int]
    limits: dict[str, dict[str, int]]  # per node: summed limits of what was admitted (contention, not admission)
    # Per queued set: the resources that refused its next runner ("pods" is
    # the scheduler's "Too many pods"); "cap" never appears: asks are capped.
    refused_by: dict[str, list[str]] = field(default_factory=dict)
    free: dict[str, dict[str, int]] = field(default_factory=dict)  # per node, after admission


def _admit(free: dict[str, int], req: dict[str, int], count: int) -> tuple[int, list[str]]:
    """Runners of ``req`` admitted into ``free`` (mutated), up to ``count``, and
    the resources that refused the next one (empty when all were admitted)."""
    room = {r: free[r] // req[r] for r in free if req[r] > 0}
    n = max(0, min([count, *room.values()]))
    for r in free:
        free[r] -= n * req[r]
    return n, ([] if n == count else [r for r in room if room[r] <= n])


def scenario(topo: Topology, asked: dict[str, int]) -> Scenario:
    """What the scheduler admits when ``asked`` runners arrive together:
    requests decide admission; limits only say how hard admitted pods contend.
    For other pods outside the contract, ask it of ``topo.with_other_pods(...)``."""
    free = {n.name: _free(topo, n.name, standing(topo, n.name)) for n in topo.nodes}
    admitted: dict[str, int] = {}
    refused: dict[str, list[str]] = {}
    limits: dict[str, dict[str, int]] = {}
    for name, count in asked.items():
        ss = topo.scale_set(name)
        if ss.node is None:
            admitted[name] = 0
            refused[name] = ["unpinned"]
            continue
        admitted[name], why = _admit(free[ss.node], {**ss.envelope.pod_requests(), "pods": 1},
                                     min(count, ss.max_runners))
        if why:
            refused[name] = why
        lim = limits.setdefault(ss.node, {r: 0 for r in ("cpu", "memory")})
        for c in ss.envelope.containers:
            for r in lim:
                lim[r] += admitted[name] * (c.limits.get(r) or 0)
    for g in topo.gitlab_runners:  # standing GitLab runners contend too
        if g.node is not None:
            lim = limits.setdefault(g.node, {r: 0 for r in ("cpu", "memory")})
            for c in g.envelope.containers:
                for r in lim:
                    lim[r] += g.min_replicas * (c.limits.get(r) or 0)
    return Scenario(dict(asked), admitted, {k: asked[k] - admitted[k] for k in asked}, limits, refused, free)


@dataclass(frozen=True)
class PodCeiling:
    """The 2026-05-11 lesson, offline: a node's pod count as the admission
    limit, beside the spare CPU and memory elsewhere that does not help."""

    node: str
    slots: int
    standing: int  # the contract's standing pods (controller, listeners, GitLab at min)
    at_caps: int  # the contract's pods with every lane at its cap and the utility jobs running
    other_pods: int  # pods outside the contract, as the topology says
    spare_at_caps: int  # slots left beside ``at_caps`` and ``other_pods`` (negative: over the ceiling)
    # lane -> the fewest pods outside the contract at which the pod count
    # refuses the lane's next runner, asked at its cap beside the standing pods
    # (0: it already does).  Beyond it the lane queues on "Too many pods".
    refused_at: dict[str, int]
    elsewhere_free: dict[str, dict[str, int]]  # other schedulable nodes: cpu/memory beside their standing pods


def pod_ceiling(topo: Topology, node_name: str) -> PodCeiling:
    node = topo.node(node_name)
    contract = [lane for lane in standing(topo, node_name) if lane[0] != OTHER_PODS]
    free = _free(topo, node_name, contract)
    refused_at: dict[str, int] = {}
    for s in topo.scale_sets:
        if s.node != node_name:
            continue
        req = {**s.envelope.pod_requests(), "pods": 1}
        by_resources = min([s.max_runners] + [max(0, free[r]) // req[r] for r in RESOURCE_NAMES if req[r] > 0])
        # With k pods outside the contract, min(cap, resources, free pods - k)
        # runners fit; the pod count refuses one once free pods - k falls below
        # the cap (or ties the binding resource when that is under the cap).
        k = free["pods"] - by_resources + (1 if by_resources == s.max_runners else 0)
        refused_at[s.name] = max(0, k)
    at_caps = sum(count for lane, _, count in _pinned(topo, node_name) if lane != OTHER_PODS)
    elsewhere = {}
    for n in topo.nodes:
        if n.name != node_name and n.schedulable:
            f = _free(topo, n.name, standing(topo, n.name))
            elsewhere[n.name] = {"cpu": f["cpu"], "memory": f["memory"]}
    return PodCeiling(node_name, node.allocatable.pods, sum(c for _, _, c in contract), at_caps, node.other_pods,
                      node.allocatable.pods - at_caps - node.other_pods, refused_at, elsewhere)


def report(topo: Topology) -> dict[str, Any]:
    nodes = [{
        "node": n.name, "role": n.role, "schedulable": n.schedulable, "runner_target": n.runner_target,
        "allocatable": {"cpu": n.allocatable.cpu, "memory": n.allocatable.memory,
                        "ephemeral-storage": n.allocatable.ephemeral_storage, "pods": n.allocatable.pods},
        "taints": [str(t) for t in n.taints],
        "scale_sets": [asdict(fit(topo, s)) for s in topo.scale_sets if s.node == n.name],
    } for n in topo.nodes]
    for entry in nodes:
        entry["at_caps"] = asdict(node_demand(topo, entry["node"]))
        if entry["scale_sets"]:
            entry["pod_ceiling"] = asdict(pod_ceiling(topo, entry["node"]))
    return {"schema": "flywheel.tinyland.dev/capacity/v1", "nodes": nodes,
            "labels": [asdict(lc) for lc in labels(topo)]}


def table(topo: Topology) -> str:
    lines = []
    for n in topo.nodes:
        a = n.allocatable
        state = "schedulable" if n.schedulable else "cordoned"
        lines.append(f"{n.name} ({n.role}; {state}): cpu {format_cpu(a.cpu)}, memory {human_bytes(a.memory)}, "
                     f"ephemeral-storage {human_bytes(a.ephemeral_storage)}, pods {a.pods}")
        rows = [fit(topo, s) for s in topo.scale_sets if s.node == n.name]
        if not rows:
            lines.append("  (no scale sets pinned here)")
        else:
            lines.append(f"  {'scale set':<34}{'cap':>5}{'cpu':>6}{'mem':>6}{'eph':>6}{'pods':>6}  fits  binds on")
            for f in rows:
                def cell(r: str) -> str:
                    v = f.fits.get(r)
                    return "-" if v is None else str(v)
                lines.append(f"  {f.scale_set:<34}{f.max_runners:>5}{cell('cpu'):>6}{cell('memory'):>6}"
                             f"{cell('ephemeral-storage'):>6}{cell('pods'):>6}  {f.admits:>4}  {f.binding}")
        d = node_demand(topo, n.name)
        if d.standing:
            listeners = sum(c for k, c in d.standing.items() if k.startswith("listener "))
            parts = [f"{c} {k}" for k, c in d.standing.items() if not k.startswith("listener ")]
            if listeners:
                parts.insert(1 if "arc controller" in d.standing else 0, f"{listeners} listener(s)")
            lines.append(f"  standing pods ({sum(d.standing.values())} of {a.pods} slots): " + ", ".join(parts))
        if d.lanes:
            over = ", ".join(d.overcommitted) or "none"
            lines.append(f"  all lanes at caps: cpu {format_cpu(d.at_caps['cpu'])}, memory "
                         f"{human_bytes(d.at_caps['memory'])}, ephemeral-storage "
                         f"{human_bytes(d.at_caps['ephemeral-storage'])}, pods {d.at_caps['pods']}; "
                         f"overcommitted: {over}")
        if rows:
            pc = pod_ceiling(topo, n.name)
            lines.append(f"  pod slots: {pc.standing} standing, {pc.at_caps} with every lane at its cap and the "
                         f"utility jobs running, {pc.other_pods} outside the contract (nodes.{n.name}.other_pods; "
                         f"not in the facts); {pc.spare_at_caps} spare at caps")
            room = "; ".join(f"{k} {format_cpu(v['cpu'])} cpu, {human_bytes(v['memory'])}"
                             for k, v in pc.elsewhere_free.items())
            lines.append(f"  pod ceiling (2026-05-11): \"Too many pods\" refuses a lane's next runner once this many "
                         f"pods outside the contract share {n.name}: "
                         + ", ".join(f"{k} {v}" + (" (reached)" if pc.other_pods >= v else "")
                                     for k, v in pc.refused_at.items())
                         + (f"; spare elsewhere ({room}) does not admit them" if room else ""))
        lines.append("")
    lines.append(f"{'label':<24}{'caps':>6}{'admits':>8}{'debt':>6}{'peak':>6}{'debt@peak':>11}  scale sets (overlays)")
    for lc in labels(topo):
        flag = ("  <- global capacity debt" if lc.debt
                else "  <- queues at peak" if lc.debt_at_peak else "")
        lines.append(f"{lc.label:<24}{lc.summed_caps:>6}{lc.admits:>8}{lc.debt:>6}{lc.admits_at_peak:>6}"
                     f"{lc.debt_at_peak:>11}  {', '.join(lc.scale_sets)} ({', '.join(lc.overlays)}){flag}")
    lines.append("")
    lines.append("admits: the label's scale sets alone on their nodes; peak: while every other lane pinned there "
                 "runs at its cap.  Caps are per scale set: the scheduler is the only global backpressure.")
    return "\n".join(lines)


def scenario_table(topo: Topology, sc: Scenario) -> str:
    """The scenario in words: admitted, queued and why, and what is left per node."""
    lines = ["scenario: " + ", ".join(f"{k} {v}" for k, v in sc.asked.items())]
    for name, count in sc.asked.items():
        line = f"  {name:<34}{sc.admitted[name]:>4} admitted{sc.queued[name]:>4} queued"
        if sc.refused_by.get(name):
            why = ["Too many pods" if r == "pods" else f"Insufficient {r}" if r != "unpinned" else "no node"
                   for r in sc.refused_by[name]]
            line += f"  ({', '.join(why)} on {topo.scale_set(name).node or 'no node'})"
        lines.append(line)
    for n in topo.nodes:
        if not n.schedulable:
            continue
        f = sc.free[n.name]
        lines.append(f"  {n.name} left: cpu {format_cpu(f['cpu'])}, memory {human_bytes(f['memory'])}, "
                     f"ephemeral-storage {human_bytes(f['ephemeral-storage'])}, pods {f['pods']}"
                     + (f" ({n.other_pods} outside the contract)" if n.other_pods else ""))
    return "\n".join(lines)
