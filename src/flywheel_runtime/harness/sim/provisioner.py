"""A minimal volume provisioner for the sim cluster.

No real provisioner (local-path or CSI) can run without kubelets, so the sim
backend runs this one instead: for each PVC of a topology StorageClass that the
scheduler has assigned a node (``volume.kubernetes.io/selected-node``) it
creates a PV pinned to that node with a claimRef; the controller-manager's PV
controller then binds the pair, exactly as with local-path.  Nothing is
written to disk: it only makes the scheduler's WaitForFirstConsumer flow
complete.  Runs as its own process, started and stopped by the harness.
"""

from __future__ import annotations

import argparse
import sys
import time

SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def _pv_for(pvc: object, node: str, provisioner: str, reclaim: str) -> dict:
    meta = pvc.metadata  # type: ignore[attr-defined]
    spec = pvc.spec  # type: ignore[attr-defined]
    name = f"pvc-{meta.uid}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: provisioner},
                     "labels": {"flywheel.tinyland.dev/sim-provisioned": "true"}},
        "spec": {
            "capacity": {"storage": spec.resources.requests["storage"]},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": spec.storage_class_name,
            "volumeMode": spec.volume_mode or "Filesystem",
            "hostPath": {"path": f"/var/lib/flywheel-sim/{name}", "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta.namespace,
                         "name": meta.name, "uid": meta.uid},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }


def run(kubeconfig: str, interval: float = 0.25) -> None:
    from kubernetes.client.rest import ApiException

    from flywheel_runtime.kube import connect

    kube = connect(kubeconfig, check=False)
    core, storage = kube.core, kube.storage
    while True:
        try:
            classes = {sc.metadata.name: sc for sc in storage.list_storage_class().items}
            existing = {pv.metadata.name for pv in core.list_persistent_volume().items}
            for pvc in core.list_persistent_volume_claim_for_all_namespaces().items:
                sc = classes.get(pvc.spec.storage_class_name or "")
                node = (pvc.metadata.annotations or {}).get(SELECTED_NODE)
                if sc is None or node is None or pvc.spec.volume_name or pvc.status.phase != "Pending":
                    continue
                if f"pvc-{pvc.metadata.uid}" in existing:
                    continue
                try:
                    core.create_persistent_volume(_pv_for(pvc, node, sc.provisioner, sc.reclaim_policy or "Delete"))
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            # Reclaim: released PVs of ours with policy Delete go away, as local-path's would.
            for pv in core.list_persistent_volume(label_selector="flywheel.tinyland.dev/sim-provisioned=true").items:
                if pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete":
                    try:
                        core.delete_persistent_volume(pv.metadata.name)
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
        except Exception as exc:  # keep serving through apiserver restarts
            print(f"provisioner: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
            time.sleep(1)
        time.sleep(interval)


def main() -> None:  # pragma: no cover - process entry point
    p = argparse.ArgumentParser(prog="flywheel-sim-provisioner")
    p.add_argument("--kubeconfig", required=True)
    run(p.parse_args().kubeconfig)


if __name__ == "__main__":  # pragma: no cover
    main()
