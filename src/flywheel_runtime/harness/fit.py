"""Scale rendered pods to a cluster whose nodes are smaller than the platform's.

kind's nodes report this machine's allocatable (2 CPUs, 24 GiB each), not
honey's 32 CPUs and 220 GiB, so a lane's real envelope would never schedule.
Placement is about selectors, affinity, taints and claims, not the figures:
:func:`scale_to_cluster` multiplies every CPU, memory and ephemeral-storage
request and limit by one factor per resource (live allocatable over the
topology's, the smallest over the runner nodes), so each lane keeps its share
of a node and the lanes keep their order.  Figures that need the platform's
real capacities stay on the sim backend, which has them.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client
    from flywheel_runtime.topology import Topology

RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _parse(resource: str, value: str) -> int:
    return parse_cpu(value) if resource == "cpu" else parse_bytes(value)


def _format(resource: str, amount: int) -> str:
    return f"{max(amount, 1)}m" if resource == "cpu" else str(max(amount, 1))


def factors(topo: Topology, live_allocatable: dict[str, dict[str, str]]) -> dict[str, Fraction]:
    """Per resource: the smallest live/topology ratio over runner nodes, at most 1."""
    out: dict[str, Fraction] = {}
    for resource in RESOURCES:
        ratios = []
        for node in topo.nodes:
            if not node.runner_target or node.name not in live_allocatable:
                continue
            want = {"cpu": node.allocatable.cpu, "memory": node.allocatable.memory,
                    "ephemeral-storage": node.allocatable.ephemeral_storage}[resource]
            have = _parse(resource, live_allocatable[node.name].get(resource, "0"))
            if want > 0:
                ratios.append(Fraction(have, want))
        out[resource] = min([Fraction(1), *ratios])
    return out


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if "template" in spec:
        return [spec["template"]["spec"]]
    return []


def scale(obj: dict[str, Any], by: dict[str, Fraction]) -> dict[str, Any]:
    """A copy of ``obj`` with its containers' requests and limits scaled (rounded up)."""
    out = copy.deepcopy(obj)
    for spec in _pod_specs(out):
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for resource, value in list((res.get(section) or {}).items()):
                    f = by.get(resource)
                    if f is not None and f < 1:
                        res[section][resource] = _format(resource, math.ceil(_parse(resource, str(value)) * f))
    return out


def live_allocatable(kube: Client) -> dict[str, dict[str, str]]:
    return {n.metadata.name: dict(n.status.allocatable or {}) for n in kube.core.list_node().items}


def scale_to_cluster(obj: dict[str, Any], topo: Topology, kube: Client) -> dict[str, Any]:
    """``obj`` scaled to the live cluster's nodes (unchanged where they are the platform's size)."""
    return scale(obj, factors(topo, live_allocatable(kube)))
