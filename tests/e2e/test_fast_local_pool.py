"""sting's fast-local pool (2026-05-24) against real clusters.

1. With the platform's provisioner (``rancher.io/local-path``) nothing holds a
   claim back: a claim larger than sting's whole filesystem binds, so the
   model (``capacity.pools``, ``topology check``'s fast-local-pool rule) is the
   only place the pool is counted (kind: the real provisioner).
2. Where the pool *is* published to the scheduler (a CSI driver with storage
   capacity tracking: a CSIDriver with ``storageCapacity: true`` and a
   CSIStorageCapacity for sting, kept at the pool's free size as a real
   driver's external-provisioner does), the runner whose claims the pool
   cannot hold stays Pending exactly where the model says it would, and
   schedules once a runner before it is gone.  The test publishes the
   capacity itself; the cluster provisions the tracked class's claims (the
   sim's provisioner does for every StorageClass; on kind a second instance of
   kind's own local-path provisioner, started under the tracked name with its
   ``--provisioner-name`` option, see ``_tracked_provisioner``).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator

import pytest

from flywheel_runtime.topology import capacity, load_data, render
from flywheel_runtime.topology.quantity import format_bytes, parse_bytes

pytestmark = pytest.mark.e2e

GiB = 2**30
LANE = "tinyland-nix-compute-expansion"
# A CSI-legal provisioner name (a CSIDriver's name cannot hold local-path's "/").
TRACKED = "fast-local.flywheel.tinyland.dev"
TRACKED_CLASS = "fast-local-tracked"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
# A runner is scheduled only once its three claims are provisioned (WaitForFirstConsumer:
# the binding waits in PreBind); on kind that is local-path's helper pods, one per claim,
# which a loaded 2-core machine has taken over a minute to run (CI, 2026-12-07).
SCHEDULED_S = 300


@pytest.mark.backend("kind", reason="the real local-path provisioner; the sim's provisioner is the harness's own")
def test_local_path_binds_a_claim_larger_than_the_pool(flywheel_cluster) -> None:
    c = flywheel_cluster
    topo = c.topology
    sc = topo.storage_class("local-path-sting-fast-ephemeral")
    sting = c.kube.core.read_node("sting")
    # local-path keeps its volumes on the node's own filesystem, the one behind
    # its ephemeral-storage: ask twice that.
    disk = parse_bytes(sting.status.capacity["ephemeral-storage"])
    pod = copy.deepcopy(c.render_pod(LANE))
    nix = next(v for v in pod["spec"]["volumes"] if v["name"] == "nix")
    nix["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] = format_bytes(2 * disk)
    # The model, told the pool is that filesystem, backs no such runner.
    raw = copy.deepcopy(topo.raw)
    raw["storage_classes"][sc.name].update(capacity=disk, capacity_source="sting's filesystem on kind")
    next(v for v in next(s for s in raw["scale_sets"] if s["name"] == LANE)["volumes"]
         if v["name"] == "nix")["size"] = 2 * disk
    model = capacity.pools(load_data(raw, source="kind-pool.yaml"))[0]
    lane = next(lane for lane in model.lanes if lane.scale_set == LANE)
    assert lane.backs_alone == 0 and LANE in model.unbacked
    with c.namespace("pool-ignored") as ns:
        name = c.kube.create_pod(pod, namespace=ns)
        assert c.kube.wait_scheduled(ns, name, timeout=120).node == "sting"
        claims = {p.metadata.name.rsplit("-", 1)[1]: p for p in
                  c.kube.core.list_namespaced_persistent_volume_claim(ns).items}
        assert claims["nix"].status.phase == "Bound"
        assert parse_bytes(claims["nix"].status.capacity["storage"]) == 2 * disk  # granted, never checked


def _tracked_topology(topo, runners: int) -> tuple[object, int]:
    """The topology with the lane's claims on a capacity-tracked class whose
    pool holds ``runners`` runners and less than the lane's largest claim more."""
    raw = copy.deepcopy(topo.raw)
    ss = next(s for s in raw["scale_sets"] if s["name"] == LANE)
    per = sum(parse_bytes(v["size"]) if isinstance(v["size"], str) else v["size"] for v in ss["volumes"])
    largest = max(parse_bytes(v["size"]) if isinstance(v["size"], str) else v["size"] for v in ss["volumes"])
    # Left over beside them: below the largest claim, so the scheduler's
    # per-claim capacity check and the model's per-runner sum agree (between
    # the two the scheduler admits a runner whose claims a real driver then
    # refuses at provisioning: Pending all the same, on PreBind).
    pool = runners * per + largest // 2
    raw["storage_classes"][TRACKED_CLASS] = {
        "provisioner": TRACKED, "binding_mode": "WaitForFirstConsumer", "reclaim_policy": "Delete",
        "node": "sting", "capacity": pool, "capacity_source": "the e2e test's pool"}
    for v in ss["volumes"]:
        v["storage_class"] = TRACKED_CLASS
    return load_data(raw, source="tracked-pool.yaml"), pool


