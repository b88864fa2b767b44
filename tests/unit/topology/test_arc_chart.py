"""The rendered values and pods held against real ARC 0.14.0 data (../shared/arc):
the scale-set chart's documented values, what the chart renders for dind mode,
and runner pods as the real controller created them from this project's values."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime.harness.arc import SHARED_CRDS
from flywheel_runtime.topology import render

ARC_DATA = SHARED_CRDS.parent
pytestmark = pytest.mark.skipif(not ARC_DATA.is_dir(), reason="../shared/arc data not present")
SCALE_SETS = ["tinyland-nix", "tinyland-nix-compute-expansion", "tinyland-docker", "tinyland-dind",
              "tinyland-dind-compute-expansion", "tinyland-nix-operator", "tinyland-nix-heavy", "jess-nix-heavy",
              "tinyland-nix-kvm", "tinyland-nix-gpu"]


def documented_keys(text: str) -> set[str]:
    """Top-level keys of the chart's values.yaml, set or documented as commented-out examples."""
    return set(re.findall(r"^(?:# ?)?([a-zA-Z][a-zA-Z0-9]*):", text, flags=re.MULTILINE))


def test_documented_keys_parse_the_chart_values() -> None:
    keys = documented_keys((ARC_DATA / "chart-values.yaml").read_text())
    assert {"githubConfigUrl", "githubConfigSecret", "controllerServiceAccount", "listenerTemplate", "template",
            "containerMode", "minRunners", "maxRunners", "scaleSetLabels", "runnerScaleSetName"} <= keys
    assert "listenerTemplates" not in keys and "controllerServiceAccounts" not in keys


@pytest.mark.parametrize("name", SCALE_SETS)
def test_helm_values_use_only_the_chart_keys(topo, name) -> None:
    keys = documented_keys((ARC_DATA / "chart-values.yaml").read_text())
    values = render.helm_values(topo, name)
    assert set(values) <= keys, sorted(set(values) - keys)
    # The two keys `helm template` needs offline, shaped as the chart documents them.
    assert set(values["controllerServiceAccount"]) == {"namespace", "name"}
    assert set(values["listenerTemplate"]) == {"spec"}
    assert set(values["template"]) == {"metadata", "spec"}


def _chart_dind_spec() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ARC_DATA / "rendered" / "dind-mode.k8s-1.36.3.yaml").read_text()))
    ars = next(d for d in docs if d and d["kind"] == "AutoscalingRunnerSet")
    return ars["spec"]["template"]["spec"]


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


@pytest.mark.parametrize("name", ["tinyland-dind", "tinyland-dind-compute-expansion"])
def test_dind_lanes_hold_the_charts_dind_layout(topo, name) -> None:
    chart = _chart_dind_spec()
    ours = render.pod(topo, name)["spec"]
    # Native sidecar at 1.36: the externals copy, then dind as an init container with restartPolicy Always.
    assert [c["name"] for c in ours["initContainers"]] == [c["name"] for c in chart["initContainers"]]
    c_ext, c_dind = chart["initContainers"]
    o_ext, o_dind = ours["initContainers"]
    for key in ("command", "args", "volumeMounts"):
        assert o_ext[key] == c_ext[key], key
    for key in ("args", "env", "securityContext", "restartPolicy", "startupProbe"):
        assert o_dind[key] == c_dind[key], key
    assert o_dind["env"] == [{"name": "DOCKER_GROUP_GID", "value": "123"}]
    # The daemon mounts what the chart's does (the overflow lane adds its /var/lib/docker claim).
    chart_mounts = c_dind["volumeMounts"]
    extra = [m for m in o_dind["volumeMounts"] if m not in chart_mounts]
    assert [m for m in o_dind["volumeMounts"] if m in chart_mounts] == chart_mounts
    assert extra == ([] if name == "tinyland-dind" else [{"name": "docker", "mountPath": "/var/lib/docker"}])
    (c_runner,) = chart["containers"]
    (o_runner,) = ours["containers"]
    o_env = [e for e in o_runner["env"] if e["name"] in {e["name"] for e in c_runner["env"]}]
    assert o_env == c_runner["env"]  # DOCKER_HOST, RUNNER_WAIT_FOR_DOCKER_IN_SECONDS=120
    assert o_runner["volumeMounts"] == c_runner["volumeMounts"]
    # Volumes: the chart's three; the overflow lane's work is its fast-local claim, not an emptyDir.
    o_vols, c_vols = _by_name(ours["volumes"]), _by_name(chart["volumes"])
    assert set(c_vols) <= set(o_vols)
    for v in ("dind-sock", "dind-externals"):
        assert o_vols[v] == c_vols[v]
    assert ("emptyDir" in o_vols["work"]) == (name == "tinyland-dind")


# What the API server, its admission plugins and the scheduler add to a created
# pod: none of it is ARC's or the project's to render.
SERVER_POD_FIELDS = ("dnsPolicy", "enableServiceLinks", "nodeName", "preemptionPolicy", "priority", "schedulerName",
                     "serviceAccount", "terminationGracePeriodSeconds")
SERVER_CONTAINER_FIELDS = ("imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy")
# Opaque hashes and counters ARC computes.
ARC_OPAQUE_LABELS = ("pod-template-hash",)
ARC_OPAQUE_ANNOTATIONS = ("actions.github.com/patch-id", "actions.github.com/runner-spec-hash")


