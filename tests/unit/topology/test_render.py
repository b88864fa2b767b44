from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from flywheel_runtime.topology import load, render

from .k8s_schema import validate

SCALE_SETS = [s.name for s in load().scale_sets]


@pytest.mark.parametrize("name", SCALE_SETS)
def test_every_rendered_pod_is_a_valid_v1_pod(topo, name) -> None:
    pod = render.pod(topo, name)
    validate(pod)
    spec = pod["spec"]
    ss = topo.scale_set(name)
    runner = spec["containers"][0]
    assert runner["name"] == "runner" and runner["command"] == ["/home/runner/run.sh"]
    assert spec["priorityClassName"] == "arc-runner"
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": ss.node}
    env = {e["name"]: e.get("value") for e in runner["env"]}
    assert env["RUNNER_ALLOW_RUNASROOT"] == "1" and env["FLYWHEEL_SCALE_SET"] == name
    assert runner["securityContext"] == {"runAsUser": 0, "allowPrivilegeEscalation": False}
    assert pod["metadata"]["labels"]["flywheel.tinyland.dev/runner-class"] == ss.label


def test_sting_lanes_tolerate_the_compute_expansion_taint(topo) -> None:
    for ss in topo.scale_sets:
        tol = render.pod(topo, ss.name)["spec"].get("tolerations", [])
        if ss.node == "sting":
            assert tol == [{"key": "dedicated.tinyland.dev/compute-expansion", "operator": "Equal",
                            "value": "true", "effect": "NoSchedule"}]
        else:
            assert tol == []


def test_compute_expansion_nix_seeds_into_generic_ephemeral_claims(topo) -> None:
    spec = render.pod(topo, "tinyland-nix-compute-expansion")["spec"]
    (init,) = spec["initContainers"]
    assert init["name"] == "seed-nix"
    assert init["command"] == ["flywheel-runtime"]
    assert init["args"] == ["seed-nix", "--source", "/nix", "--target", "/seed/nix",
                            "--chown-work", "/home/runner/_work", "--work-owner", "1001:1001"]
    assert init["securityContext"]["runAsUser"] == 0
    claims = {v["name"]: v["ephemeral"]["volumeClaimTemplate"]["spec"] for v in spec["volumes"]}
    assert {k: (c["storageClassName"], c["resources"]["requests"]["storage"]) for k, c in claims.items()} == {
        "nix": ("local-path-sting-fast-ephemeral", "64Gi"),
        "work": ("local-path-sting-fast-ephemeral", "32Gi"),
        "cache": ("local-path-sting-fast-ephemeral", "32Gi"),
    }
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/nix", "/home/runner/_work", "/home/runner/.cache"}


def test_dind_lanes_carry_the_daemon_sidecar(topo) -> None:
    spec = render.pod(topo, "tinyland-dind")["spec"]
    runner, dind = spec["containers"]
    assert dind["name"] == "dind"
    assert runner["resources"]["requests"]["ephemeral-storage"] == "4Gi"
    assert dind["resources"] == {"requests": {"ephemeral-storage": "24Gi"}, "limits": {"ephemeral-storage": "40Gi"}}
    ce = render.pod(topo, "tinyland-dind-compute-expansion")["spec"]
    dind_mounts = {m["mountPath"] for m in ce["containers"][1]["volumeMounts"]}
    assert "/var/lib/docker" in dind_mounts


def test_device_lanes_pass_host_devices_through(topo) -> None:
    kvm = render.pod(topo, "tinyland-nix-kvm")["spec"]
    assert {"name": "dev-kvm", "hostPath": {"path": "/dev/kvm", "type": "CharDevice"}} in kvm["volumes"]
    gpu = render.pod(topo, "tinyland-nix-gpu")["spec"]
    assert {"name": "dev-dri", "hostPath": {"path": "/dev/dri", "type": "Directory"}} in gpu["volumes"]


@pytest.mark.parametrize("name", SCALE_SETS)
def test_helm_values(topo, name) -> None:
    values = render.helm_values(topo, name)
    ss = topo.scale_set(name)
    assert values["runnerScaleSetName"] == name
    assert (values["minRunners"], values["maxRunners"]) == (ss.min_runners, ss.max_runners)
    assert values["githubConfigSecret"] == f"arc-github-app-{ss.overlay}"
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": values["template"]["metadata"],
              "spec": values["template"]["spec"]})


def test_node_objects_carry_real_allocatable(topo) -> None:
    nodes = {n["metadata"]["name"]: n for n in render.node_objects(topo)}
    for n in nodes.values():
        validate(n)
    assert nodes["honey"]["status"]["allocatable"] == {
        "cpu": "32", "memory": "236019190334", "ephemeral-storage": "1486702929511", "pods": "110"}
    assert nodes["sting"]["spec"]["taints"] == [
        {"key": "dedicated.tinyland.dev/compute-expansion", "value": "true", "effect": "NoSchedule"}]
    assert nodes["bumble"]["spec"]["unschedulable"] is True
    assert nodes["honey"]["metadata"]["labels"]["capability.tinyland.dev/kvm"] == "true"
    assert "capability.tinyland.dev/kvm" not in nodes["bumble"]["metadata"]["labels"]


def test_kind_config_structure(topo) -> None:
    cfg = render.kind_config(topo)
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
    roles = [(n["role"], n["labels"]["flywheel.tinyland.dev/node"]) for n in cfg["nodes"]]
    assert roles == [("control-plane", "honey"), ("worker", "sting"), ("worker", "bumble")]
    patches = {n["labels"]["flywheel.tinyland.dev/node"]: yaml.safe_load(n["kubeadmConfigPatches"][0])
               for n in cfg["nodes"]}
    assert patches["honey"]["kind"] == "InitConfiguration"
    assert patches["sting"]["kind"] == "JoinConfiguration"
    extra = patches["sting"]["nodeRegistration"]["kubeletExtraArgs"]
    assert extra["register-with-taints"] == "dedicated.tinyland.dev/compute-expansion=true:NoSchedule"
    assert extra["max-pods"] == "110"
    assert patches["sting"]["nodeRegistration"]["name"] == "sting"
    assert "register-with-taints" not in patches["honey"]["nodeRegistration"]["kubeletExtraArgs"]


def test_cluster_objects_are_valid(topo) -> None:
    objs = render.cluster_objects(topo)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("CronJob") == 3  # two warm-pool schedules + cleanup
    for o in objs:
        validate(o)
    cleanup = render.cleanup_cronjob(topo)
    assert cleanup["spec"]["schedule"] == "*/5 * * * *" and cleanup["spec"]["concurrencyPolicy"] == "Forbid"
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_render_cli_pod_yaml_round_trips(topo) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "pod", "tinyland-docker"],
                         capture_output=True, text=True, check=True)
    assert yaml.safe_load(out.stdout) == render.pod(topo, "tinyland-docker")


def test_render_cli_missing_scale_set_is_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "pod"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "needs a SCALE_SET" in out.stderr
