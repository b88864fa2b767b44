"""How many runners fit where, by which resource, and global capacity debt.

Counts use requests, as the kube-scheduler does, and every pod that takes a
node's slots: runner pods, and the *standing* pods that are always there --
the ARC controller, one listener per scale set (placed by the topology, e.g.
nine on honey), and the GitLab runners at their minimum replicas.  Views:

* per scale set, alone on its pinned node beside the standing pods (``fit``):
  runners by cpu, memory, ephemeral-storage and pod count, and which binds first;
* per label (``labels``): the label's scale sets across overlays packed
  together on their nodes, each up to its own cap (``admits``), and the same
  while every other lane on those nodes runs at its cap (``admits_at_peak``).
  Summed caps beyond those are the document's "global capacity debt": honest
  queueing, not runner label debt;
* per node (``node_demand``): every lane pinned there at its cap, summed.
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


def standing(topo: Topology, node: str) -> list[Lane]:
    """Pods always on ``node``: controller, listeners, GitLab runners at min replicas."""
    return _arc_pods(topo, node) + [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1},
                                     g.min_replicas) for g in topo.gitlab_runners if g.node == node]


def _pinned(topo: Topology, node: str) -> list[Lane]:
    """Every pod on ``node`` with each lane at its cap (GitLab at max replicas)."""
    out = [(f"scale set {s.name}", {**s.envelope.pod_requests(), "pods": 1}, s.max_runners)
           for s in topo.scale_sets if s.node == node]
    out += [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1}, g.max_replicas)
            for g in topo.gitlab_runners if g.node == node]
    return out + _arc_pods(topo, node)


def _free(topo: Topology, node: str, lanes: list[Lane]) -> dict[str, int]:
    n = topo.node(node)
    return {r: n.allocatable.get(r) - sum(req[r] * count for _, req, count in lanes)
            for r in (*RESOURCE_NAMES, "pods")}


def _pack(free: dict[str, int], sets: list[ScaleSet]) -> int:
    """Runners of ``sets`` admitted into ``free`` (mutated), each up to its cap."""
    admitted = 0
    for s in sets:
        req = {**s.envelope.pod_requests(), "pods": 1}
        n = max(0, min([s.max_runners] + [free[r] // req[r] for r in free if req[r] > 0]))
        admitted += n
        for r in free:
            free[r] -= n * req[r]
    return admitted


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


def scenario(topo: Topology, asked: dict[str, int]) -> Scenario:
    """What the scheduler admits when ``asked`` runners arrive together:
    requests decide admission; limits only say how hard admitted pods contend."""
    free = {n.name: _free(topo, n.name, standing(topo, n.name)) for n in topo.nodes}
    admitted: dict[str, int] = {}
    limits: dict[str, dict[str, int]] = {}
    for name, count in asked.items():
        ss = topo.scale_set(name)
        if ss.node is None:
            admitted[name] = 0
            continue
        capped = ScaleSet.__new__(ScaleSet)  # the set, capped at what is asked (frozen: copy the fields)
        capped.__dict__.update({**ss.__dict__, "max_runners": min(count, ss.max_runners)})
        admitted[name] = _pack(free[ss.node], [capped])
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
    return Scenario(dict(asked), admitted, {k: asked[k] - admitted[k] for k in asked}, limits)


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
