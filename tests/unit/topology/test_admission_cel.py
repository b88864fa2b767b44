"""The rendered admission policies as kube-apiserver evaluates them (its own
CEL compiler and validator, offline through ``celcheck``): who may name a
device class, and what the warm-pool accounts may change."""

from __future__ import annotations

import copy
import shutil
from typing import Any

import pytest

from flywheel_runtime.topology import render

from . import cel_policy

POD = {"Group": "", "Version": "v1", "Kind": "Pod", "Resource": "pods"}
ARS = {"Group": "actions.github.com", "Version": "v1alpha1", "Kind": "AutoscalingRunnerSet",
       "Resource": "autoscalingrunnersets"}


@pytest.fixture(scope="module")
def binary() -> Any:
    if shutil.which("go") is None:
        pytest.fail("Go is missing: celcheck is built from the Go module proxy (./dev setup installs Go)")
    return cel_policy.ensure()


def _pod_case(name: str, pod: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    ns = namespace or pod["metadata"]["namespace"]
    pod["metadata"]["namespace"] = ns
    return {"name": name, "operation": "CREATE", "namespace": ns, "objectName": pod["metadata"]["name"],
            "resource": POD, "user": "system:serviceaccount:arc-systems:arc-gha-rs-controller", "object": pod}


def test_device_classes_admit_only_their_lanes(binary, topo) -> None:
    policy, _ = render.device_admission(topo)
    kvm = render.arc_created_pod(topo, "tinyland-nix-kvm", "tinyland-nix-kvm-abc")
    gpu = render.arc_created_pod(topo, "tinyland-nix-gpu", "tinyland-nix-gpu-abc")
    nix = render.arc_created_pod(topo, "tinyland-nix", "tinyland-nix-abc")
    assert kvm["spec"]["runtimeClassName"] == "flywheel-kvm" and "runtimeClassName" not in nix["spec"]
    nix_with_kvm = copy.deepcopy(nix)
    nix_with_kvm["spec"]["runtimeClassName"] = "flywheel-kvm"
    kvm_default_sa = copy.deepcopy(kvm)
    del kvm_default_sa["spec"]["serviceAccountName"]
    kvm_relabelled = copy.deepcopy(kvm)
    kvm_relabelled["metadata"]["labels"][render.LABEL_SCALE_SET] = "tinyland-nix"
    kvm_unlabelled = copy.deepcopy(kvm)
    del kvm_unlabelled["metadata"]["labels"]
    gpu_as_kvm = copy.deepcopy(gpu)
    gpu_as_kvm["spec"]["runtimeClassName"] = "flywheel-kvm"
    other_class = copy.deepcopy(nix)
    other_class["spec"]["runtimeClassName"] = "gvisor"
    from flywheel_runtime.canary.jobs import job_manifest

    job = job_manifest(topo, "kvm")
    tmpl = job["spec"]["template"]
    canary = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flywheel-canary-kvm-x",
                                                               "namespace": job["metadata"]["namespace"],
                                                               "labels": tmpl["metadata"]["labels"]},
              "spec": tmpl["spec"]}
    cases = [
        _pod_case("kvm lane", kvm), _pod_case("gpu lane", gpu), _pod_case("plain lane", nix),
        _pod_case("kvm pod in another namespace", kvm, "default"),
        _pod_case("kvm class from the nix lane", nix_with_kvm),
        _pod_case("kvm pod under the default account", kvm_default_sa),
        _pod_case("kvm pod labelled as another lane", kvm_relabelled),
        _pod_case("kvm pod without labels", kvm_unlabelled),
        _pod_case("gpu lane naming kvm", gpu_as_kvm),
        _pod_case("a non-device class", other_class),
        _pod_case("the kvm canary Job's pod", canary),
        _pod_case("the kvm canary Job's pod elsewhere", canary, "flywheel-e2e"),
    ]
    got = cel_policy.evaluate(binary, policy, cases)
    assert all(not r["errors"] for r in got.values()), got
    assert {n for n, r in got.items() if not r["denied"]} == {"kvm lane", "gpu lane", "plain lane",
                                                              "a non-device class", "the kvm canary Job's pod"}
    (msg,) = got["kvm pod in another namespace"]["messages"]
    assert msg.startswith("RuntimeClass flywheel-kvm hands out host devices") and "arc-runners/tinyland-nix-kvm" in msg


def _ars_case(name: str, old: dict[str, Any], new: dict[str, Any] | None, *, user: str,
              operation: str = "UPDATE") -> dict[str, Any]:
    o = new or old
    return {"name": name, "operation": operation, "namespace": o["metadata"]["namespace"],
            "objectName": o["metadata"]["name"], "resource": ARS, "user": user, "object": new,
            "oldObject": old if operation != "CREATE" else None}


def test_warm_pool_accounts_change_only_min_runners(binary, topo) -> None:
    policy, _ = render.warm_pool_admission(topo)
    (job, *_) = render.warm_pool_cronjobs(topo)
    sa = f"system:serviceaccount:arc-runners:{job['metadata']['name']}"
    old = render.autoscaling_runner_set(topo, "tinyland-nix")
    old["spec"]["minRunners"] = 0

    def changed(edit) -> dict[str, Any]:
        new = copy.deepcopy(old)
        edit(new)
        return new

    up = changed(lambda o: o["spec"].update(minRunners=1))
    privileged = changed(lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
        privileged=True))
    docker = render.autoscaling_runner_set(topo, "tinyland-docker")
    cases = [
        _ars_case("minRunners 0 -> 1", old, up, user=sa),
        _ars_case("minRunners 1 -> 0", up, old, user=sa),
        _ars_case("nothing changed", old, copy.deepcopy(old), user=sa),
        _ars_case("minRunners 0 -> 5", old, changed(lambda o: o["spec"].update(minRunners=5)), user=sa),
        _ars_case("maxRunners too", old, changed(lambda o: o["spec"].update(minRunners=1, maxRunners=99)), user=sa),
        _ars_case("the pod template", old, privileged, user=sa),
        _ars_case("a spec field added", old, changed(lambda o: o["spec"].update(runnerGroup="x")), user=sa),
        _ars_case("a spec field removed", old, changed(lambda o: o["spec"].pop("listenerTemplate")), user=sa),
        _ars_case("a label", old, changed(lambda o: o["metadata"]["labels"].update(x="y")), user=sa),
        _ars_case("another set", docker, {**docker, "spec": {**docker["spec"], "minRunners": 1}}, user=sa),
        _ars_case("delete", old, None, user=sa, operation="DELETE"),
        _ars_case("create", old, old, user=sa, operation="CREATE"),
        _ars_case("the template, by the managed apply", old, privileged, user="system:serviceaccount:x:operator"),
    ]
    got = cel_policy.evaluate(binary, policy, cases)
    assert all(not r["errors"] for r in got.values()), got
    assert {n for n, r in got.items() if not r["denied"]} == {
        "minRunners 0 -> 1", "minRunners 1 -> 0", "nothing changed", "the template, by the managed apply"}
    assert got["the pod template"]["messages"] == ["the warm-pool account may change nothing in spec but minRunners"]
