"""Renderers: the topology model turned into what ARC, kind and the test
cluster consume.  Each function takes the model alone and returns plain
dicts in Kubernetes' JSON shape (YAML-ready)."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import (
    HOSTNAME_LABEL,
    Envelope,
    GitLabRunner,
    Placement,
    ScaleSet,
    Topology,
)
from flywheel_runtime.topology.quantity import format_bytes, format_cpu

LABEL_SCALE_SET = "flywheel.tinyland.dev/scale-set"
LABEL_RUNNER_CLASS = "flywheel.tinyland.dev/runner-class"
LABEL_OVERLAY = "flywheel.tinyland.dev/overlay"
LABEL_GITLAB_RUNNER = "flywheel.tinyland.dev/gitlab-runner"
ARC_SCALE_SET_LABEL = "actions.github.com/scale-set-name"
SEED_MOUNT = "/seed/nix"
WORK_DIR = "/home/runner/_work"
DOCKER_SOCK_DIR = "/var/run"
DEFAULT_WORK_OWNER = "1001:1001"
GITHUB_CONFIG_URL_PLACEHOLDER = "https://github.com/OWNER"


def _resources(req_or_lim: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if req_or_lim.cpu is not None:
        out["cpu"] = format_cpu(req_or_lim.cpu)
    if req_or_lim.memory is not None:
        out["memory"] = format_bytes(req_or_lim.memory)
    if req_or_lim.ephemeral_storage is not None:
        out["ephemeral-storage"] = format_bytes(req_or_lim.ephemeral_storage)
    return out


def container_resources(envelope: Envelope, name: str) -> dict[str, dict[str, str]]:
    c = envelope.container(name)
    if c is None:
        return {}
    out = {}
    if (r := _resources(c.requests)):
        out["requests"] = r
    if (lim := _resources(c.limits)):
        out["limits"] = lim
    return out


def _placement_spec(p: Placement) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if p.node_selector:
        spec["nodeSelector"] = dict(p.node_selector)
    if (affinity := p.affinity_k8s()) is not None:
        spec["affinity"] = affinity
    if p.tolerations:
        spec["tolerations"] = [t.as_k8s() for t in p.tolerations]
    return spec


def pod_labels(topo: Topology, ss: ScaleSet) -> dict[str, str]:
    return {
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/part-of": "gha-runner-scale-set",
        ARC_SCALE_SET_LABEL: ss.name,
        LABEL_SCALE_SET: ss.name,
        LABEL_RUNNER_CLASS: ss.label,
        LABEL_OVERLAY: ss.overlay,
    }


def pod_spec(topo: Topology, name: str) -> dict[str, Any]:
    """The PodSpec ARC creates for one runner of scale set ``name``."""
    ss = topo.scale_set(name)
    rp = topo.runner_pod
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in rp.env.items()]
    env += [
        {"name": "FLYWHEEL_SCALE_SET", "value": ss.name},
        {"name": "FLYWHEEL_RUNNER_CLASS", "value": ss.label},
        {"name": "FLYWHEEL_OVERLAY", "value": ss.overlay},
        {"name": "FLYWHEEL_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if rp.hook_job_started:
        env.append({"name": "ACTIONS_RUNNER_HOOK_JOB_STARTED", "value": rp.hook_job_started})
    if rp.hook_job_completed:
        env.append({"name": "ACTIONS_RUNNER_HOOK_JOB_COMPLETED", "value": rp.hook_job_completed})
    env += [{"name": k, "value": v} for k, v in ss.hints.items()]
    if ss.has_dind:
        env.append({"name": "DOCKER_HOST", "value": f"unix://{DOCKER_SOCK_DIR}/docker.sock"})

    runner_mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    dind_mounts: list[dict[str, Any]] = []
    for v in ss.volumes:
        volumes.append({
            "name": v.name,
            "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {LABEL_SCALE_SET: ss.name}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": v.storage_class,
                         "resources": {"requests": {"storage": format_bytes(v.size)}}},
            }},
        })
        mount = {"name": v.name, "mountPath": v.mount_path}
        (dind_mounts if v.container == "dind" else runner_mounts).append(mount)
    for dev, path, kind in (("kvm", "/dev/kvm", "CharDevice"), ("dri", "/dev/dri", "Directory")):
        if dev in ss.devices:
            # Host pass-through with root access, not a device plugin.
            volumes.append({"name": f"dev-{dev}", "hostPath": {"path": path, "type": kind}})
            runner_mounts.append({"name": f"dev-{dev}", "mountPath": path})
    if ss.has_dind:
        volumes.append({"name": "dind-sock", "emptyDir": {}})
        runner_mounts.append({"name": "dind-sock", "mountPath": DOCKER_SOCK_DIR})
        dind_mounts.append({"name": "dind-sock", "mountPath": DOCKER_SOCK_DIR})
        if not any(v.container == "dind" for v in ss.volumes):
            volumes.append({"name": "dind-work", "emptyDir": {}})
            runner_mounts.append({"name": "dind-work", "mountPath": WORK_DIR})
            dind_mounts.append({"name": "dind-work", "mountPath": WORK_DIR})

    runner: dict[str, Any] = {
        "name": "runner",
        "image": ss.image,
        "command": list(rp.command),
        "env": env,
        "resources": container_resources(ss.envelope, "runner"),
        "securityContext": {"runAsUser": rp.run_as_user, "allowPrivilegeEscalation": False},
    }
    if runner_mounts:
        runner["volumeMounts"] = runner_mounts
    containers = [runner]
    if ss.has_dind:
        containers.append({
            "name": "dind",
            "image": topo.images.get("dind-daemon", "docker:dind"),
            "args": ["dockerd", f"--host=unix://{DOCKER_SOCK_DIR}/docker.sock", "--group=$(DOCKER_GROUP_GID)"],
            "env": [{"name": "DOCKER_GROUP_GID", "value": topo.runner_pod.work_owner.split(":")[1]}],
            "securityContext": {"privileged": True},
            "resources": container_resources(ss.envelope, "dind"),
            "volumeMounts": dind_mounts,
        })
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "priorityClassName": rp.priority_class,
        **_placement_spec(ss.placement),
        "containers": containers,
    }
    if ss.seeds_nix:
        nix = next(v for v in ss.volumes if v.seed_nix)
        seed_mounts = [{"name": nix.name, "mountPath": SEED_MOUNT}]
        args = ["seed-nix", "--source", nix.mount_path, "--target", SEED_MOUNT]
        for v in ss.volumes:
            if v.mount_path == WORK_DIR:
                seed_mounts.append({"name": v.name, "mountPath": WORK_DIR})
                args += ["--chown-work", WORK_DIR]
                # seed-nix already defaults to the runner's 1001:1001; say it only when it differs.
                if rp.work_owner != DEFAULT_WORK_OWNER:
                    args += ["--work-owner", rp.work_owner]
        spec["initContainers"] = [{
            "name": "seed-nix",
            "image": ss.image,
            # Runs as uid 0: it copies the image's baked /nix into the empty
            # claim and chowns the work claim before the runner starts.
            "command": ["flywheel-runtime"],
            "args": args,
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False},
            "resources": container_resources(ss.envelope, "runner"),
            "volumeMounts": seed_mounts,
        }]
    if volumes:
        spec["volumes"] = volumes
    return spec


def pod(topo: Topology, name: str) -> dict[str, Any]:
    """A v1 Pod exactly as ARC would create it for scale set ``name``."""
    ss = topo.scale_set(name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{ss.name}-runner-", "namespace": ss.namespace, "labels": pod_labels(topo, ss)},
        "spec": pod_spec(topo, name),
    }


def helm_values(topo: Topology, name: str, github_config_url: str | None = None) -> dict[str, Any]:
    """gha-runner-scale-set chart values for one scale set.

    ``githubConfigUrl`` is the owner overlay's URL unless ``github_config_url``
    overrides it (e.g. a fork's org, or the harness's placeholder)."""
    ss = topo.scale_set(name)
    overlay = topo.overlay(ss.overlay)
    return {
        "githubConfigUrl": github_config_url or overlay.github_config_url,
        "githubConfigSecret": overlay.github_config_secret,
        "runnerScaleSetName": ss.name,
        "scaleSetLabels": list(ss.labels),
        "minRunners": ss.min_runners,
        "maxRunners": ss.max_runners,
        "template": {"metadata": {"labels": pod_labels(topo, ss)}, "spec": pod_spec(topo, name)},
    }


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
            "labels": {"flywheel.tinyland.dev/node": n.name, **n.labels},
            "kubeadmConfigPatches": [patch],
            "kubeadmConfigPatchesJSON6902": [{"group": group, "version": version, "kind": kind,
                                              "patch": extra_args}],
        })
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": "flywheel", "nodes": nodes}


def yaml_dump(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


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
    return [*namespaces(topo), *priority_classes(topo), *storage_classes(topo), *operator_rbac(topo),
            *gitlab_deployments(topo), *warm_pool_cronjobs(topo), cleanup_cronjob(topo)]


def autoscaling_runner_set(topo: Topology, name: str) -> dict[str, Any]:
    """The AutoscalingRunnerSet the gha-runner-scale-set chart creates from :func:`helm_values`."""
    ss = topo.scale_set(name)
    values = helm_values(topo, name)
    return {
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": ss.name, "namespace": ss.namespace,
                     "labels": {LABEL_SCALE_SET: ss.name, LABEL_RUNNER_CLASS: ss.label, LABEL_OVERLAY: ss.overlay}},
        "spec": {
            "githubConfigUrl": values["githubConfigUrl"],
            "githubConfigSecret": values["githubConfigSecret"],
            "runnerScaleSetName": ss.name,
            "runnerScaleSetLabels": list(ss.labels),
            "minRunners": ss.min_runners,
            "maxRunners": ss.max_runners,
            "template": values["template"],
        },
    }
