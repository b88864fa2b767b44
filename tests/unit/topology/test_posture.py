"""Least privilege as rendered: device admission, the warm pool's admission,
hardened pods, NetworkPolicies (their data from the topology)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Any

import pytest
import yaml

from flywheel_runtime.topology import devices, render

from .conftest import scale_set
from .k8s_schema import validate


def _by(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_device_classes_schedule_only_onto_their_handler(topo) -> None:
    classes = _by(devices.runtime_classes(topo), "RuntimeClass")
    assert {n: c["scheduling"] for n, c in classes.items()} == {
        "flywheel-kvm": {"nodeSelector": {"capability.tinyland.dev/kvm": "true"}},
        "flywheel-dri": {"nodeSelector": {"capability.tinyland.dev/dri": "true"}}}
    for c in classes.values():
        validate(c)


def test_dri_hands_out_render_nodes_unless_the_class_asks_for_cards(variant) -> None:
    dri = devices.load()["dri"]
    assert [d.path for d in dri.devices] == ["/dev/dri/renderD128"]
    cards = dri.with_cards()
    assert cards.runtime_class == "flywheel-dri-cards"
    assert [d.path for d in cards.devices] == ["/dev/dri/renderD128", "/dev/dri/card0"]
    assert devices.lane_class(frozenset({"kvm"}), cards=True).runtime_class == "flywheel-kvm"  # kvm has no cards
    topo = variant(lambda d: d["runner_classes"]["tinyland-nix-gpu"].update(dri_cards=True))
    assert render.pod(topo, "tinyland-nix-gpu")["spec"]["runtimeClassName"] == "flywheel-dri-cards"
    assert [c["metadata"]["name"] for c in devices.runtime_classes(topo)] == ["flywheel-kvm", "flywheel-dri-cards"]
    spec = devices.base_spec({}, cards)
    assert [d["path"] for d in spec["linux"]["devices"]] == ["/dev/dri/renderD128", "/dev/dri/card0"]


def test_device_admission_allows_only_the_declaring_lanes(topo) -> None:
    policy, binding = render.device_admission(topo)
    validate(policy)
    validate(binding)
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert render.device_lanes(topo) == {
        "flywheel-kvm": [{"namespace": "arc-runners", "serviceAccount": "tinyland-nix-kvm-gha-rs-no-permission",
                          "scaleSet": "tinyland-nix-kvm"}],
        "flywheel-dri": [{"namespace": "arc-runners", "serviceAccount": "tinyland-nix-gpu-gha-rs-no-permission",
                          "scaleSet": "tinyland-nix-gpu"}]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    assert spec["matchConditions"][0]["expression"].endswith('in ["flywheel-kvm", "flywheel-dri"]')
    # the lanes' table is the CEL literal of device_lanes: namespace, ARC's account, scale-set label
    lanes = next(v["expression"] for v in spec["variables"] if v["name"] == "lanes")
    assert lanes == render.cel(render.device_lanes(topo)) + "[object.spec.runtimeClassName]"
    (rule,) = spec["validations"]
    assert "l.namespace == request.namespace" in rule["expression"]
    assert "l.serviceAccount == variables.serviceAccount" in rule["expression"]
    assert "l.scaleSet == variables.scaleSet" in rule["expression"]
    # the ARC-created pod of the kvm lane carries exactly what the table names
    pod = render.arc_created_pod(topo, "tinyland-nix-kvm", "tinyland-nix-kvm-runner-x")
    assert (pod["metadata"]["namespace"], pod["spec"]["serviceAccountName"],
            pod["metadata"]["labels"][render.LABEL_SCALE_SET]) == (
        "arc-runners", "tinyland-nix-kvm-gha-rs-no-permission", "tinyland-nix-kvm")


def test_no_device_lane_no_device_policy(variant) -> None:
    def drop(d):
        for c in d["runner_classes"].values():
            c.pop("devices", None)
    topo = variant(drop)
    assert render.device_admission(topo) == [] and devices.runtime_classes(topo) == []


def test_cel_literals() -> None:
    assert render.cel({"a": [1, "x\"y"], "b": True}) == '{"a": [1, "x\\"y"], "b": true}'
    with pytest.raises(TypeError):
        render.cel(1.5)


def test_warm_pool_admission_names_its_accounts_and_values(topo) -> None:
    policy, binding = render.warm_pool_admission(topo)
    validate(policy)
    validate(binding)
    spec = policy["spec"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == (["actions.github.com"],
                                                      ["autoscalingrunnersets", "autoscalingrunnersets/*"])
    accounts = [f"system:serviceaccount:arc-runners:{cj['metadata']['name']}" for cj in render.warm_pool_cronjobs(topo)]
    assert spec["matchConditions"][0]["expression"] == f"request.userInfo.username in {render.cel(accounts)}"
    allowed = next(v["expression"] for v in spec["variables"] if v["name"] == "allowed")
    assert allowed == '{"arc-runners/tinyland-nix": [0, 1]}'  # the schedules' 1 and 0, and the set's own 0
    exprs = [v["expression"] for v in spec["validations"]]
    assert exprs[0] == "request.operation == 'UPDATE'"
    assert "k == 'minRunners'" in exprs[2] and "oldObject.spec.all(" in exprs[2] and "object.spec.all(" in exprs[2]


def test_pods_are_hardened(topo) -> None:
    for ss in topo.scale_sets:
        spec = render.pod(topo, ss.name)["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c.get("resources", {}).get("requests") and c["resources"].get("limits"), (ss.name, c["name"])
            ctx = c["securityContext"]
            if c["name"] == "dind":  # the design's privileged daemon
                assert ctx == {"privileged": True}
                continue
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]
            added = set(ctx["capabilities"].get("add", []))
            if c["name"] == "runner":
                assert ctx["runAsUser"] == ss.run_as_user == 0
                assert added == set(topo.runner_pod.root_capabilities)
            elif c["name"] == "seed-nix":
                assert ctx["runAsUser"] == 0 and added == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}
                assert ctx["readOnlyRootFilesystem"] is True  # it writes only to its volumes
            else:
                assert c["name"] == "init-dind-externals" and not added
                assert ctx["runAsUser"] == 1001 and ctx["runAsNonRoot"] is True
                assert ctx["readOnlyRootFilesystem"] is True


def test_a_lane_run_as_non_root_keeps_no_capability(variant) -> None:
    topo = variant(lambda d: scale_set(d, "tinyland-docker").update(run_as_user=1001))
    ctx = render.pod(topo, "tinyland-docker")["spec"]["containers"][0]["securityContext"]
    assert ctx == {"runAsUser": 1001, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                   "capabilities": {"drop": ["ALL"]}}


def test_utility_jobs_and_gitlab_runners_are_hardened(topo) -> None:
    for cj in [render.cleanup_cronjob(topo), *render.warm_pool_cronjobs(topo)]:
        validate(cj)
        assert cj["spec"]["startingDeadlineSeconds"] > 0
        pod = cj["spec"]["jobTemplate"]["spec"]["template"]
        assert pod["metadata"]["labels"] == {render.LABEL_UTILITY_JOB: cj["metadata"]["name"]}
        assert pod["spec"]["serviceAccountName"] == cj["metadata"]["name"]
        assert pod["spec"]["securityContext"] == {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": True,
                                                  "seccompProfile": {"type": "RuntimeDefault"}}
        (c,) = pod["spec"]["containers"]
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        assert c["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                                  "limits": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "256Mi"}}
    objs = render.gitlab_deployments(topo)
    # Each runner manager its own account: the Kubernetes executor creates job
    # pods with it (the chart's Role, explicit rules: test_gitlab_chart.py).
    assert [sa["metadata"] for sa in _by(objs, "ServiceAccount").values()] == [
        {"name": f"gitlab-runner-{n}", "namespace": "gitlab-runners"} for n in ("docker", "dind", "nix")]
    for d in _by(objs, "Deployment").values():
        spec = d["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == d["metadata"]["name"] and spec["automountServiceAccountToken"] is True
        assert spec["securityContext"] == {"runAsUser": 100, "runAsNonRoot": True, "fsGroup": 65533,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        assert spec["containers"][0]["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "runAsNonRoot": True,
            "privileged": False, "capabilities": {"drop": ["ALL"]}}


def _policy(objs: list[dict[str, Any]], ns: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["metadata"]["namespace"] == ns and o["metadata"]["name"] == name)


def test_network_policies_are_valid_and_deny_by_default(topo) -> None:
    objs = render.network_policies(topo)
    for o in objs:
        validate(o)
    names = sorted((o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs)
    assert names == [
        ("arc-runners", "default-deny"), ("arc-runners", "runners"), ("arc-runners", "runners-api-server"),
        ("arc-runners", "utility-jobs"), ("gitlab-runners", "default-deny"),
        ("gitlab-runners", "runner-managers-api-server"), ("gitlab-runners", "runners"), ("nix-cache", "attic"),
        ("nix-cache", "bazel-remote-cache"), ("nix-cache", "cnpg-postgresql"), ("nix-cache", "rustfs")]
    for ns in ("arc-runners", "gitlab-runners"):
        assert _policy(objs, ns, "default-deny")["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                                            "ingress": [], "egress": []}


def test_runners_reach_dns_the_caches_and_the_outside_only(topo) -> None:
    objs = render.network_policies(topo)
    for ns in ("arc-runners", "gitlab-runners"):
        spec = _policy(objs, ns, "runners")["spec"]
        assert spec["policyTypes"] == ["Egress"]
        dns, attic, bazel, outside = spec["egress"]
        assert dns == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        assert attic["to"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "attic"}}
        assert attic["ports"] == [{"protocol": "TCP", "port": 8080}]
        assert bazel["ports"] == [{"protocol": "TCP", "port": 9092}]
        v4, v6 = (b["ipBlock"] for b in outside["to"])
        assert v4["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in v4["except"] and "192.168.0.0/16" in v4["except"]
        assert v6 == {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}
    # RKE2's pod and service ranges (and so CNPG and RustFS pods) are never "outside"
    blocks = render.outside_blocks(topo)
    for addr in ("10.42.3.7", "10.43.0.10", "192.168.1.20"):
        ip = ipaddress.ip_address(addr)
        assert any(ip in ipaddress.ip_network(e) for b in blocks for e in b["ipBlock"].get("except", []))


def test_api_server_only_for_the_lanes_that_need_it(topo) -> None:
    objs = render.network_policies(topo)
    api = _policy(objs, "arc-runners", "runners-api-server")["spec"]
    assert api["podSelector"] == {"matchExpressions": [{"key": "flywheel.tinyland.dev/runner-class", "operator": "In",
                                                        "values": ["tinyland-nix-heavy", "tinyland-nix-operator"]}]}
    assert api["egress"][0]["ports"] == [{"protocol": "TCP", "port": 6443}]
    # the runners' own policy names no API server port
    runners = _policy(objs, "arc-runners", "runners")["spec"]
    assert all(p.get("port") != 6443 for rule in runners["egress"] for p in rule.get("ports", []))
    jobs = _policy(objs, "arc-runners", "utility-jobs")["spec"]
    assert jobs["podSelector"] == {"matchExpressions": [{"key": render.LABEL_UTILITY_JOB, "operator": "Exists"}]}
    assert [r.get("ports") for r in jobs["egress"]][1] == [{"protocol": "TCP", "port": 6443}]
    # GitLab: the runner managers (their Kubernetes executor creates job pods), not the jobs
    managers = _policy(objs, "gitlab-runners", "runner-managers-api-server")["spec"]
    assert managers["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "runner-manager"},
                                       "matchExpressions": [{"key": render.LABEL_GITLAB_RUNNER, "operator": "Exists"}]}
    assert managers["egress"][0]["ports"] == [{"protocol": "TCP", "port": 6443}]
    for g in topo.gitlab_runners:
        v = render.gitlab_values(topo, g.name)
        assert v["podLabels"]["app.kubernetes.io/component"] == "runner-manager"
        assert 'app.kubernetes.io/component" = "job"' in v["runners"]["config"]


def test_cnpg_and_rustfs_only_from_the_cache_services(topo) -> None:
    objs = render.network_policies(topo)
    cnpg = _policy(objs, "nix-cache", "cnpg-postgresql")["spec"]
    assert cnpg["policyTypes"] == ["Ingress"] and cnpg["podSelector"] == {
        "matchLabels": {"cnpg.io/cluster": "attic-postgresql"}}
    (rule,) = cnpg["ingress"]
    assert [p.get("podSelector", {}).get("matchLabels") for p in rule["from"]] == [
        {"app.kubernetes.io/name": "attic"}, {"cnpg.io/cluster": "attic-postgresql"}, None]
    assert rule["from"][2] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
    (rule,) = _policy(objs, "nix-cache", "rustfs")["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"] for p in rule["from"]] == [
        {"app.kubernetes.io/name": "attic"}, {"app.kubernetes.io/name": "bazel-remote"}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    # Attic and the Bazel cache take every runner pod, ARC's and GitLab's
    (rule,) = _policy(objs, "nix-cache", "attic")["spec"]["ingress"]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in rule["from"]] == [
        "arc-runners", "gitlab-runners"]


def test_cache_services_come_from_the_topology(variant) -> None:
    topo = variant(lambda d: d["services"]["attic"].update(ports=[{"port": 8081}]))
    (rule,) = _policy(render.network_policies(topo), "nix-cache", "attic")["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8081}]
    with pytest.raises(Exception, match="services.rustfs.clients\\[0\\]: expected runners or one of the services"):
        variant(lambda d: d["services"]["rustfs"].update(clients=["nobody"]))
    with pytest.raises(Exception, match="network.internal_cidrs\\[0\\]: expected a CIDR"):
        variant(lambda d: d["network"].update(internal_cidrs=["10.0.0.1/8"]))


def test_kind_network_override(topo) -> None:
    kind = topo.with_network(api_server_cidrs=("172.18.0.2/32",))
    api = _policy(render.network_policies(kind), "arc-runners", "runners-api-server")["spec"]
    assert api["egress"][0]["to"] == [{"ipBlock": {"cidr": "172.18.0.2/32"}}]


def test_cluster_render_carries_the_posture(topo) -> None:
    kinds = [o["kind"] for o in render.cluster_objects(topo)]
    assert kinds.count("ValidatingAdmissionPolicy") == 2 and kinds.count("ValidatingAdmissionPolicyBinding") == 2
    assert kinds.count("NetworkPolicy") == 11
    # policies after the classes they guard, before what they govern
    assert kinds.index("RuntimeClass") < kinds.index("ValidatingAdmissionPolicy") < kinds.index("CronJob")
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "posture"],
                         capture_output=True, text=True, check=True).stdout
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs].count("NetworkPolicy") == 11
    assert {d["kind"] for d in docs} == {"RuntimeClass", "ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding", "ServiceAccount", "Role", "RoleBinding",
                                         "NetworkPolicy"}
