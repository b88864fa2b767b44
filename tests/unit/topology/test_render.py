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
    assert runner["name"] == "runner" and runner["command"] == ["flywheel-runtime", "entrypoint", "--", "/home/runner/run.sh"]
    assert spec["priorityClassName"] == "arc-runner"
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": ss.node}
    env = {e["name"]: e.get("value") for e in runner["env"]}
    assert env["RUNNER_ALLOW_RUNASROOT"] == "1" and env["FLYWHEEL_SCALE_SET"] == name
    # uid 0 as the design says, but only the root capabilities the topology names, and no token
    assert runner["securityContext"] == {"runAsUser": 0, "allowPrivilegeEscalation": False, "capabilities": {
        "drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]}}
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
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
                            "--chown-work", "/home/runner/_work"]
    seed_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert seed_mounts == {"/seed/nix": "nix", "/home/runner/_work": "work"}
    assert init["securityContext"]["runAsUser"] == 0
    claims = {v["name"]: v["ephemeral"]["volumeClaimTemplate"]["spec"] for v in spec["volumes"]}
    assert {k: (c["storageClassName"], c["resources"]["requests"]["storage"]) for k, c in claims.items()} == {
        "nix": ("local-path-sting-fast-ephemeral", "64Gi"),
        "work": ("local-path-sting-fast-ephemeral", "32Gi"),
        "cache": ("local-path-sting-fast-ephemeral", "32Gi"),
    }
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/nix", "/home/runner/_work", "/home/runner/.cache"}


def test_dind_lanes_carry_the_daemon_with_its_envelope(topo) -> None:
    spec = render.pod(topo, "tinyland-dind")["spec"]
    (runner,) = spec["containers"]
    externals, dind = spec["initContainers"]
    assert (externals["name"], dind["name"], dind["restartPolicy"]) == ("init-dind-externals", "dind", "Always")
    assert runner["resources"]["requests"]["ephemeral-storage"] == "4Gi"
    assert dind["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "24Gi"},
                                 "limits": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "40Gi"}}
    ce = render.pod(topo, "tinyland-dind-compute-expansion")["spec"]
    ce_dind = ce["initContainers"][1]
    assert {m["mountPath"]: m["name"] for m in ce_dind["volumeMounts"]} == {
        "/home/runner/_work": "work", "/var/lib/docker": "docker", "/var/run": "dind-sock",
        "/home/runner/externals": "dind-externals"}
    # The work claim is shared by runner and daemon on the overflow lane.
    assert {"name": "work", "mountPath": "/home/runner/_work"} in ce["containers"][0]["volumeMounts"]
    work = next(v for v in ce["volumes"] if v["name"] == "work")
    assert work["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "local-path-sting-fast-ephemeral"


def test_dind_before_native_sidecars_is_a_plain_container(variant) -> None:
    spec = render.pod(variant(lambda d: d.update(kubernetes_version="1.28.9")), "tinyland-dind")["spec"]
    assert [c["name"] for c in spec["containers"]] == ["runner", "dind"]
    assert [c["name"] for c in spec["initContainers"]] == ["init-dind-externals"]
    assert "restartPolicy" not in spec["containers"][1]


def test_seed_nix_passes_a_non_default_work_owner(variant) -> None:
    topo = variant(lambda d: d["runner_pod"].update(work_owner="2000:2000"))
    (init,) = render.pod(topo, "tinyland-nix-compute-expansion")["spec"]["initContainers"]
    assert init["args"][-2:] == ["--work-owner", "2000:2000"]


def test_only_seeding_lanes_have_the_init_container(topo) -> None:
    def init(name: str) -> list[str]:
        return [c["name"] for c in render.pod(topo, name)["spec"].get("initContainers", [])]

    with_init = {s.name: init(s.name) for s in topo.scale_sets if init(s.name)}
    assert with_init == {"tinyland-nix-compute-expansion": ["seed-nix"],
                         "tinyland-dind": ["init-dind-externals", "dind"],
                         "tinyland-dind-compute-expansion": ["init-dind-externals", "dind"]}


def test_pod_env_carries_identity_and_nix_hints(topo) -> None:
    runner = render.pod(topo, "tinyland-nix-heavy")["spec"]["containers"][0]
    env = {e["name"]: e for e in runner["env"]}
    assert env["FLYWHEEL_NODE_NAME"] == {"name": "FLYWHEEL_NODE_NAME",
                                         "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert env["FLYWHEEL_RUNNER_CLASS"]["value"] == "tinyland-nix-heavy"
    assert {"NIX_CONFIG", "ATTIC_SERVER", "ATTIC_CACHE", "BAZEL_REMOTE_CACHE"} <= set(env)
    assert env["ACTIONS_RUNNER_HOOK_JOB_STARTED"]["value"].startswith("/")
    docker_env = {e["name"] for e in render.pod(topo, "tinyland-docker")["spec"]["containers"][0]["env"]}
    assert not docker_env & {"NIX_CONFIG", "ATTIC_SERVER", "ATTIC_CACHE", "BAZEL_REMOTE_CACHE"}


def test_affinity_is_rendered_and_valid(variant) -> None:
    def aim(d):
        s = next(s for s in d["scale_sets"] if s["name"] == "tinyland-nix-kvm")
        del s["node"]
        s["affinity"] = [{"match_expressions": [
            {"key": "capability.tinyland.dev/kvm", "operator": "In", "values": ["true"]},
            {"key": "kubernetes.io/hostname", "operator": "DoesNotExist"}]}]

    pod = render.pod(variant(aim), "tinyland-nix-kvm")
    validate(pod)
    assert "nodeSelector" not in pod["spec"]
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "capability.tinyland.dev/kvm", "operator": "In", "values": ["true"]},
            {"key": "kubernetes.io/hostname", "operator": "DoesNotExist"}]}]}


