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
EXTERNALS_DIR = "/home/runner/externals"
EXTERNALS_COPY = "/home/runner/tmpDir"
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
    dind = topo.arc.dind if topo.arc else None
    if ss.has_dind:
        env.append({"name": "DOCKER_HOST", "value": f"unix://{DOCKER_SOCK_DIR}/docker.sock"})
        if dind is not None:
            env.append({"name": "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "value": str(dind.wait_for_docker_s)})

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
        if v.container == "dind":
            dind_mounts.append(mount)
        else:
            runner_mounts.append(mount)
            if ss.has_dind and v.mount_path == WORK_DIR:
                # The chart's dind layout: the daemon sees the job's workspace at the same path.
                dind_mounts.append(dict(mount))
    # Declared devices come through the lane's RuntimeClass (topology/devices.yaml):
    # a hostPath device is EPERM under runc's device cgroup on a real kubelet.
    from flywheel_runtime.topology.devices import runtime_class_for

    runtime_class = runtime_class_for(ss.devices)
    if ss.has_dind:
        # The chart's dind volumes (work, dind-sock, dind-externals); work is
        # an emptyDir unless the lane reserves it as a claim.
        if not any(v.mount_path == WORK_DIR for v in ss.volumes):
            volumes.append({"name": "work", "emptyDir": {}})
            runner_mounts.insert(0, {"name": "work", "mountPath": WORK_DIR})
            dind_mounts.insert(0, {"name": "work", "mountPath": WORK_DIR})
        volumes += [{"name": "dind-sock", "emptyDir": {}}, {"name": "dind-externals", "emptyDir": {}}]
        runner_mounts.append({"name": "dind-sock", "mountPath": DOCKER_SOCK_DIR})
        dind_mounts += [{"name": "dind-sock", "mountPath": DOCKER_SOCK_DIR},
                        {"name": "dind-externals", "mountPath": EXTERNALS_DIR}]

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
    init_containers: list[dict[str, Any]] = []
    if ss.has_dind and dind is not None:
        init_containers, sidecar = _dind_layout(topo, ss, dind_mounts)
        if dind.native_sidecar:
            init_containers.append(sidecar)
        else:  # before Kubernetes 1.29 the chart runs the daemon as a plain container
            sidecar.pop("restartPolicy")
            containers.append(sidecar)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "priorityClassName": rp.priority_class,
        **_placement_spec(ss.placement),
        "containers": containers,
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    if init_containers:
        spec["initContainers"] = init_containers
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
        spec.setdefault("initContainers", []).insert(0, {
            "name": "seed-nix",
            "image": ss.image,
            # Runs as uid 0: it copies the image's baked /nix into the empty
            # claim and chowns the work claim before the runner starts.
            "command": ["flywheel-runtime"],
            "args": args,
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False},
            "resources": container_resources(ss.envelope, "runner"),
            "volumeMounts": seed_mounts,
        })
    if volumes:
        spec["volumes"] = volumes
    return spec


def _dind_layout(topo: Topology, ss: ScaleSet, dind_mounts: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chart's dind mode (containerMode dind), with the topology's images
    and the daemon's envelope: the externals copy and the daemon container."""
    assert topo.arc is not None
    d = topo.arc.dind
    externals = {
        "name": "init-dind-externals",
        "image": ss.image,
        "command": ["cp"],
        "args": ["-r", f"{EXTERNALS_DIR}/.", f"{EXTERNALS_COPY}/"],
        "volumeMounts": [{"name": "dind-externals", "mountPath": EXTERNALS_COPY}],
    }
    daemon: dict[str, Any] = {
        "name": "dind",
        "image": d.image,
        "args": ["dockerd", f"--host=unix://{DOCKER_SOCK_DIR}/docker.sock", "--group=$(DOCKER_GROUP_GID)"],
        "env": [{"name": "DOCKER_GROUP_GID", "value": str(d.docker_group_gid)}],
        "securityContext": {"privileged": True},
        "restartPolicy": "Always",
        # The runner starts only once the daemon answers (native sidecar ordering).
        "startupProbe": {"exec": {"command": ["docker", "info"]}, "initialDelaySeconds": 0,
                         "failureThreshold": d.startup_failure_threshold, "periodSeconds": d.startup_period_s},
        "resources": container_resources(ss.envelope, "dind"),
        "volumeMounts": dind_mounts,
    }
    return [externals], daemon


def pod(topo: Topology, name: str) -> dict[str, Any]:
    """A v1 Pod exactly as ARC would create it for scale set ``name``."""
    ss = topo.scale_set(name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{ss.name}-runner-", "namespace": ss.namespace, "labels": pod_labels(topo, ss)},
        "spec": pod_spec(topo, name),
    }


def listener_template(topo: Topology, name: str) -> dict[str, Any]:
    """The scale set's ``listenerTemplate``: placement and the ``listener``
    container's envelope (ARC merges a container named ``listener`` into its own)."""
    lst = topo.scale_set(name).listener
    if lst is None:
        return {}
    container: dict[str, Any] = {"name": "listener"}
    if (res := container_resources(lst.envelope, "listener")):
        container["resources"] = res
    return {"spec": {**_placement_spec(lst.placement), "containers": [container]}}


def helm_values(topo: Topology, name: str, github_config_url: str | None = None) -> dict[str, Any]:
    """gha-runner-scale-set chart values for one scale set, as the real chart
    takes them (``helm template`` needs ``controllerServiceAccount`` offline).

    ``githubConfigUrl`` is the owner overlay's URL unless ``github_config_url``
    overrides it (e.g. a fork's org, or the harness's placeholder)."""
    ss = topo.scale_set(name)
    overlay = topo.overlay(ss.overlay)
    values: dict[str, Any] = {
        "githubConfigUrl": github_config_url or overlay.github_config_url,
        "githubConfigSecret": overlay.github_config_secret,
        "runnerScaleSetName": ss.name,
        "scaleSetLabels": list(ss.labels),
        "minRunners": ss.min_runners,
        "maxRunners": ss.max_runners,
        "template": {"metadata": {"labels": pod_labels(topo, ss)}, "spec": pod_spec(topo, name)},
    }
    if topo.arc is not None:
        ctl = topo.arc.controller
        values["controllerServiceAccount"] = {"namespace": ctl.namespace, "name": ctl.name}
        if (lt := listener_template(topo, name)):
            values["listenerTemplate"] = lt
    return values


def controller_values(topo: Topology) -> dict[str, Any]:
    """gha-runner-scale-set-controller chart values: the controller on its
    node, metrics on the topology's port (controller and listeners)."""
    assert topo.arc is not None
    ctl = topo.arc.controller
    repo, _, tag = ctl.image.rpartition(":")
    values: dict[str, Any] = {
        "replicaCount": ctl.replicas,
        "fullnameOverride": ctl.name,
        "image": {"repository": repo, "tag": tag},
        "serviceAccount": {"create": True, "name": ctl.name},
        "metrics": {"controllerManagerAddr": f":{ctl.metrics_port}", "listenerAddr": f":{ctl.metrics_port}",
                    "listenerEndpoint": "/metrics"},
        "resources": container_resources(ctl.envelope, "manager"),
    }
    spec = _placement_spec(ctl.placement)
    values["nodeSelector"] = spec.get("nodeSelector", {})
    values["tolerations"] = spec.get("tolerations", [])
    if "affinity" in spec:
        values["affinity"] = spec["affinity"]
    return values


def listener_pod(topo: Topology, name: str) -> dict[str, Any]:
    """The listener pod ARC creates for scale set ``name`` (placement and
    envelope from the topology; ARC adds image, args and config secret)."""
    ss = topo.scale_set(name)
    assert ss.listener is not None
    spec = listener_template(topo, name)["spec"]
    spec["containers"][0]["image"] = topo.arc.controller.image if topo.arc else ""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{ss.name}-listener-", "namespace": ss.listener.namespace,
                         "labels": {LABEL_SCALE_SET: ss.name, "app.kubernetes.io/component": "runner-scale-set-listener"}},
            "spec": {"serviceAccountName": f"{ss.name}-listener", **spec}}


