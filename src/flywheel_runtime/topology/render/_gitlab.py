"""GitLab compatibility runners through the real gitlab-runner chart (0.86.0).

:func:`gitlab_values` is what ``helm install gitlab-runner-NAME
gitlab/gitlab-runner -n NAMESPACE -f`` takes: the runner manager Deployment's
placement, envelope and security context, its own ServiceAccount and a Role
with explicit rules (the chart's empty ``rbac.rules`` grant ``*``), the
executor's ``runners.config`` TOML, the class's tag, and the HPA.  The chart's
``hpa:`` has no ``behavior``, so the HPA (CPU and memory, the scale-down
window) is a whole object in ``extraObjects`` and ``hpa:`` stays unset.

:func:`gitlab_deployments` is the placement view of the same values (what the
harness, the capacity model and the benchmarks place without helm): the
Deployment and HPA the chart creates, built from :func:`gitlab_values`.
"""

from __future__ import annotations

import json
from typing import Any

from flywheel_runtime.topology.model import GitLabRunner, Topology
from flywheel_runtime.topology.render._common import (
    LABEL_GITLAB_RUNNER,
    LABEL_RUNNER_CLASS,
    _placement_spec,
    container_resources,
)

GITLAB_URL_PLACEHOLDER = "https://gitlab.example.com"

# What the Kubernetes executor calls, in the manager's namespace (GitLab's
# "Configure runner API permissions" for the kubernetes executor): job pods,
# attach/exec into them, their logs and warning events, the per-job secrets and
# configmaps, and the service account and services it reads or creates.
EXECUTOR_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/attach", "pods/exec"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["create", "delete", "get", "update"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
)

# The DinD service's daemon listens on the job pod's localhost without TLS
# (the pod is the trust boundary, as in the ARC dind lane).
DIND_ENVIRONMENT = (("DOCKER_HOST", "tcp://localhost:2375"), ("DOCKER_TLS_CERTDIR", ""))


def gitlab_release(g: GitLabRunner) -> str:
    """The Helm release, and so (prefix ``gitlab-runner``) every object's name."""
    return f"gitlab-runner-{g.name}"


def gitlab_runner(topo: Topology, name: str) -> GitLabRunner:
    from flywheel_runtime.errors import ExitCode, FlywheelError

    for g in topo.gitlab_runners:
        if g.name == name:
            return g
    raise FlywheelError(f"no GitLab runner {name!r} (one of: {', '.join(g.name for g in topo.gitlab_runners)})",
                        exit_code=ExitCode.USAGE)


COMPONENT = "app.kubernetes.io/component"
MANAGER, JOB = "runner-manager", "job"


def gitlab_labels(g: GitLabRunner, component: str = MANAGER) -> dict[str, str]:
    """The manager's (or its job pods') labels: the runners' NetworkPolicy
    selects both by the runner key, the API server's only the managers."""
    return {"app.kubernetes.io/name": "gitlab-runner", COMPONENT: component, LABEL_GITLAB_RUNNER: g.name,
            LABEL_RUNNER_CLASS: g.runner_class}


def gitlab_hpa(g: GitLabRunner) -> dict[str, Any]:
    """The document's HPA: min replicas (never below 1), CPU and memory
    utilization, the scale-down stabilization window."""
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": g.cpu_target_percent}}}]
    if g.memory_target_percent is not None:
        metrics.append({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": g.memory_target_percent}}})
    name = gitlab_release(g)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": g.namespace, "labels": gitlab_labels(g)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(1, g.min_replicas),
            "maxReplicas": g.max_replicas,
            "metrics": metrics,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": g.scale_down_stabilization_s}},
        },
    }


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for these values
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _toml_table(lines: list[str], header: str, table: dict[str, Any], indent: str) -> None:
    lines.append(f"{indent}{header}")
    inner = indent + "  "
    for k, v in table.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict)):
            lines.append(f"{inner}{json.dumps(k) if '.' in k or '/' in k else k} = {_toml_value(v)}")


def _toml(runner: dict[str, Any]) -> str:
    """``[[runners]]`` with its nested tables (dicts) and arrays of tables
    (lists of dicts): the shapes ``runners.config`` uses."""
    lines: list[str] = []

    def walk(path: str, table: dict[str, Any], indent: str, array: bool) -> None:
        _toml_table(lines, f"[[{path}]]" if array else f"[{path}]", table, indent)
        for k, v in table.items():
            if isinstance(v, dict):
                walk(f"{path}.{k}", v, indent + "  ", False)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    walk(f"{path}.{k}", item, indent + "  ", True)

    walk("runners", runner, "", True)
    return "\n".join(lines) + "\n"


