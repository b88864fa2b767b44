"""How many runners fit where, by which resource, and global capacity debt.

Counts use requests, as the kube-scheduler does; each scale set is counted
alone against its pinned node's allocatable (an upper bound: lanes share a
node).  A label's summed caps across overlays are compared with what its
nodes admit for that label's own scale sets: the excess is the document's
"global capacity debt" (honest queueing, not runner label debt).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
    fits: dict[str, int | None]  # per resource (and pods); None = not requested
    admits: int  # runners the node admits alone: the minimum over resources
    binding: str  # which resource binds first
    node_schedulable: bool


@dataclass(frozen=True)
class LabelCapacity:
    label: str
    scale_sets: list[str]
    summed_caps: int
    admits: int
    debt: int  # summed caps beyond what the nodes admit


def fit(topo: Topology, ss: ScaleSet) -> ScaleSetFit:
    if ss.node is None:
        return ScaleSetFit(ss.name, ss.overlay, ss.label, None, ss.max_runners, {}, 0, "unpinned", False)
    node = topo.node(ss.node)
    req = ss.envelope.pod_requests()
    fits: dict[str, int | None] = {}
    for r in RESOURCE_NAMES:
        fits[r] = node.allocatable.get(r) // req[r] if req[r] > 0 else None
    fits["pods"] = node.allocatable.pods
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
        admits = 0
        for node_name in dict.fromkeys(s.node for s in sets):
            if node_name is None:
                continue
            node = topo.node(node_name)
            free = {r: node.allocatable.get(r) for r in (*RESOURCE_NAMES, "pods")}
            for s in (s for s in sets if s.node == node_name):
                req = {**s.envelope.pod_requests(), "pods": 1}
                n = min([s.max_runners] + [free[r] // req[r] for r in free if req[r] > 0])
                admits += n
                for r in free:
                    free[r] -= n * req[r]
        caps = sum(s.max_runners for s in sets)
        out.append(LabelCapacity(rc.name, [s.name for s in sets], caps, admits, max(0, caps - admits)))
    return out


def report(topo: Topology) -> dict[str, Any]:
    nodes = [{
        "node": n.name, "role": n.role, "schedulable": n.schedulable, "runner_target": n.runner_target,
        "allocatable": {"cpu": n.allocatable.cpu, "memory": n.allocatable.memory,
                        "ephemeral-storage": n.allocatable.ephemeral_storage, "pods": n.allocatable.pods},
        "taints": [str(t) for t in n.taints],
        "scale_sets": [asdict(fit(topo, s)) for s in topo.scale_sets if s.node == n.name],
    } for n in topo.nodes]
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
        lines.append("")
    lines.append(f"{'label':<24}{'caps':>6}{'admits':>8}{'debt':>6}  scale sets")
    for lc in labels(topo):
        flag = "  <- global capacity debt" if lc.debt else ""
        lines.append(f"{lc.label:<24}{lc.summed_caps:>6}{lc.admits:>8}{lc.debt:>6}  {', '.join(lc.scale_sets)}{flag}")
    return "\n".join(lines)
