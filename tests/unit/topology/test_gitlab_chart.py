"""The real gitlab-runner chart (0.86.0) with ``topology render gitlab-values``:
``helm template`` creates exactly the objects the topology means for docker,
dind and nix.  helm is the toolchain's (built from the module proxy on first
use); the chart is ``../shared/gitlab-runner/gitlab-runner-0.86.0`` beside the
repository root (skipped only where that tree is absent)."""

from __future__ import annotations

import os
import tomllib
from typing import Any

import pytest

from flywheel_runtime.harness import gitlab as chart
from flywheel_runtime.topology import load, render

pytestmark = pytest.mark.skipif(not os.environ.get(chart.ENV_VAR) and not (chart.SHARED_CHART / "Chart.yaml").is_file(),
                                reason="no gitlab-runner chart beside the repository (../shared/gitlab-runner)")

NAMES = [g.name for g in load().gitlab_runners]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    topo = load()
    return {g.name: chart.template(render.gitlab_release(g), g.namespace, render.gitlab_values(topo, g.name),
                                   topo.kubernetes_version) for g in topo.gitlab_runners}


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [d for d in docs if d["kind"] == kind]
    return obj


def test_the_topology_names_the_three_document_runners() -> None:
    assert NAMES == ["docker", "dind", "nix"]


@pytest.mark.parametrize("name", NAMES)
def test_the_chart_creates_exactly_these_objects(rendered, name) -> None:
    # No Secret: the token is the operator's (`<release>-token`), not in values.
    assert sorted(d["kind"] for d in rendered[name]) == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Role", "RoleBinding", "ServiceAccount"]
    release = f"gitlab-runner-{name}"
    assert {d["metadata"]["name"] for d in rendered[name]} == {release}
    assert {d["metadata"]["namespace"] for d in rendered[name]} == {"gitlab-runners"}


@pytest.mark.parametrize("name", NAMES)
def test_the_runner_manager_deployment_is_placed_enveloped_and_hardened(topo, rendered, name) -> None:
    g = next(g for g in topo.gitlab_runners if g.name == name)
    dep = _one(rendered[name], "Deployment")
    assert dep["spec"]["replicas"] == g.min_replicas == 1
    spec = dep["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "honey"}
    assert "tolerations" not in spec and "affinity" not in spec
    assert spec["serviceAccountName"] == f"gitlab-runner-{name}"
    assert spec["automountServiceAccountToken"] is True  # the executor calls the API with its own account
    assert spec["securityContext"] == {"runAsUser": 100, "runAsNonRoot": True, "fsGroup": 65533,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = spec["containers"]
    assert c["image"] == topo.images["gitlab-runner"]
    # requests are what CPU and memory utilization targets are percentages of
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                              "limits": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "8Gi"}}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
                                    "runAsNonRoot": True, "privileged": False, "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RUNNER_TAG_LIST"] == name and env["RUNNER_EXECUTOR"] == "kubernetes"
    assert env["CI_SERVER_URL"] == render.GITLAB_URL_PLACEHOLDER
    secret = next(v for v in spec["volumes"] if v["name"] == "projected-secrets")
    assert secret["projected"]["sources"][0]["secret"]["name"] == f"gitlab-runner-{name}-token"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[render.LABEL_GITLAB_RUNNER] == name and labels[render.LABEL_RUNNER_CLASS] == name