def test_device_lanes_get_their_devices_through_a_runtime_class(topo) -> None:
    # A hostPath device is EPERM under runc's device cgroup; privileged would hand over every device.
    for name, rc in (("tinyland-nix-kvm", "flywheel-kvm"), ("tinyland-nix-gpu", "flywheel-dri")):
        spec = render.pod(topo, name)["spec"]
        assert spec["runtimeClassName"] == rc
        assert not any("hostPath" in v for v in spec.get("volumes", []))
        runner = spec["containers"][0]
        assert "privileged" not in runner["securityContext"]
    assert "runtimeClassName" not in render.pod(topo, "tinyland-nix")["spec"]
    classes = {o["metadata"]["name"]: o for o in render.cluster_objects(topo) if o["kind"] == "RuntimeClass"}
    assert {k: v["handler"] for k, v in classes.items()} == {"flywheel-kvm": "flywheel-kvm",
                                                             "flywheel-dri": "flywheel-dri"}


@pytest.mark.parametrize("name", SCALE_SETS)
def test_helm_values(topo, name) -> None:
    values = render.helm_values(topo, name)
    ss = topo.scale_set(name)
    assert values["runnerScaleSetName"] == name
    assert (values["minRunners"], values["maxRunners"]) == (ss.min_runners, ss.max_runners)
    assert values["githubConfigSecret"] == f"arc-github-app-{ss.overlay}"
    assert values["scaleSetLabels"] == list(ss.labels)
    assert values["template"]["spec"] == render.pod(topo, name)["spec"]
    assert values["controllerServiceAccount"] == {"namespace": "arc-systems", "name": "arc-gha-rs-controller"}
    lt = values["listenerTemplate"]["spec"]
    assert lt["containers"][0]["name"] == "listener"  # ARC merges only a container of that name
    assert lt["nodeSelector"] == {"kubernetes.io/hostname": "sting" if name == "tinyland-docker" else "honey"}
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": values["template"]["metadata"],
              "spec": values["template"]["spec"]})


def test_helm_values_github_url_is_overridable(topo) -> None:
    assert render.helm_values(topo, "jess-nix-heavy")["githubConfigUrl"] == "https://github.com/Jesssullivan"
    assert render.helm_values(topo, "jess-nix-heavy", github_config_url="https://github.com/acme")[
        "githubConfigUrl"] == "https://github.com/acme"
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "helm-values",
                          "tinyland-nix", "--github-config-url", "https://github.com/example"],
                         capture_output=True, text=True, check=True)
    assert yaml.safe_load(out.stdout)["githubConfigUrl"] == "https://github.com/example"