def _claimed(c, ns: str) -> int:
    """Bytes the tracked class's claims in ``ns`` take on sting (provisioned or being)."""
    return sum(parse_bytes(p.spec.resources.requests["storage"])
               for p in c.kube.core.list_namespaced_persistent_volume_claim(ns).items
               if p.spec.storage_class_name == TRACKED_CLASS and p.metadata.deletion_timestamp is None
               and (p.metadata.annotations or {}).get(SELECTED_NODE) == "sting")


@contextlib.contextmanager
def _tracked_provisioner(c) -> Iterator[None]:
    """kind: kind's own local-path provisioner Deployment, copied under the tracked
    provisioner name (upstream's ``--provisioner-name``; same account, config and
    helper), so the tracked class's claims are provisioned by the real thing. The
    sim's provisioner serves every class already."""
    if c.backend != "kind":
        yield
        return
    from kubernetes.client.rest import ApiException

    from flywheel_runtime.kube import wait_for

    apps, ns, name = c.kube.apps, "local-path-storage", "local-path-provisioner-tracked"
    body = c.kube.to_dict(apps.read_namespaced_deployment("local-path-provisioner", ns))
    labels = {"app": name}
    body["metadata"] = {"name": name, "namespace": ns, "labels": labels}
    body.pop("status", None)
    body["spec"]["selector"] = {"matchLabels": labels}
    template = body["spec"]["template"]
    template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), **labels}
    container = template["spec"]["containers"][0]
    key = "command" if "start" in (container.get("command") or []) else "args"
    assert "start" in container.get(key, []) and "--provisioner-name" not in container[key], container
    container[key] = [*container[key], "--provisioner-name", TRACKED]
    apps.create_namespaced_deployment(ns, body)
    try:
        wait_for(lambda: (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0) >= 1 or None,
                 120, f"{name} ready", interval=1)
        yield
    finally:
        try:
            apps.delete_namespaced_deployment(name, ns)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_runner_the_pool_cannot_hold_stays_pending_where_the_model_says(flywheel_cluster) -> None:
    c = flywheel_cluster
    k = 2
    topo, pool = _tracked_topology(c.topology, k)
    (model,) = [p for p in capacity.pools(topo) if p.storage_class == TRACKED_CLASS]
    (lane,) = model.lanes
    assert lane.backs_alone == k and model.unbacked == [LANE]
    sc = capacity.scenario(topo, {LANE: k + 1})
    assert sc.admitted == {LANE: k + 1}  # sting's CPU and memory admit them all ...
    assert (sc.pools[TRACKED_CLASS]["backed"], sc.pools[TRACKED_CLASS]["unbacked"]) == ({LANE: k}, {LANE: 1})

    (sc_obj,) = [o for o in render.storage_classes(topo) if o["metadata"]["name"] == TRACKED_CLASS]
    storage = c.kube.storage
    with _tracked_provisioner(c), c.namespace("pool-tracked") as ns:
        try:
            storage.create_storage_class(sc_obj)
            storage.create_csi_driver({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                                       "metadata": {"name": TRACKED},
                                       "spec": {"attachRequired": False, "podInfoOnMount": False,
                                                "storageCapacity": True, "volumeLifecycleModes": ["Persistent"]}})
            storage.create_namespaced_csi_storage_capacity(ns, {
                "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
                "metadata": {"name": "sting-fast-local"}, "storageClassName": TRACKED_CLASS,
                "nodeTopology": {"matchLabels": {"kubernetes.io/hostname": "sting"}},
                "capacity": format_bytes(pool)})

            def publish() -> None:  # what a tracking driver's external-provisioner keeps current
                storage.patch_namespaced_csi_storage_capacity(
                    "sting-fast-local", ns, {"capacity": str(pool - _claimed(c, ns))})
                time.sleep(1)  # the scheduler's informer sees it before the next runner arrives

            runners = []
            for _ in range(k):
                name = c.kube.create_pod(c.fit(render.pod(topo, LANE)), namespace=ns)
                assert c.kube.wait_scheduled(ns, name, timeout=SCHEDULED_S).node == "sting"
                runners.append(name)
                publish()
            last = c.kube.create_pod(c.fit(render.pod(topo, LANE)), namespace=ns)
            verdict = c.kube.wait_unschedulable(ns, last, timeout=120)
            assert "did not have enough free storage" in (verdict.message or ""), verdict.message
            # The first runner goes (its claims with it): the pool holds the last one.
            c.kube.delete_pod(ns, runners[0])
            deadline = time.monotonic() + 180
            while _claimed(c, ns) > (k - 1) * lane.per_runner:
                assert time.monotonic() < deadline, "the first runner's claims are still there after 180 s"
                time.sleep(0.5)
            publish()
            assert c.kube.wait_scheduled(ns, last, timeout=SCHEDULED_S).node == "sting"
        finally:
            from kubernetes.client.rest import ApiException

            for delete, name in ((storage.delete_csi_driver, TRACKED), (storage.delete_storage_class, TRACKED_CLASS)):
                try:
                    delete(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
