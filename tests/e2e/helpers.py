"""Shared e2e helpers: filler pods and free capacity computed from the live
cluster and the topology, never from hard-coded figures."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.quantity import format_bytes, parse_bytes, parse_cpu


def filler(name: str, node: str, *, cpu: str | None = None, memory: str | None = None,
           ephemeral: str | None = None) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("ephemeral-storage", ephemeral)) if v}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"flywheel.tinyland.dev/filler": "true"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "filler", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": requests} if requests else {}}],
        },
    }


def listener_pod(topo, scale_set: str) -> dict[str, Any]:
    """A scale set's listener pod as rendered, less the account ARC would create for it."""
    from flywheel_runtime.topology import render

    body = render.listener_pod(topo, scale_set)
    body["spec"].pop("serviceAccountName")
    return body


def gitlab_pods(c, ns: str) -> list[dict[str, Any]]:
    """One bare pod per replica of each rendered GitLab runner Deployment (min replicas),
    for namespace ``ns``, where the runners' own account is applied first (their pods name it)."""
    from flywheel_runtime.harness.bootstrap import gitlab_service_accounts
    from flywheel_runtime.topology import render

    topo = c.topology
    for sa in gitlab_service_accounts(topo, ns):
        c.kube.apply(sa)
    out = []
    for d in (o for o in render.gitlab_deployments(topo) if o["kind"] == "Deployment"):
        tmpl = d["spec"]["template"]
        out += [{"apiVersion": "v1", "kind": "Pod", "metadata": {**tmpl["metadata"], "generateName": "gitlab-"},
                 "spec": tmpl["spec"]}] * d["spec"]["replicas"]
    return out


def node_usage(kube, node: str) -> dict[str, int]:
    """Requests of the non-terminal pods bound to ``node``, and their count."""
    used = {"cpu": 0, "memory": 0, "ephemeral-storage": 0, "pods": 0}
    for p in kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items:
        if p.status.phase in ("Succeeded", "Failed"):
            continue
        used["pods"] += 1
        for c in p.spec.containers:
            req = (c.resources.requests or {}) if c.resources else {}
            used["cpu"] += parse_cpu(req.get("cpu", "0"))
            used["memory"] += parse_bytes(req.get("memory", "0"))
            used["ephemeral-storage"] += parse_bytes(req.get("ephemeral-storage", "0"))
    return used


def node_free(kube, topo, node: str) -> dict[str, int]:
    n = topo.node(node)
    used = node_usage(kube, node)
    return {
        "cpu": n.allocatable.cpu - used["cpu"],
        "memory": n.allocatable.memory - used["memory"],
        "ephemeral-storage": n.allocatable.ephemeral_storage - used["ephemeral-storage"],
        "pods": n.allocatable.pods - used["pods"],
    }


def fill_pod_slots(kube, namespace: str, node: str, topo, leave: int = 0) -> list[str]:
    """Create small pods pinned to ``node`` until only ``leave`` pod slots are free."""
    import time

    names: list[str] = []
    deadline = time.monotonic() + 60
    # Top up until the count settles: pods of earlier tests may still be leaving.
    while (free := node_free(kube, topo, node)["pods"] - leave) != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} pod slots did not settle ({free} off)")
        for _ in range(max(free, 0)):
            body = filler(f"slot-{len(names)}", node)
            body["metadata"]["namespace"] = namespace
            kube.core.create_namespaced_pod(namespace, body)
            names.append(body["metadata"]["name"])
        # Wait for a verdict on every filler before counting again, so none
        # is left queued to steal a slot later.
        while any(not p.spec.node_name and not any(c.type == "PodScheduled" and c.reason == "Unschedulable"
                                                    for c in (p.status.conditions or []))
                  for p in kube.core.list_namespaced_pod(namespace).items if p.metadata.name in names):
            time.sleep(0.1)
        for p in kube.core.list_namespaced_pod(namespace).items:
            if p.metadata.name in names and not p.spec.node_name:  # overshoot: drop it
                kube.core.delete_namespaced_pod(p.metadata.name, namespace, grace_period_seconds=0)
                names.remove(p.metadata.name)
        if free < 0:
            victim = names.pop()
            kube.core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)
        time.sleep(0.2)
    return names


__all__ = ["filler", "node_usage", "node_free", "fill_pod_slots", "format_bytes"]