@pytest.mark.parametrize("name", SCALE_SETS)
def test_autoscaling_runner_set_matches_the_crd(topo, name) -> None:
    ars = render.autoscaling_runner_set(topo, name)
    validate(ars)  # the CRD's schema + pruning, and the template as a v1 Pod
    assert ars["spec"]["runnerScaleSetLabels"] == list(topo.scale_set(name).labels)


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
    assert patches["sting"]["nodeRegistration"]["taints"] == [
        {"key": "dedicated.tinyland.dev/compute-expansion", "value": "true", "effect": "NoSchedule"}]
    assert patches["sting"]["nodeRegistration"]["name"] == "sting"
    # honey carries runner payloads: kubeadm's control-plane taint is switched off.
    assert patches["honey"]["nodeRegistration"]["taints"] == []
    # max-pods is appended to kubeadm's v1beta4 list, never a map that would replace kind's own args.
    for n in cfg["nodes"]:
        (p6902,) = n["kubeadmConfigPatchesJSON6902"]
        assert (p6902["group"], p6902["version"]) == ("kubeadm.k8s.io", "v1beta4")
        assert yaml.safe_load(p6902["patch"]) == [{"op": "add", "path": "/nodeRegistration/kubeletExtraArgs/-",
                                                   "value": {"name": "max-pods", "value": "110"}}]
        assert "kubeletExtraArgs" not in yaml.safe_load(n["kubeadmConfigPatches"][0])["nodeRegistration"]
    assert {k: n["labels"] for k, n in zip(patches, cfg["nodes"])} == {
        "honey": {"flywheel.tinyland.dev/node": "honey", "capability.tinyland.dev/kvm": "true",
                  "capability.tinyland.dev/dri": "true"},
        "sting": {"flywheel.tinyland.dev/node": "sting", "capability.tinyland.dev/kvm": "true"},
        "bumble": {"flywheel.tinyland.dev/node": "bumble"}}


def test_cluster_objects_are_valid(topo) -> None:
    objs = render.cluster_objects(topo)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("CronJob") == 3  # two warm-pool schedules + cleanup
    for o in objs:
        validate(o)
    assert [o["metadata"]["name"] for o in render.namespaces(topo)] == [
        "arc-systems", "arc-runners", "gitlab-runners", "nix-cache"]
    (pc,) = render.priority_classes(topo)
    assert (pc["metadata"]["name"], pc["value"], pc["globalDefault"]) == ("arc-runner", -50, False)
    (sc,) = render.storage_classes(topo)
    assert (sc["provisioner"], sc["volumeBindingMode"], sc["reclaimPolicy"]) == (
        "rancher.io/local-path", "WaitForFirstConsumer", "Delete")
    assert sc["allowedTopologies"] == [{"matchLabelExpressions": [
        {"key": "kubernetes.io/hostname", "values": ["sting"]}]}]
    warm = render.warm_pool_cronjobs(topo)
    assert [(c["spec"]["schedule"], c["spec"]["timeZone"]) for c in warm] == [
        ("0 13 * * 1-5", "Etc/UTC"), ("0 1 * * *", "Etc/UTC")]
    for c in warm:
        job = c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert job["command"] == ["flywheel-runtime"]
        assert job["args"][:2] == ["warm-pool", "reconcile"] and "tinyland-nix" in job["args"]
    deps = [o for o in render.gitlab_deployments(topo) if o["kind"] == "Deployment"]
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in deps] == [
        ("gitlab-runner-docker", 1), ("gitlab-runner-dind", 1), ("gitlab-runner-nix", 1)]
    for d in deps:
        pod_spec = d["spec"]["template"]["spec"]
        assert pod_spec["nodeSelector"] == {"kubernetes.io/hostname": "honey"}
        assert pod_spec["containers"][0]["image"] == topo.images["gitlab-runner"]
    cleanup = render.cleanup_cronjob(topo)
    assert cleanup["spec"]["schedule"] == "*/5 * * * *" and cleanup["spec"]["concurrencyPolicy"] == "Forbid"
    args = cleanup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["cleanup", "runner-pods"]
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_render_cli_pod_yaml_round_trips(topo) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "pod", "tinyland-docker"],
                         capture_output=True, text=True, check=True)
    assert yaml.safe_load(out.stdout) == render.pod(topo, "tinyland-docker")
    # It says plainly what ARC adds.
    head = [line for line in out.stdout.splitlines() if line.startswith("#")]
    assert head[0] == "# ARC adds at creation (not rendered here):"
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG" in head[1] and "tinyland-docker-gha-rs-no-permission" in head[2]
    assert "ownerReference to its EphemeralRunner" in head[3]


