"""Everything else the platform installs: namespaces, classes, RBAC, GitLab runners, CronJobs."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import HOSTNAME_LABEL, GitLabRunner, Topology
from flywheel_runtime.topology.render._common import (
    LABEL_GITLAB_RUNNER,
    LABEL_RUNNER_CLASS,
    _placement_spec,
    container_resources,
)


def _deployment_for_gitlab(topo: Topology, g: GitLabRunner) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "gitlab-runner", LABEL_GITLAB_RUNNER: g.name,
              LABEL_RUNNER_CLASS: g.runner_class}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"gitlab-runner-{g.name}", "namespace": g.namespace, "labels": labels},
        "spec": {
            "replicas": g.min_replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **_placement_spec(g.placement),
                    "containers": [{
                        "name": "runner",
                        "image": g.image,
                        # The runner's tag list is its runner class: the GitLab consumer contract.
                        "env": [{"name": "RUNNER_TAG_LIST", "value": g.runner_class}],
                        "resources": container_resources(g.envelope, "runner"),
                    }],
                },
            },
        },
    }


def gitlab_deployments(topo: Topology) -> list[dict[str, Any]]:
    """GitLab compatibility runners: a Deployment and an HPA each."""
    out: list[dict[str, Any]] = []
    for g in topo.gitlab_runners:
        out.append(_deployment_for_gitlab(topo, g))
        out.append({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": f"gitlab-runner-{g.name}", "namespace": g.namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"gitlab-runner-{g.name}"},
                "minReplicas": max(1, g.min_replicas),
                "maxReplicas": g.max_replicas,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": g.cpu_target_percent}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": g.scale_down_stabilization_s}},
            },
        })
    return out


def _ops_job(name: str, namespace: str, schedule: str, args: list[str], image: str,
             concurrency: str = "Forbid") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": concurrency,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "flywheel-operator",
                "containers": [{"name": name, "image": image, "command": ["flywheel-runtime"], "args": args}],
            }}}},
        },
    }


def warm_pool_cronjobs(topo: Topology) -> list[dict[str, Any]]:
    """One CronJob per warm-pool schedule per scale set that has a warm pool."""
    out = []
    for ss in topo.scale_sets:
        if ss.warm_pool is None:
            continue
        for s in ss.warm_pool.schedules:
            out.append(_ops_job(
                f"{ss.name}-warm-pool-min{s.min_runners}", ss.namespace, s.cron,
                ["warm-pool", "reconcile", "--scale-set", ss.name, "--apply"], topo.images["nix"],
            ))
    return out


def cleanup_cronjob(topo: Topology) -> dict[str, Any]:
    c = topo.cleanup
    return _ops_job("runner-cleanup", "arc-runners", c.schedule, ["cleanup", "runner-pods", "--apply"],
                    topo.images["nix"], c.concurrency_policy)


def storage_classes(topo: Topology) -> list[dict[str, Any]]:
    out = []
    for sc in topo.storage_classes:
        obj: dict[str, Any] = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc.name},
            "provisioner": sc.provisioner,
            "reclaimPolicy": sc.reclaim_policy,
            "volumeBindingMode": sc.binding_mode,
        }
        if sc.node:
            obj["allowedTopologies"] = [{"matchLabelExpressions": [{"key": HOSTNAME_LABEL, "values": [sc.node]}]}]
        out.append(obj)
    return out


def priority_classes(topo: Topology) -> list[dict[str, Any]]:
    rp = topo.runner_pod
    return [{
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": rp.priority_class},
        "value": rp.priority_value,
        "globalDefault": False,
        "description": "ARC runner pods: below default so platform services win under pressure.",
    }]


def namespaces(topo: Topology) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in topo.namespaces]


def operator_rbac(topo: Topology) -> list[dict[str, Any]]:
    """ServiceAccount and RBAC the warm-pool and cleanup CronJobs run under."""
    out: list[dict[str, Any]] = []
    for ns in sorted({ss.namespace for ss in topo.scale_sets}):
        out += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "flywheel-operator", "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "flywheel-operator", "namespace": ns},
             "rules": [
                 {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
                 {"apiGroups": ["actions.github.com"], "resources": ["autoscalingrunnersets"],
                  "verbs": ["get", "list", "patch"]},
             ]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "flywheel-operator", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flywheel-operator"},
             "subjects": [{"kind": "ServiceAccount", "name": "flywheel-operator", "namespace": ns}]},
        ]
    return out


def cluster_objects(topo: Topology) -> list[dict[str, Any]]:
    """Everything the platform installs besides runner pods, in apply order."""
    from flywheel_runtime.topology.devices import runtime_classes

    return [*namespaces(topo), *priority_classes(topo), *storage_classes(topo), *runtime_classes(topo),
            *operator_rbac(topo),
            *gitlab_deployments(topo), *warm_pool_cronjobs(topo), cleanup_cronjob(topo)]
