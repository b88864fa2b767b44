"""Pod slots, live: the 2026-05-11 pod ceiling against what really runs.

The capacity model (``topology capacity``) counts every pod the contract
places, but a node's slots also go to pods outside it -- the control plane,
system DaemonSets, the cache services -- which the facts do not count.  This
audit counts them: every pod bound to a node that is not terminal (the
scheduler and the kubelet count Pending and Running pods, including ones
stuck Terminating; Succeeded and Failed pods hold no slot), split into the
contract's namespaces (ARC controller and listeners, scale sets, GitLab
runners) and the rest.  The model's pod ceiling (``capacity.pod_ceiling``)
says, per lane pinned to the node, at how many pods outside the contract "Too
many pods" refuses the lane's next runner; the live count says how many more
it takes, or that it already does.  (``topo.with_other_pods`` feeds the count
to the rest of the model: ``fit``, ``scenario``.)

Exit codes of ``flywheel-runtime audit pod-slots``: 0 report; 1 with
``--fail-on-ceiling`` when the pods outside the contract already reach a
lane's ceiling on its node; 3 topology; 4 / 12 cluster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from flywheel_runtime.topology import capacity
from flywheel_runtime.topology.model import Topology

TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class NodeSlots:
    node: str
    slots: int
    contract: int  # live pods in the contract's namespaces
    other: int  # live pods outside them
    other_by_namespace: dict[str, int]
    free: int  # slots - contract - other
    refused_at: dict[str, int]  # lane -> pods outside the contract at which "Too many pods" refuses it
    reached: list[str]  # lanes whose ceiling ``other`` already reaches


def contract_namespaces(topo: Topology) -> set[str]:
    """Namespaces whose pods the contract places (and the capacity model counts)."""
    out = {ss.namespace for ss in topo.scale_sets} | {g.namespace for g in topo.gitlab_runners}
    if topo.arc is not None:
        out.add(topo.arc.namespace)
    return out


def count(topo: Topology, pods: list[dict[str, Any]]) -> list[NodeSlots]:
    """Per topology node, from pod objects as the API returns them (dicts)."""
    mine = contract_namespaces(topo)
    by_node: dict[str, Counter[str]] = {n.name: Counter() for n in topo.nodes}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node not in by_node or (p.get("status") or {}).get("phase") in TERMINAL:
            continue
        by_node[node][p["metadata"]["namespace"]] += 1
    out = []
    for n in topo.nodes:
        ns_counts = by_node[n.name]
        contract = sum(c for ns, c in ns_counts.items() if ns in mine)
        other = {ns: c for ns, c in sorted(ns_counts.items()) if ns not in mine}
        # The ceilings depend on the contract alone; the live count says how near they are.
        refused_at = capacity.pod_ceiling(topo, n.name).refused_at if any(
            s.node == n.name for s in topo.scale_sets) else {}
        total_other = sum(other.values())
        out.append(NodeSlots(n.name, n.allocatable.pods, contract, total_other, other,
                             n.allocatable.pods - contract - total_other, refused_at,
                             [lane for lane, k in refused_at.items() if total_other >= k]))
    return out


def report(topo: Topology, pods: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "flywheel.tinyland.dev/pod-slots/v1",
            "contract_namespaces": sorted(contract_namespaces(topo)),
            "nodes": [asdict(n) for n in count(topo, pods)]}


def render_text(doc: dict[str, Any]) -> str:
    lines = []
    for n in doc["nodes"]:
        where = ", ".join(f"{ns} {c}" for ns, c in n["other_by_namespace"].items()) or "none"
        lines.append(f"{n['node']}: {n['slots']} pod slots; live {n['contract']} in the contract, "
                     f"{n['other']} outside it ({where}); {n['free']} free")
        if n["refused_at"]:
            parts = []
            for lane, k in n["refused_at"].items():
                parts.append(f"{lane} at {k} (reached)" if lane in n["reached"]
                             else f"{lane} at {k} ({k - n['other']} more)")
            lines.append('  "Too many pods" refuses the next runner, with the lane at its cap beside the '
                         "standing pods, once this many pods outside the contract share the node: "
                         + ", ".join(parts))
    lines.append("contract namespaces: " + ", ".join(doc["contract_namespaces"])
                 + "; the capacity model takes the rest as nodes.<node>.other_pods")
    return "\n".join(lines)