def controller_pod(topo: Topology) -> dict[str, Any]:
    """One ARC controller pod as its Deployment makes it (for placement)."""
    assert topo.arc is not None
    ctl = topo.arc.controller
    container = {"name": "manager", "image": ctl.image,
                 "ports": [{"containerPort": ctl.metrics_port, "name": "metrics"}],
                 "resources": container_resources(ctl.envelope, "manager")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{ctl.name}-", "namespace": ctl.namespace,
                         "labels": {"app.kubernetes.io/name": "gha-rs-controller",
                                    "app.kubernetes.io/instance": ctl.name}},
            "spec": {**_placement_spec(ctl.placement), "containers": [container]}}


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
    from flywheel_runtime.topology.devices import runtime_classes

    return [*namespaces(topo), *priority_classes(topo), *storage_classes(topo), *runtime_classes(topo),
            *operator_rbac(topo),
            *gitlab_deployments(topo), *warm_pool_cronjobs(topo), cleanup_cronjob(topo)]


def chart_labels(topo: Topology, ss: ScaleSet) -> dict[str, str]:
    """The labels the gha-runner-scale-set chart puts on what it renders."""
    version = topo.arc.version if topo.arc else ""
    return {
        "app.kubernetes.io/component": "autoscaling-runner-set",
        "helm.sh/chart": f"gha-rs-{version}",
        "app.kubernetes.io/name": ss.name,
        "app.kubernetes.io/instance": ss.name,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "gha-rs",
        ARC_SCALE_SET_LABEL: ss.name,
        "actions.github.com/scale-set-namespace": ss.namespace,
    }


