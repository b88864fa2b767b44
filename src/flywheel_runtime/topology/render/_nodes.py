"""Nodes: simulated Node objects and the kind cluster config."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import Topology
from flywheel_runtime.topology.quantity import format_cpu
from flywheel_runtime.topology.render._common import yaml_dump


def node_objects(topo: Topology) -> list[dict[str, Any]]:
    """v1 Node objects with the real allocatable figures, for a simulated cluster."""
    out = []
    for n in topo.nodes:
        alloc = {
            "cpu": format_cpu(n.allocatable.cpu),
            "memory": str(n.allocatable.memory),
            "ephemeral-storage": str(n.allocatable.ephemeral_storage),
            "pods": str(n.allocatable.pods),
        }
        labels = {**n.all_labels(), "kubernetes.io/arch": "amd64"}
        if n.name == _control_plane(topo):
            labels["node-role.kubernetes.io/control-plane"] = ""
        out.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0", "flywheel.tinyland.dev/role": n.role}},
            "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in n.taints],
                     "unschedulable": not n.schedulable},
            "status": {"capacity": dict(alloc), "allocatable": dict(alloc)},
        })
    return out


def _control_plane(topo: Topology) -> str:
    return next((n.name for n in topo.nodes if "control plane" in n.role), topo.nodes[0].name)


KUBEADM_API = "kubeadm.k8s.io/v1beta4"  # what kind v0.33 generates for Kubernetes >= 1.36


def kind_config(topo: Topology) -> dict[str, Any]:
    """kind Cluster config: honey the control plane, the others workers,
    with their names, labels, taints and per-node max-pods."""
    cp = _control_plane(topo)
    nodes = []
    for n in sorted(topo.nodes, key=lambda n: n.name != cp):
        role = "control-plane" if n.name == cp else "worker"
        kind = "InitConfiguration" if role == "control-plane" else "JoinConfiguration"
        # Name and taints by merge patch (honey runs payloads, as on RKE2: no
        # kubeadm control-plane taint).  Labels travel in nodes[].labels.
        registration: dict[str, Any] = {"name": n.name,
                                        "taints": [{"key": t.key, "value": t.value, "effect": t.effect}
                                                   for t in n.taints]}
        patch = yaml_dump({"kind": kind, "nodeRegistration": registration})
        # max-pods is appended to kubeadm's kubeletExtraArgs list: a merge patch
        # would replace kind's own entries (node-ip, node-labels, provider-id).
        extra_args = yaml_dump([{"op": "add", "path": "/nodeRegistration/kubeletExtraArgs/-",
                                 "value": {"name": "max-pods", "value": str(n.allocatable.pods)}}])
        group, version = KUBEADM_API.split("/")
        nodes.append({
            "role": role,
            "labels": dict(n.labels, **{"flywheel.tinyland.dev/node": n.name}),
            "kubeadmConfigPatches": [patch],
            "kubeadmConfigPatchesJSON6902": [{"group": group, "version": version, "kind": kind,
                                              "patch": extra_args}],
        })
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": "flywheel", "nodes": nodes}