def without_server_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    meta, spec = pod["metadata"], pod["spec"]
    for k in ARC_OPAQUE_LABELS:
        meta["labels"].pop(k, None)
    for k in ARC_OPAQUE_ANNOTATIONS:
        meta["annotations"].pop(k, None)
    for ref in meta.get("ownerReferences", []):
        ref.pop("uid", None)
    for k in SERVER_POD_FIELDS:
        spec.pop(k, None)
    if spec.get("securityContext") == {}:
        spec.pop("securityContext")
    spec["tolerations"] = [t for t in spec.get("tolerations", [])
                           if t["key"] not in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    if not spec["tolerations"]:
        spec.pop("tolerations")
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kube-api-access-")]
    for v in spec["volumes"]:
        if "ephemeral" in v:
            v["ephemeral"]["volumeClaimTemplate"]["spec"].pop("volumeMode", None)
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for k in SERVER_CONTAINER_FIELDS:
            c.pop(k, None)
        c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if not m["name"].startswith("kube-api-access-")]
        for e in c.get("env", []):
            (e.get("valueFrom") or {}).get("fieldRef", {}).pop("apiVersion", None)
    return pod


def _created(name: str) -> dict[str, Any]:
    text = (ARC_DATA / "rendered" / f"arc-created-pod.{name}.yaml").read_text()
    return yaml.safe_load(text)


def before_hardening(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` less the hardening added after the real controller's pods were
    recorded (issue 21: no token, seccomp, capabilities dropped); ARC copies the
    template's spec verbatim, so the rest must still match."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec.pop("automountServiceAccountToken")
    spec.pop("securityContext")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        ctx = c.get("securityContext", {})
        ctx.pop("capabilities", None)
        ctx.pop("runAsNonRoot", None)
        ctx.pop("readOnlyRootFilesystem", None)
    return pod


def test_nix_overflow_pod_matches_what_the_real_controller_created(topo) -> None:
    real = without_server_defaults(_created("tinyland-nix-compute-expansion"))
    ours = render.arc_created_pod(topo, "tinyland-nix-compute-expansion", real["metadata"]["name"])
    assert before_hardening(ours) == real


def test_arc_additions_are_exactly_the_difference(topo) -> None:
    real = without_server_defaults(_created("tinyland-nix-compute-expansion"))
    plain = render.pod(topo, "tinyland-nix-compute-expansion")
    add = render.arc_additions(topo, "tinyland-nix-compute-expansion", real["metadata"]["name"])
    real_env = real["spec"]["containers"][0]["env"]
    assert real_env[len(plain["spec"]["containers"][0]["env"]):] == add["env"]
    assert real["spec"]["serviceAccountName"] == add["serviceAccountName"] not in str(plain)
    assert real["metadata"]["ownerReferences"] == [add["ownerReference"]]


def test_dind_pod_matches_the_real_controller_outside_the_dind_layout(topo) -> None:
    """The ARC-created DinD pod came from the values before the chart's dind
    layout and the daemon's envelope; everything else must still match."""
    real = without_server_defaults(_created("tinyland-dind"))
    ours = render.arc_created_pod(topo, "tinyland-dind", real["metadata"]["name"])
    layout_env = {"RUNNER_WAIT_FOR_DOCKER_IN_SECONDS"}

    def outside_layout(pod: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(pod)
        spec = pod["spec"]
        spec["containers"] = [c for c in spec["containers"] if c["name"] == "runner"]
        spec.pop("initContainers", None)
        spec.pop("volumes")
        runner = spec["containers"][0]
        runner.pop("volumeMounts")
        runner["env"] = [e for e in runner["env"] if e["name"] not in layout_env]
        return pod

    assert outside_layout(before_hardening(ours)) == outside_layout(real)
    # ... and the layout differs from the old one exactly where the chart's does.
    old_dind = next(c for c in real["spec"]["containers"] if c["name"] == "dind")
    new_dind = next(c for c in ours["spec"]["initContainers"] if c["name"] == "dind")
    assert old_dind["env"] == [{"name": "DOCKER_GROUP_GID", "value": "1001"}]
    assert new_dind["env"] == [{"name": "DOCKER_GROUP_GID", "value": "123"}]
    assert "cpu" not in old_dind["resources"]["requests"] and new_dind["resources"]["requests"]["cpu"] == "500m"


@pytest.mark.parametrize("name", SCALE_SETS)
def test_autoscaling_runner_sets_carry_the_charts_shape(topo, name) -> None:
    ars = render.autoscaling_runner_set(topo, name)
    chart = next(d for d in yaml.safe_load_all((ARC_DATA / "rendered" / "dind-mode.k8s-1.36.3.yaml").read_text())
                 if d and d["kind"] == "AutoscalingRunnerSet")
    assert set(chart["metadata"]["labels"]) <= set(ars["metadata"]["labels"])
    assert ars["metadata"]["labels"]["app.kubernetes.io/version"] == "0.14.0"
    assert ars["spec"]["template"]["spec"]["serviceAccountName"] == f"{name}-gha-rs-no-permission"
    assert ars["spec"]["template"]["spec"]["restartPolicy"] == chart["spec"]["template"]["spec"]["restartPolicy"]
    assert Path(ARC_DATA / "crds").is_dir()
