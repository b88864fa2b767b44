"""Runner pods: the PodSpec ARC creates from the template, the chart's dind layout, what ARC adds."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import ScaleSet, Topology
from flywheel_runtime.topology.quantity import format_bytes
from flywheel_runtime.topology.render._common import (
    DEFAULT_WORK_OWNER,
    DOCKER_SOCK_DIR,
    EXTERNALS_COPY,
    EXTERNALS_DIR,
    LABEL_SCALE_SET,
    SEED_MOUNT,
    WORK_DIR,
    _placement_spec,
    chart_labels,
    container_resources,
    no_permission_service_account,
    pod_labels,
)


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
    from flywheel_runtime.topology.devices import of_scale_set

    dc = of_scale_set(ss)
    runtime_class = ss.runtime_class or (dc.runtime_class if dc else None)
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
        # Jobs run as the lane's uid (0 where the design says so): as root they keep
        # only the capabilities a root job needs (runner_pod.root_capabilities).
        "securityContext": hardened(ss.run_as_user, rp.root_capabilities if ss.runs_jobs_as_root else ()),
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
        # The design's runners never call the API (the operator lane's jobs bring
        # their own credentials): no token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
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
            # claim (owners, modes, set-id bits kept) and chowns the work claim
            # before the runner starts: runner_pod.seed_capabilities, nothing more.
            "command": ["flywheel-runtime"],
            "args": args,
            "securityContext": hardened(0, rp.seed_capabilities, read_only=True),
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
        # A plain copy into an emptyDir: the runner image's own user, no capability.
        "securityContext": hardened(_uid(topo.runner_pod.work_owner), (), read_only=True),
        "resources": container_resources(d.externals, "init-dind-externals"),
        "volumeMounts": [{"name": "dind-externals", "mountPath": EXTERNALS_COPY}],
    }
    daemon: dict[str, Any] = {
        "name": "dind",
        "image": d.image,
        "args": ["dockerd", f"--host=unix://{DOCKER_SOCK_DIR}/docker.sock", "--group=$(DOCKER_GROUP_GID)"],
        "env": [{"name": "DOCKER_GROUP_GID", "value": str(d.docker_group_gid)}],
        # The design's DinD daemon is privileged (it runs the builds' containers).
        "securityContext": {"privileged": True},
        "restartPolicy": "Always",
        # The runner starts only once the daemon answers (native sidecar ordering).
        "startupProbe": {"exec": {"command": ["docker", "info"]}, "initialDelaySeconds": 0,
                         "failureThreshold": d.startup_failure_threshold, "periodSeconds": d.startup_period_s},
        "resources": container_resources(ss.envelope, "dind"),
        "volumeMounts": dind_mounts,
    }
    return [externals], daemon


def _uid(owner: str) -> int:
    return int(owner.split(":", 1)[0])


def hardened(uid: int, add: tuple[str, ...] | list[str], *, read_only: bool = False) -> dict[str, Any]:
    """A container securityContext: no privilege escalation, every capability
    dropped but ``add``, non-root asserted unless ``uid`` is 0; ``read_only``:
    the container writes only to its volumes."""
    caps: dict[str, Any] = {"drop": ["ALL"]}
    if add:
        caps["add"] = list(add)
    ctx: dict[str, Any] = {"runAsUser": uid}
    if uid != 0:
        ctx["runAsNonRoot"] = True
    if read_only:
        ctx["readOnlyRootFilesystem"] = True
    return {**ctx, "allowPrivilegeEscalation": False, "capabilities": caps}


def pod(topo: Topology, name: str) -> dict[str, Any]:
    """A v1 Pod exactly as ARC would create it for scale set ``name``."""
    ss = topo.scale_set(name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{ss.name}-runner-", "namespace": ss.namespace, "labels": pod_labels(topo, ss)},
        "spec": pod_spec(topo, name),
    }


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
