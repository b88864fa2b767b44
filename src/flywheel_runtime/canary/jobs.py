"""Kubernetes Jobs that run the canaries in-cluster, on the lane they prove.

The pod template is the scale set's own runner pod (``topology.render.pod``): same
image, node pinning, tolerations, envelope, priority class and device mounts,
so a passing in-cluster canary proves exactly what a runner on that lane gets.
Only what a one-shot Job cannot keep is changed: the runner's command, ARC's
ownership labels, sidecars that never exit, and the job hooks.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from flywheel_runtime.kube import ARC_SCALE_SET_LABEL

if TYPE_CHECKING:
    from flywheel_runtime.topology.model import ScaleSet, Topology

# lane -> (runner class it proves, device the scale set must carry, canary command)
LANES: dict[str, dict[str, Any]] = {
    "kvm": {"label": "tinyland-nix-kvm", "device": "kvm",
            "command": ["flywheel-runtime", "canary", "kvm", "--json", "--artifacts", "/tmp/canary"]},
    "gpu": {"label": "tinyland-nix-gpu", "device": "dri",
            "command": ["flywheel-runtime", "canary", "gpu", "--require-hardware", "--json",
                        "--artifacts", "/tmp/canary"]},
}
# Where runner images carry canaries/dawn (package.json + node_modules).
DAWN_DIR = "/opt/flywheel/canaries/dawn"
CANARY_LABEL = "flywheel.tinyland.dev/canary"
DEADLINE_S = 900
# ARC-owned labels: a Job's pod must not look like an EphemeralRunner's pod.
ARC_LABELS = (ARC_SCALE_SET_LABEL, "actions.github.com/scale-set-namespace",
              "app.kubernetes.io/component", "app.kubernetes.io/part-of")
RUNNER_ONLY_ENV = ("ACTIONS_RUNNER_HOOK_JOB_STARTED", "ACTIONS_RUNNER_HOOK_JOB_COMPLETED", "RUNNER_ALLOW_RUNASROOT")


def lane_scale_set(topo: Topology, lane: str) -> ScaleSet:
    """The scale set a lane's canary runs on: the one publishing the lane's label, carrying its device."""
    from flywheel_runtime.errors import TopologyError

    spec = LANES[lane]
    for ss in topo.scale_sets:
        if ss.label == spec["label"] and spec["device"] in ss.devices:
            return ss
    for ss in topo.scale_sets:  # any lane carrying the device will do
        if spec["device"] in ss.devices:
            return ss
    raise TopologyError(f"no scale set in the topology carries the {spec['device']!r} device for the {lane} canary")


def job_manifest(topo: Topology, lane: str, image: str | None = None) -> dict[str, Any]:
    from flywheel_runtime.topology.render import no_permission_service_account, pod

    spec = LANES[lane]
    ss = lane_scale_set(topo, lane)
    base = copy.deepcopy(pod(topo, ss.name))
    pod_spec = base["spec"]
    runner = next(c for c in pod_spec["containers"] if c["name"] == "runner")
    runner["name"] = f"canary-{lane}"
    runner["command"] = list(spec["command"])
    runner.pop("args", None)
    if image:
        runner["image"] = image
    env = [e for e in runner.get("env", []) if e.get("name") not in RUNNER_ONLY_ENV]
    if lane == "gpu":
        env.append({"name": "FLYWHEEL_DAWN_DIR", "value": DAWN_DIR})
    runner["env"] = env
    # sidecars (the DinD daemon) never exit and would keep the Job running forever
    pod_spec["containers"] = [runner]
    pod_spec["restartPolicy"] = "Never"
    # The lane's own (no-permission) account, as ARC gives its runners: the device
    # admission policy admits a device class only from the lane's namespace,
    # that account and the lane's scale-set label (kept below).
    pod_spec["serviceAccountName"] = no_permission_service_account(ss)
    labels = {k: v for k, v in base["metadata"].get("labels", {}).items() if k not in ARC_LABELS}
    labels[CANARY_LABEL] = lane
    name = f"flywheel-canary-{lane}"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": base["metadata"].get("namespace", ss.namespace), "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a canary that fails must show as failed, not be retried into a pass
            "activeDeadlineSeconds": DEADLINE_S,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
