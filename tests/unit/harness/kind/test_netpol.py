"""kind/netpol.py: the NetworkPolicy engine's account and DaemonSet."""

from __future__ import annotations

from flywheel_runtime import toolchain
from flywheel_runtime.harness.kind import netpol


def _by_kind() -> dict[str, dict]:
    return {o["kind"]: o for o in netpol.manifests()}


def test_engine_runs_on_every_node_on_the_host_network() -> None:
    ds = _by_kind()["DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["tolerations"] == [{"operator": "Exists"}]
    (c,) = spec["containers"]
    assert c["image"] == netpol.IMAGE and c["imagePullPolicy"] == "Never"  # loaded, never pulled
    assert toolchain.NETWORK_POLICIES_VERSION in netpol.IMAGE
    assert c["securityContext"]["privileged"] is True and "NET_ADMIN" in c["securityContext"]["capabilities"]["add"]
    args = c["args"]
    assert "--hostname-override=$(NODE_NAME)" in args and "--disable-nri" in args
    assert f"--nfqueue-id={netpol.QUEUE_ID}" in args and "--netfilter-bug-1766-fix=false" in args
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    assert spec["serviceAccountName"] == netpol.NAME


def test_engine_account_only_reads_what_policies_select_on() -> None:
    objs = _by_kind()
    rules = objs["ClusterRole"]["rules"]
    assert all(r["verbs"] == ["list", "watch"] for r in rules)
    assert {(g, res) for r in rules for g in r["apiGroups"] for res in r["resources"]} == {
        ("", "pods"), ("", "namespaces"), ("", "nodes"), ("networking.k8s.io", "networkpolicies")}
    assert objs["ClusterRoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": netpol.NAME, "namespace": netpol.NAMESPACE}]