@pytest.mark.parametrize("name", NAMES)
def test_the_placement_view_is_what_the_chart_creates(topo, rendered, name) -> None:
    """The harness places ``render.gitlab_deployments``: the chart's pod, as the scheduler reads it."""
    view = next(d for d in render.gitlab_deployments(topo)
                if d["kind"] == "Deployment" and d["metadata"]["name"] == f"gitlab-runner-{name}")
    dep = _one(rendered[name], "Deployment")
    assert view["spec"]["replicas"] == dep["spec"]["replicas"]
    assert view["spec"]["selector"] == dep["spec"]["selector"]
    ours, theirs = view["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]
    for key in ("nodeSelector", "securityContext", "serviceAccountName", "automountServiceAccountToken"):
        assert ours[key] == theirs[key], key
    for key in ("image", "resources", "securityContext"):
        assert ours["containers"][0][key] == theirs["containers"][0][key], key
    assert view["spec"]["template"]["metadata"]["labels"].items() <= dep["spec"]["template"]["metadata"][
        "labels"].items()
    hpa = next(d for d in render.gitlab_deployments(topo)
               if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == f"gitlab-runner-{name}")
    assert hpa == _one(rendered[name], "HorizontalPodAutoscaler")


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = _one(docs, "ConfigMap")
    return tomllib.loads(cm["data"]["config.template.toml"])


@pytest.mark.parametrize("name", NAMES)
def test_the_runner_config_is_the_kubernetes_executor_beside_the_manager(rendered, name) -> None:
    (runner,) = _config(rendered[name])["runners"]
    assert runner["executor"] == "kubernetes" and runner["name"] == f"gitlab-runner-{name}"
    kube = runner["kubernetes"]
    assert kube["namespace"] == "gitlab-runners"
    assert kube["node_selector"] == {"kubernetes.io/hostname": "honey"}
    assert kube["automount_service_account_token"] is False
    assert kube["pod_labels"][render.LABEL_GITLAB_RUNNER] == name
    # the register script hands the template to `gitlab-runner register`
    assert "--template-config /configmaps/config.template.toml" in _one(rendered[name], "ConfigMap")["data"][
        "register-the-runner"]


def test_docker_runs_jobs_in_the_docker_image_unprivileged(topo, rendered) -> None:
    (runner,) = _config(rendered["docker"])["runners"]
    assert runner["kubernetes"]["image"] == topo.images["docker"]
    assert runner["kubernetes"]["privileged"] is False
    assert "services" not in runner["kubernetes"] and "environment" not in runner


def test_dind_runs_its_privileged_daemon_as_a_service(topo, rendered) -> None:
    (runner,) = _config(rendered["dind"])["runners"]
    kube = runner["kubernetes"]
    assert kube["image"] == topo.images["dind"] and kube["privileged"] is True
    assert kube["services"] == [{"name": topo.images["dind-daemon"], "alias": "docker"}]
    assert runner["environment"] == ["DOCKER_HOST=tcp://localhost:2375", "DOCKER_TLS_CERTDIR="]


def test_nix_jobs_carry_the_attic_hints(topo, rendered) -> None:
    (runner,) = _config(rendered["nix"])["runners"]
    assert runner["kubernetes"]["image"] == topo.images["nix"] and runner["kubernetes"]["privileged"] is False
    env = dict(e.split("=", 1) for e in runner["environment"])
    nix = next(g for g in topo.gitlab_runners if g.name == "nix")
    assert nix.executor is not None and env == dict(nix.executor.environment)
    assert env["ATTIC_SERVER"] == "http://attic.nix-cache.svc.cluster.local:8080" and env["ATTIC_CACHE"] == "main"
    assert "extra-substituters" in env["NIX_CONFIG"]


@pytest.mark.parametrize("name", NAMES)
def test_the_role_grants_explicit_rules_only(rendered, name) -> None:
    role = _one(rendered[name], "Role")
    assert role["rules"] == [dict(r) for r in render.EXECUTOR_RULES]
    for r in role["rules"]:
        assert "*" not in r["resources"] and "*" not in r["verbs"] and r["apiGroups"] == [""]
    binding = _one(rendered[name], "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": f"gitlab-runner-{name}"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"gitlab-runner-{name}",
                                    "namespace": "gitlab-runners"}]


@pytest.mark.parametrize("name", NAMES)
def test_the_hpa_scales_on_cpu_and_memory_from_one_with_the_window(rendered, name) -> None:
    hpa = _one(rendered[name], "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"gitlab-runner-{name}"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                       "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization",
                                                                          "averageUtilization": 80}}},
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }


def test_the_chart_hpa_key_stays_unset(topo) -> None:
    """The chart's own `hpa:` has no behavior: a second HPA would fight ours."""
    for g in topo.gitlab_runners:
        assert "hpa" not in render.gitlab_values(topo, g.name)
