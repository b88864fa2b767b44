"""The data that drives the simulation: KWOK stages and the minimal provisioner."""

from __future__ import annotations

import yaml
from kubernetes import client

from flywheel_runtime.kube import JOB_RESULT_ANNOTATION, START_DELAY_ANNOTATION
from flywheel_runtime.harness.sim.provisioner import PROVISIONED_BY, _pv_for
from flywheel_runtime.harness.sim import STAGES


def test_stages_cover_node_and_pod_lifecycle() -> None:
    docs = [d for d in yaml.safe_load_all(STAGES.read_text()) if d]
    assert {d["kind"] for d in docs} == {"Stage"}
    names = [d["metadata"]["name"] for d in docs]
    assert len(names) == len(set(names))
    by_kind: dict[str, list[str]] = {}
    for d in docs:
        by_kind.setdefault(d["spec"]["resourceRef"]["kind"], []).append(d["metadata"]["name"])
    assert len(by_kind["Node"]) == 2 and len(by_kind["Pod"]) == 3
    text = STAGES.read_text()
    # The annotations tests and benchmarks set are the ones the stages read.
    assert START_DELAY_ANNOTATION in text and JOB_RESULT_ANNOTATION in text


def test_provisioned_pv_is_pinned_to_the_selected_node_and_claims_the_pvc() -> None:
    pvc = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="runner-x-nix", namespace="arc-runners", uid="1234"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="local-path-sting-fast-ephemeral",
            resources=client.V1VolumeResourceRequirements(requests={"storage": "64Gi"})),
    )
    pv = _pv_for(pvc, "sting", "rancher.io/local-path", "Delete")
    assert pv["metadata"]["name"] == "pvc-1234"
    assert pv["metadata"]["annotations"][PROVISIONED_BY] == "rancher.io/local-path"
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "64Gi"} and spec["storageClassName"] == "local-path-sting-fast-ephemeral"
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "arc-runners",
                                "name": "runner-x-nix", "uid": "1234"}
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["sting"]}
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