def runner_config(topo: Topology, g: GitLabRunner) -> str:
    """The chart's ``runners.config``: the Kubernetes executor for the class,
    job pods in the runner's namespace, on its node, under its labels."""
    ex = g.executor
    if ex is None:
        raise ValueError(f"GitLab runner {g.name}: its runner class {g.runner_class} names no executor")
    placement = _placement_spec(g.placement)
    env = [*(DIND_ENVIRONMENT if ex.services and ex.privileged else ()), *ex.environment]
    kube: dict[str, Any] = {
        "namespace": g.namespace,
        "image": ex.job_image,
        "privileged": ex.privileged,
        "pull_policy": ["if-not-present"],
        # Jobs do not call the API: only the manager's account has a Role.
        "automount_service_account_token": False,
        "node_selector": placement.get("nodeSelector", {}),
        "node_tolerations": {(f"{t.key}={t.value}" if t.operator == "Equal" else t.key): t.effect or ""
                             for t in g.placement.tolerations},
        "pod_labels": gitlab_labels(g, JOB),
    }
    if not kube["node_tolerations"]:
        del kube["node_tolerations"]
    if ex.services:
        kube["services"] = [{"name": s, "alias": "docker" if ex.privileged else s.rsplit("/", 1)[-1].split(":")[0]}
                            for s in ex.services]
    runner: dict[str, Any] = {"name": gitlab_release(g), "executor": "kubernetes"}
    if env:
        runner["environment"] = [f"{k}={v}" for k, v in env]
    runner["kubernetes"] = kube
    return _toml(runner)


def _image(ref: str) -> dict[str, str]:
    """The chart's ``image:`` (registry, image, tag) from a reference."""
    name, _, tag = ref.rpartition(":")
    registry, _, image = name.partition("/")
    return {"registry": registry, "image": image, "tag": tag}


def gitlab_values(topo: Topology, name: str, gitlab_url: str = GITLAB_URL_PLACEHOLDER) -> dict[str, Any]:
    """Values for the real gitlab-runner chart (release :func:`gitlab_release`,
    namespace the runner's).  The runner token lives in the Secret
    ``<release>-token`` (keys ``runner-token``, ``runner-registration-token``),
    which the operator creates: no token in values."""
    g = gitlab_runner(topo, name)
    release = gitlab_release(g)
    return {
        "image": _image(g.image),
        "imagePullPolicy": "IfNotPresent",
        "gitlabUrl": gitlab_url,
        # The always-on minimum until the HPA has metrics (the chart drops
        # `replicas` only when its own `hpa:` is set).
        "replicas": g.min_replicas,
        "rbac": {"create": True, "rules": [dict(r) for r in EXECUTOR_RULES]},
        "serviceAccount": {"create": True, "name": release},
        # The manager calls the API (the executor creates job pods): its own
        # account's token, nothing else's.
        "automountServiceAccountToken": True,
        "podSecurityContext": {"runAsUser": g.run_as_user, "runAsNonRoot": True, "fsGroup": g.fs_group,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
                            "runAsNonRoot": True, "privileged": False, "capabilities": {"drop": ["ALL"]}},
        "resources": container_resources(g.envelope, "runner"),
        **_placement_spec(g.placement),
        "podLabels": gitlab_labels(g),
        "runners": {
            "name": release,
            "executor": "kubernetes",
            "tags": ",".join(g.tags),
            "secret": f"{release}-token",
            "config": runner_config(topo, g),
        },
        "extraObjects": [gitlab_hpa(g)],
    }


def gitlab_deployments(topo: Topology) -> list[dict[str, Any]]:
    """The placement view: per GitLab runner the ServiceAccount, Deployment
    and HPA the chart creates from :func:`gitlab_values` (the chart's own
    ``app`` label beside ours; its entrypoint, probes and ConfigMap left out:
    the scheduler does not read them)."""
    out: list[dict[str, Any]] = []
    for g in topo.gitlab_runners:
        v = gitlab_values(topo, g.name)
        release = gitlab_release(g)
        labels = {"app": release, **v["podLabels"]}
        spec: dict[str, Any] = {
            "automountServiceAccountToken": v["automountServiceAccountToken"],
            "securityContext": v["podSecurityContext"],
            "serviceAccountName": v["serviceAccount"]["name"],
            **{k: v[k] for k in ("nodeSelector", "affinity", "tolerations") if k in v},
            "containers": [{
                "name": "runner",
                "image": "{registry}/{image}:{tag}".format(**v["image"]),
                "env": [{"name": "RUNNER_TAG_LIST", "value": v["runners"]["tags"]}],
                "resources": v["resources"],
                "securityContext": v["securityContext"],
            }],
        }
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": v["serviceAccount"]["name"], "namespace": g.namespace}})
        out.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": release, "namespace": g.namespace, "labels": labels},
            "spec": {"replicas": v["replicas"], "selector": {"matchLabels": {"app": release}},
                     "template": {"metadata": {"labels": labels}, "spec": spec}},
        })
        out += v["extraObjects"]
    return out