@pytest.mark.parametrize("target,count", [
    ("kind-config", 1), ("nodes", 3), ("gitlab", 9), ("warm-pool", 2), ("cleanup", 1), ("storage", 1), ("rbac", 9),
    ("admission", 4), ("network-policy", 11), ("posture", 26)])
def test_render_cli_targets_print_yaml(target, count) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", target],
                         capture_output=True, text=True, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    assert len(docs) == count
    for d in docs:
        if d.get("kind") != "Cluster":  # kind's config is not a Kubernetes API object
            validate(d)


def test_render_cli_all_is_every_manifest(topo) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "all"],
                         capture_output=True, text=True, check=True)
    docs = list(yaml.safe_load_all(out.stdout))
    assert docs == (render.cluster_objects(topo) + render.autoscaling_runner_sets(topo)
                    + [render.pod(topo, s.name) for s in topo.scale_sets])
    assert sum(d["kind"] == "AutoscalingRunnerSet" for d in docs) == len(topo.scale_sets)


def test_render_cli_missing_scale_set_is_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "pod"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "needs a SCALE_SET" in out.stderr


def test_controller_values_place_the_controller_on_honey_with_metrics_on_8080(topo) -> None:
    v = render.controller_values(topo)
    assert (v["replicaCount"], v["fullnameOverride"]) == (1, "arc-gha-rs-controller")
    assert v["nodeSelector"] == {"kubernetes.io/hostname": "honey"} and v["tolerations"] == []
    assert v["metrics"] == {"controllerManagerAddr": ":8080", "listenerAddr": ":8080", "listenerEndpoint": "/metrics"}
    assert v["image"] == {"repository": "ghcr.io/actions/gha-runner-scale-set-controller", "tag": "0.14.0"}
    # The scale-set chart binds its manager role to exactly this account.
    sa = render.helm_values(topo, "tinyland-nix")["controllerServiceAccount"]
    assert (sa["name"], sa["namespace"]) == (v["serviceAccount"]["name"], topo.arc.namespace)


def test_listener_and_controller_pods_carry_their_placement(topo) -> None:
    pods = {s.name: render.listener_pod(topo, s.name) for s in topo.scale_sets}
    for name, p in pods.items():
        validate(p)
        assert p["metadata"]["namespace"] == "arc-systems"
        assert p["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "sting" if name == "tinyland-docker"
                                             else "honey"}
        assert p["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert pods["tinyland-docker"]["spec"]["tolerations"] == [
        {"key": "dedicated.tinyland.dev/compute-expansion", "operator": "Equal", "value": "true",
         "effect": "NoSchedule"}]
    ctl = render.controller_pod(topo)
    validate(ctl)
    assert ctl["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "name": "metrics"}]


@pytest.mark.parametrize("target,kinds", [
    ("controller-values", None), ("scale-sets", {"AutoscalingRunnerSet"}), ("listeners", {"Pod"})])
def test_render_cli_arc_targets(topo, target, kinds) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", target],
                         capture_output=True, text=True, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    if kinds is None:
        assert docs == [render.controller_values(topo)]
    else:
        assert {d["kind"] for d in docs} == kinds and len(docs) == len(topo.scale_sets)
        for d in docs:
            validate(d)


def test_render_gitlab_values_names_a_runner() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "gitlab-values", "nix",
                          "--gitlab-url", "https://gitlab.tinyland.dev"], capture_output=True, text=True, check=True)
    (values,) = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    assert values["gitlabUrl"] == "https://gitlab.tinyland.dev" and values["runners"]["tags"] == "nix"
    bad = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "gitlab-values"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("(one of: docker, dind, nix)")
    bad = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "gitlab-values", "gpu"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no GitLab runner 'gpu'" in bad.stderr