def no_permission_service_account(ss: ScaleSet) -> str:
    """The chart's runner service account (no RBAC), named after the scale set."""
    return f"{ss.name}-gha-rs-no-permission"


def autoscaling_runner_set(topo: Topology, name: str) -> dict[str, Any]:
    """The AutoscalingRunnerSet the gha-runner-scale-set chart creates from
    :func:`helm_values` (a pre-defined githubConfigSecret is used as named; the
    chart's values-hash and cleanup annotations are left to the chart)."""
    ss = topo.scale_set(name)
    values = helm_values(topo, name)
    template = {"metadata": values["template"]["metadata"],
                "spec": {**values["template"]["spec"], "serviceAccountName": no_permission_service_account(ss)}}
    spec: dict[str, Any] = {
        "githubConfigUrl": values["githubConfigUrl"],
        "githubConfigSecret": values["githubConfigSecret"],
        "runnerScaleSetName": ss.name,
        "runnerScaleSetLabels": list(ss.labels),
        "maxRunners": ss.max_runners,
        "minRunners": ss.min_runners,
        "template": template,
    }
    if "listenerTemplate" in values:
        spec["listenerTemplate"] = values["listenerTemplate"]
    return {
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": ss.name, "namespace": ss.namespace,
                     "labels": {**chart_labels(topo, ss),
                                LABEL_SCALE_SET: ss.name, LABEL_RUNNER_CLASS: ss.label, LABEL_OVERLAY: ss.overlay}},
        "spec": spec,
    }


def autoscaling_runner_sets(topo: Topology) -> list[dict[str, Any]]:
    return [autoscaling_runner_set(topo, s.name) for s in topo.scale_sets]


# What ARC itself adds when its controller turns the template into a runner
# pod (learned from pods the real 0.14.0 controller created; see ../shared/arc).
ARC_RUNNER_ENV = ("ACTIONS_RUNNER_INPUT_JITCONFIG", "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT",
                  "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE")


def arc_additions(topo: Topology, name: str, runner: str = "<runner>") -> dict[str, Any]:
    """What ARC adds to :func:`pod` for a runner named ``runner`` (its EphemeralRunner)."""
    ss = topo.scale_set(name)
    version = topo.arc.version if topo.arc else ""
    org = topo.overlay(ss.overlay).github_config_url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "env": [
            {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "valueFrom": {"secretKeyRef": {"key": "jitToken",
                                                                                      "name": runner}}},
            {"name": "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT", "value": f"actions-runner-controller/{version}"},
            {"name": "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE", "value": "1"},
        ],
        "serviceAccountName": no_permission_service_account(ss),
        "ownerReference": {"apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunner", "name": runner,
                           "controller": True, "blockOwnerDeletion": True},
        "labels": {
            "actions-ephemeral-runner": "True",
            "actions.github.com/organization": org,
            **{k: v for k, v in chart_labels(topo, ss).items() if k not in ("app.kubernetes.io/component",
                                                                            "app.kubernetes.io/part-of")},
        },
        "annotations": {"actions.github.com/runner-group-name": "Default",
                        "actions.github.com/runner-scale-set-name": ss.name},
    }


def arc_created_pod(topo: Topology, name: str, runner: str) -> dict[str, Any]:
    """:func:`pod` with :func:`arc_additions` applied: the pod the controller creates
    (before the API server's defaults and the scheduler's binding)."""
    import copy

    obj = copy.deepcopy(pod(topo, name))
    add = arc_additions(topo, name, runner)
    meta = obj["metadata"]
    meta.pop("generateName")
    meta["name"] = runner
    meta["labels"] = {**meta["labels"], **add["labels"]}
    meta["annotations"] = dict(add["annotations"])
    meta["ownerReferences"] = [add["ownerReference"]]
    obj["spec"]["serviceAccountName"] = add["serviceAccountName"]
    runner_c = next(c for c in obj["spec"]["containers"] if c["name"] == "runner")
    runner_c["env"] = [*runner_c["env"], *add["env"]]
    return obj


def arc_additions_comment(topo: Topology, name: str) -> str:
    """A YAML comment block saying plainly what ARC adds to the rendered pod."""
    add = arc_additions(topo, name)
    env = ", ".join(e["name"] for e in add["env"])
    return ("# ARC adds at creation (not rendered here):\n"
            f"#   runner env {env} (the JIT config from the EphemeralRunner's secret)\n"
            f"#   serviceAccountName {add['serviceAccountName']} (the chart's no-permission account)\n"
            "#   an ownerReference to its EphemeralRunner, the runner's name, ARC's labels and annotations\n")
