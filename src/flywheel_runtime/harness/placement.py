"""Where every runner class lands: one pod per scale set, created exactly as
rendered, plus the GitLab runner Deployments, judged by the real scheduler."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from flywheel_runtime.kube import Client, wait_for
from flywheel_runtime.topology import Topology, render
from flywheel_runtime.topology.render import LABEL_GITLAB_RUNNER


@dataclass(frozen=True)
class Landing:
    kind: str  # "scale set" or "gitlab runner"
    name: str
    runner_class: str
    expected_node: str | None
    node: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.node is not None and (self.expected_node is None or self.node == self.expected_node)


def lane_pod(topo: Topology, name: str, namespace: str) -> tuple[str, dict[str, Any]]:
    """(namespace, pod) for one runner of scale set ``name`` created by the harness.

    A device lane's pod goes to the lane's own namespace under ARC's account for
    it, as ARC creates it: the device admission policy refuses a device class
    anywhere else.  Every other lane's goes to ``namespace`` as rendered."""
    from flywheel_runtime.topology import devices

    body = render.pod(topo, name)
    ss = topo.scale_set(name)
    if devices.of_scale_set(ss) is None:
        return namespace, body
    body["spec"]["serviceAccountName"] = render.no_permission_service_account(ss)
    body["metadata"]["namespace"] = ss.namespace
    return ss.namespace, body


def place_all(kube: Client, topo: Topology, namespace: str = "flywheel-placement", timeout: float = 30, *,
              scaled: bool = False) -> list[Landing]:
    """Create, judge and delete one runner pod per scale set (and GitLab runners).

    ``scaled``: envelopes scaled to the live nodes (kind's are this machine's; see
    :mod:`.fit`), placement untouched."""
    from flywheel_runtime.harness.fit import scale, factors, live_allocatable

    by = factors(topo, live_allocatable(kube)) if scaled else {}

    def fit(obj: dict[str, Any]) -> dict[str, Any]:
        return scale(obj, by) if by else obj

    from flywheel_runtime.harness.bootstrap import gitlab_service_accounts

    kube.ensure_namespace(namespace)
    out: list[Landing] = []
    elsewhere: list[tuple[str, str]] = []  # device lanes' pods, in their own namespaces
    try:
        pods = []
        for ss in topo.scale_sets:
            ns, body = lane_pod(topo, ss.name, namespace)
            pods.append((ss, ns, kube.create_pod(fit(body), namespace=ns)))
            if ns != namespace:
                elsewhere.append((ns, pods[-1][2]))
        for sa in gitlab_service_accounts(topo, namespace):
            kube.apply(sa)
        deps = []
        for obj in render.gitlab_deployments(topo):
            if obj["kind"] == "Deployment":
                obj = fit({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
                kube.apply(obj)
                deps.append(obj)
        deadline = time.monotonic() + timeout
        for ss, ns, name in pods:
            def verdict(name: str = name, ns: str = ns) -> Any:
                pl = kube.placement(ns, name)
                # "waiting for ephemeral volume controller" is a transient verdict:
                # the claim is about to exist; only a settled refusal counts.
                settled = pl.reason == "Unschedulable" and "waiting for" not in (pl.message or "")
                return pl if (pl.scheduled or settled) else None
            try:
                pl = wait_for(verdict, max(1.0, deadline - time.monotonic()), f"a verdict on {name}")
                out.append(Landing("scale set", ss.name, ss.label, ss.node, pl.node, pl.message))
            except Exception as exc:  # no verdict in time is itself the answer
                out.append(Landing("scale set", ss.name, ss.label, ss.node, None, str(exc)))
        for g, obj in zip(topo.gitlab_runners, deps):
            sel = f"{LABEL_GITLAB_RUNNER}={g.name}"

            def gl_pods(sel: str = sel, want: int = g.min_replicas) -> Any:
                items = kube.core.list_namespaced_pod(namespace, label_selector=sel).items
                return items if len(items) >= want and all(p.spec.node_name for p in items) else None
            try:
                items = wait_for(gl_pods, max(1.0, deadline - time.monotonic()), f"gitlab runner {g.name}")
                nodes = sorted({p.spec.node_name for p in items})
                out.append(Landing("gitlab runner", g.name, f"gitlab/{g.name} x{len(items)}", g.node,
                                   ",".join(nodes), None))
            except Exception as exc:
                out.append(Landing("gitlab runner", g.name, f"gitlab/{g.name}", g.node, None, str(exc)))
    finally:
        for ns, name in elsewhere:
            kube.delete_pod(ns, name)
        kube.delete_namespace(namespace, wait=False)
    return out


def table(landings: list[Landing]) -> str:
    rows = [f"{'':3}{'kind':<14}{'name':<34}{'runner class':<24}{'lands on':<10}detail"]
    for ld in landings:
        mark = "ok" if ld.ok else "!!"
        where = ld.node or "Pending"
        detail = "" if ld.ok else (ld.reason or f"expected {ld.expected_node}")
        rows.append(f"{mark:<3}{ld.kind:<14}{ld.name:<34}{ld.runner_class:<24}{where:<10}{detail}")
    return "\n".join(rows)


def as_json(landings: list[Landing]) -> list[dict[str, Any]]:
    return [{**asdict(ld), "ok": ld.ok} for ld in landings]
