"""Everything else the platform installs: namespaces, classes, RBAC, the GitLab runners' placement view, CronJobs."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import HOSTNAME_LABEL, Topology
from flywheel_runtime.topology.render._common import (
    ARC_GROUP,
    ARS_PLURAL,
    LABEL_RUNNER_CLASS,
    LABEL_UTILITY_JOB,
    _placement_spec,
    container_resources,
)
from flywheel_runtime.topology.render._gitlab import gitlab_deployments


def _ops_job(topo: Topology, name: str, namespace: str, schedule: str, args: list[str],
             starting_deadline_s: int, concurrency: str = "Forbid") -> dict[str, Any]:
    """A utility CronJob: its own ServiceAccount (named as the job, see
    :func:`operator_rbac`), non-root, read-only root, no capability."""
    uj = topo.utility_jobs
    assert uj is not None
    container = {"name": name, "image": uj.image, "command": ["flywheel-runtime"], "args": args,
                 "resources": container_resources(uj.envelope, "job"),
                 "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_UTILITY_JOB: name}},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": concurrency,
            "startingDeadlineSeconds": starting_deadline_s,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {LABEL_UTILITY_JOB: name}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": name,
                    # It calls the API: the one pod kind here that keeps its token.
                    "automountServiceAccountToken": True,
                    "securityContext": {"runAsUser": uj.run_as_user, "runAsGroup": uj.run_as_user,
                                        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                }}}},
        },
    }


# A missed warm-pool run is repaired by the next reconcile (it converges at any
# instant), so a late start is still right: start within the hour or skip.
WARM_POOL_STARTING_DEADLINE_S = 3600
CLEANUP_NAMESPACE = "arc-runners"


def warm_pool_cronjobs(topo: Topology) -> list[dict[str, Any]]:
    """One CronJob per warm-pool schedule per scale set that has a warm pool."""
    out = []
    for ss in topo.scale_sets:
        if ss.warm_pool is None:
            continue
        for s in ss.warm_pool.schedules:
            out.append(_ops_job(
                topo, warm_pool_job_name(ss.name, s.min_runners), ss.namespace, s.cron,
                ["warm-pool", "reconcile", "--scale-set", ss.name, "--apply"], WARM_POOL_STARTING_DEADLINE_S,
            ))
    return out


def warm_pool_job_name(scale_set: str, min_runners: int) -> str:
    return f"{scale_set}-warm-pool-min{min_runners}"


def cleanup_cronjob(topo: Topology) -> dict[str, Any]:
    c = topo.cleanup
    # A run that cannot start before the next one is due is skipped: the next covers it.
    deadline = c.interval_s or 300
    return _ops_job(topo, "runner-cleanup", CLEANUP_NAMESPACE, c.schedule, ["cleanup", "runner-pods", "--apply"],
                    deadline, c.concurrency_policy)


def cleanup_namespaces(topo: Topology) -> list[str]:
    """The namespaces the cleanup job lists and deletes pods in (every scale set's)."""
    return sorted({ss.namespace for ss in topo.scale_sets})


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


def _role(name: str, namespace: str, rules: list[dict[str, Any]], subject_ns: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": subject_ns}]},
    ]


def _service_account(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace,
                                                                      "labels": {LABEL_UTILITY_JOB: name}}}


def operator_rbac(topo: Topology) -> list[dict[str, Any]]:
    """One ServiceAccount, Role and RoleBinding per utility CronJob (named as
    the job), each granting exactly the calls its code makes:

    * runner-cleanup (audit/cleanup.py): list and delete pods, in every
      runner namespace (it cannot know the pods' names in advance);
    * each warm-pool job (audit/warmpool.py): get and patch the one
      AutoscalingRunnerSet it reconciles, by name; the warm-pool admission
      policy (:func:`render.warm_pool_admission`) narrows the patch to
      ``spec.minRunners``.
    """
    out: list[dict[str, Any]] = [_service_account("runner-cleanup", CLEANUP_NAMESPACE)]
    for ns in cleanup_namespaces(topo):
        out += _role("runner-cleanup", ns, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}],
                     CLEANUP_NAMESPACE)
    for ss in topo.scale_sets:
        if ss.warm_pool is None:
            continue
        for s in ss.warm_pool.schedules:
            name = warm_pool_job_name(ss.name, s.min_runners)
            out.append(_service_account(name, ss.namespace))
            out += _role(name, ss.namespace, [{"apiGroups": [ARC_GROUP], "resources": [ARS_PLURAL],
                                               "resourceNames": [ss.name], "verbs": ["get", "patch"]}],
                         ss.namespace)
    return out


def cluster_objects(topo: Topology) -> list[dict[str, Any]]:
    """Everything the platform installs besides runner pods, in apply order."""
    from flywheel_runtime.topology.devices import runtime_classes

    from flywheel_runtime.topology.render._posture import device_admission, network_policies, warm_pool_admission

    return [*namespaces(topo), *priority_classes(topo), *storage_classes(topo), *runtime_classes(topo),
            *device_admission(topo), *warm_pool_admission(topo), *network_policies(topo),
            *operator_rbac(topo),
            *gitlab_deployments(topo), *warm_pool_cronjobs(topo), cleanup_cronjob(topo)]
