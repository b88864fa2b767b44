"""The cluster's nodes are the topology's, on either backend; on kind, the
host-side guarantees and the pod network hold on real kubelets."""

from __future__ import annotations

import subprocess
import uuid

import pytest

pytestmark = pytest.mark.e2e


def test_nodes_carry_the_topologys_names_labels_taints_and_pod_slots(flywheel_cluster) -> None:
    c = flywheel_cluster
    live = {n.metadata.name: n for n in c.kube.core.list_node().items}
    assert set(live) == {n.name for n in c.topology.nodes}
    for node in c.topology.nodes:
        n = live[node.name]
        assert n.metadata.labels["kubernetes.io/hostname"] == node.name
        for k, v in node.labels.items():
            assert n.metadata.labels.get(k) == v, (node.name, k)
        taints = {(t.key, t.value, t.effect) for t in n.spec.taints or [] if t.key.startswith("dedicated.")}
        assert taints == {(t.key, t.value, t.effect) for t in node.taints}, node.name
        assert bool(n.spec.unschedulable) == (not node.schedulable), node.name
        assert int(n.status.allocatable["pods"]) == node.allocatable.pods, node.name
        ready = [cond.status for cond in n.status.conditions if cond.type == "Ready"]
        assert ready == ["True"], node.name


def test_real_arc_crds_are_installed(flywheel_cluster) -> None:
    c = flywheel_cluster
    names = {crd.metadata.name for crd in c.kube.ext.list_custom_resource_definition().items}
    assert {"autoscalingrunnersets.actions.github.com", "ephemeralrunners.actions.github.com",
            "ephemeralrunnersets.actions.github.com", "autoscalinglisteners.actions.github.com"} <= names
    ars = c.kube.ext.read_custom_resource_definition("autoscalingrunnersets.actions.github.com")
    # ARC's own schema is the 1.2 MB one; the hand-written fallback is a small subset
    schema = ars.spec.versions[0].schema.open_apiv3_schema
    assert "template" in schema.properties["spec"].properties


# -- kind only: what real kubelets in containers on this host must get right ------------

def _kind(c) -> None:
    if c.backend != "kind":
        pytest.skip("kind backend: the sim has no node containers, kubelets or pod network")


def test_the_egress_guard_is_in_place_and_checked_without_sending_anything(flywheel_cluster) -> None:
    from flywheel_runtime.harness.kind import engine

    _kind(flywheel_cluster)
    assert engine.guard_present()
    for fam in (4, 6):
        tool = "iptables" if fam == 4 else "ip6tables"
        rules = subprocess.run([tool, "-S"], capture_output=True, text=True, check=True).stdout
        assert f"-i {engine.BRIDGE_NAME} ! -o {engine.BRIDGE_NAME}" in rules and "-j REJECT" in rules, tool


def test_honey_node_has_this_machines_kvm(flywheel_cluster) -> None:
    import os

    _kind(flywheel_cluster)
    if not os.path.exists("/dev/kvm"):
        pytest.skip("this machine has no /dev/kvm")
    impl = flywheel_cluster._impl
    out = subprocess.run(["docker", "exec", f"{impl.name}-control-plane", "stat", "-c", "%t:%T %F", "/dev/kvm"],
                         env=impl._env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "a:e8 character special file"  # 10:232, the host's kvm


def test_pods_on_sting_reach_cluster_dns_and_the_api_across_nodes(flywheel_cluster) -> None:
    """A pod on sting resolves the API service through CoreDNS (on another node:
    sting is tainted) and reaches the API server through kube-proxy's VIP: pod
    routes between nodes, DNS and services all work without kindnetd."""
    from flywheel_runtime.harness.kind import nodeimage

    c = flywheel_cluster
    _kind(c)
    dns_nodes = {p.spec.node_name for p in c.kube.core.list_namespaced_pod(
        "kube-system", label_selector="k8s-app=kube-dns").items}
    assert "sting" not in dns_nodes
    sting = c.topology.node("sting")
    with c.namespace("net") as ns:
        name = f"probe-{uuid.uuid4().hex[:6]}"
        c.kube.core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": "sting"},
                "tolerations": [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
                                for t in sting.taints],
                "containers": [{"name": "probe", "image": nodeimage.LPP_HELPER_IMAGE,
                                "command": ["curl", "-sS", "-k", "--max-time", "20",
                                            "https://kubernetes.default.svc.cluster.local/livez"]}],
            }})
        pod = c.kube.wait_phase(ns, name, "Succeeded", timeout=90)
        assert pod.phase == "Succeeded"
        assert c.kube.core.read_namespaced_pod_log(name, ns).strip() == "ok"
