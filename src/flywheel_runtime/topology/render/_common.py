"""Shared pieces of the renderers: label keys, paths, resources, placement, chart labels."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.kube import ARC_GROUP, ARC_SCALE_SET_LABEL
from flywheel_runtime.topology.model import Envelope, Placement, ScaleSet, Topology
from flywheel_runtime.topology.quantity import format_bytes, format_cpu


LABEL_SCALE_SET = "flywheel.tinyland.dev/scale-set"


LABEL_RUNNER_CLASS = "flywheel.tinyland.dev/runner-class"


LABEL_OVERLAY = "flywheel.tinyland.dev/overlay"


LABEL_GITLAB_RUNNER = "flywheel.tinyland.dev/gitlab-runner"




ARS_PLURAL = "autoscalingrunnersets"


LABEL_UTILITY_JOB = "flywheel.tinyland.dev/utility-job"


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


def yaml_dump(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


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
