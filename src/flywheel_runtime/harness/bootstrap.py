"""What a real platform cluster has before runners arrive, the same on every backend.

A backend brings up its API server and nodes, then calls :func:`bootstrap`:
the topology's unschedulable nodes cordoned (bumble), its namespaces, priority
classes, storage classes and the device lanes' RuntimeClasses (admission
rejects their pods without one), ARC's own CRDs, and the posture
(``topology render posture``): the device and warm-pool admission policies,
the NetworkPolicies, each utility job's ServiceAccount and Role, the GitLab
runners' account, and the lanes' no-permission accounts the scale-set chart
would make (:func:`lane_service_accounts`).  The utility CronJobs and GitLab
Deployments themselves are not started: they would run pods every test counts.

The sim enforces the admission policies and RBAC (a real kube-apiserver); its
nodes have no data path, so its NetworkPolicies are stored, never enforced.
The kind backend adds the policy engine (:mod:`.kind.netpol`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.kube import Client
    from flywheel_runtime.topology import Topology


def lane_service_accounts(topo: Topology) -> list[dict[str, Any]]:
    """Each scale set's ``<set>-gha-rs-no-permission`` account, as the scale-set chart
    renders it, less its ``cleanup-protection`` finalizer: ARC's controller removes
    that one, and without a controller it would hold the namespace forever.  It
    carries Helm's ownership marks for the release the chart would install (named
    as the set, in its namespace), so a later ``helm upgrade --install`` of that
    release adopts it instead of refusing an object it did not make."""
    from flywheel_runtime.topology import render

    out = []
    for ss in topo.scale_sets:
        labels = {k: v for k, v in render.chart_labels(topo, ss).items() if k != "app.kubernetes.io/component"}
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": render.no_permission_service_account(ss), "namespace": ss.namespace,
                                 "labels": labels,
                                 "annotations": {"meta.helm.sh/release-name": ss.name,
                                                 "meta.helm.sh/release-namespace": ss.namespace}}})
    return out


def gitlab_service_accounts(topo: Topology, namespace: str | None = None) -> list[dict[str, Any]]:
    """The GitLab runners' rendered accounts (one per runner), in their namespace or
    (``namespace``) in one other namespace, where a test or the placement check creates their pods."""
    from flywheel_runtime.topology import render

    accounts = [o for o in render.gitlab_deployments(topo) if o["kind"] == "ServiceAccount"]
    if namespace is not None:
        return [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in accounts]
    # In their own namespace the chart's release (named as the account: gitlab_release) owns
    # them: Helm's ownership marks let `helm install` adopt them instead of refusing them.
    return [{**o, "metadata": {**o["metadata"],
                               "labels": {**o["metadata"].get("labels", {}), "app.kubernetes.io/managed-by": "Helm"},
                               "annotations": {**o["metadata"].get("annotations", {}),
                                               "meta.helm.sh/release-name": o["metadata"]["name"],
                                               "meta.helm.sh/release-namespace": o["metadata"]["namespace"]}}}
            for o in accounts]


def posture_objects(topo: Topology) -> list[dict[str, Any]]:
    """The posture the harness applies (see the module docs), in apply order."""
    from flywheel_runtime.topology import render

    return [*render.device_admission(topo), *render.warm_pool_admission(topo), *render.network_policies(topo),
            *render.operator_rbac(topo), *gitlab_service_accounts(topo)]


def ensure_accounts(kube: Client, accounts: list[dict[str, Any]]) -> None:
    """Create each ServiceAccount that does not exist yet; one that does (an ARC chart
    install made it, or an earlier run) is left as it is."""
    from kubernetes.client.rest import ApiException

    for sa in accounts:
        try:
            kube.core.create_namespaced_service_account(sa["metadata"]["namespace"], sa)
        except ApiException as exc:
            if exc.status != 409:
                raise


def bootstrap(kube: Client, topo: Topology, *, arc_crds: Path | None, log: Log) -> None:
    from flywheel_runtime.harness.arc import install_crds
    from flywheel_runtime.topology import render
    from flywheel_runtime.topology.devices import runtime_classes

    for n in topo.nodes:
        if not n.schedulable:
            kube.core.patch_node(n.name, {"spec": {"unschedulable": True}})
    for obj in [*render.namespaces(topo), *render.priority_classes(topo), *render.storage_classes(topo),
                *runtime_classes(topo)]:
        kube.apply(obj)
    install_crds(kube, arc_crds, log=log)
    posture = posture_objects(topo)
    for obj in posture:
        kube.apply(obj)
    ensure_accounts(kube, lane_service_accounts(topo))
    log(f"bootstrapped {len(topo.nodes)} nodes, namespaces, priority, storage and runtime classes, ARC's CRDs, "
        f"the posture ({len(posture)} objects: admission policies, NetworkPolicies, job RBAC) and "
        f"{len(topo.scale_sets)} lane accounts")
