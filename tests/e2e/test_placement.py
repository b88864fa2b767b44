"""Every scale set, created exactly as rendered, lands where the topology
pins it: the real kube-scheduler is the judge."""

from __future__ import annotations

import copy

import pytest

from flywheel_runtime.topology import load

pytestmark = pytest.mark.e2e

SCALE_SETS = [s.name for s in load().scale_sets]


@pytest.mark.parametrize("scale_set", SCALE_SETS)
def test_scale_set_lands_on_its_pinned_node(flywheel_cluster, scale_set) -> None:
    from flywheel_runtime.harness.placement import lane_pod

    c = flywheel_cluster
    ss = c.topology.scale_set(scale_set)
    with c.namespace("place") as test_ns:
        # A device lane's pod goes to its own namespace under ARC's account for it: the
        # device admission policy admits the class nowhere else.
        ns, body = lane_pod(c.topology, scale_set, test_ns)
        name = c.kube.create_pod(c.fit(body), namespace=ns)
        try:
            _lands_on_its_node(c, ss, ns, name)
        finally:
            if ns != test_ns:
                c.kube.delete_pod(ns, name)


def _lands_on_its_node(c, ss, ns: str, name: str) -> None:
    placed = c.kube.wait_scheduled(ns, name, timeout=60)
    assert placed.node == ss.node
    assert placed.node != "bumble"
    if c.backend == "sim":
        # kwok runs it: Running after the start stage, init containers included.
        assert c.kube.wait_phase(ns, name, "Running", timeout=30).phase == "Running"
    else:
        # the real kubelet on that node has taken it on (its image is another issue's)
        pod = c.kubelet_accepted(ns, name)
        node = c.kube.core.read_node(ss.node)
        assert pod.status.host_ip in {a.address for a in node.status.addresses}
    if ss.volumes:
        claims = [pvc for pvc in c.kube.core.list_namespaced_persistent_volume_claim(ns).items
                  if pvc.metadata.name.startswith(f"{name}-")]
        assert sorted(pvc.metadata.name.rsplit("-", 1)[1] for pvc in claims) == sorted(v.name for v in ss.volumes)
        assert {pvc.status.phase for pvc in claims} == {"Bound"}
        assert {pvc.metadata.annotations["volume.kubernetes.io/selected-node"] for pvc in claims} == {"sting"}


@pytest.mark.parametrize("scale_set", [s.name for s in load().scale_sets if s.node == "sting"])
def test_sting_lane_without_its_toleration_stays_pending(flywheel_cluster, scale_set) -> None:
    c = flywheel_cluster
    pod = copy.deepcopy(c.render_pod(scale_set))
    pod["spec"].pop("tolerations")
    with c.namespace("taint") as ns:
        name = c.kube.create_pod(pod, namespace=ns)
        verdict = c.kube.wait_unschedulable(ns, name, timeout=60)
        assert verdict.node is None
        # 1.36 aggregates per node: the pod's selector admits only sting, and
        # sting is the one node refused for its taint.
        assert "1 node(s) had untolerated taint(s)" in verdict.message
        assert c.topology.node("sting").taints  # the only node with a NoSchedule taint of its own


def test_nothing_defaults_onto_bumble_even_when_uncordoned(flywheel_cluster) -> None:
    """Uncordon bumble and fill honey's pod slots: a pod with no placement of its
    own spills onto bumble, and still no honey lane does (placement, not cordons,
    keeps runners off the storage plane)."""
    from flywheel_runtime.harness.placement import lane_pod
    from tests.e2e.helpers import fill_pod_slots, filler

    c = flywheel_cluster
    if c.backend == "kind":
        pytest.skip("kind: filling honey's 110 pod slots needs 110 real containers on this 2-core machine")
    c.kube.core.patch_node("bumble", {"spec": {"unschedulable": False}})
    names: list[tuple[str, str, str]] = []  # (scale set, namespace, pod): device lanes' in their own namespace
    try:
        with c.namespace("bumble") as ns:
            fill_pod_slots(c.kube, ns, "honey", c.topology)
            stray = filler("stray", "honey")
            stray["spec"].pop("nodeSelector")
            stray["metadata"]["namespace"] = ns
            c.kube.core.create_namespaced_pod(ns, stray)
            # the control: with honey full and sting tainted, bumble takes an unplaced pod
            assert c.kube.wait_scheduled(ns, "stray", timeout=60).node == "bumble"
            honey_lanes = [s for s in c.topology.scale_sets if s.node == "honey"]
            for s in honey_lanes:
                where, body = lane_pod(c.topology, s.name, ns)
                names.append((s.name, where, c.kube.create_pod(c.fit(body), namespace=where)))
            for scale_set, where, name in names:
                verdict = c.kube.wait_unschedulable(where, name, timeout=60)
                assert verdict.node is None, scale_set
    finally:
        for _, where, name in names:
            if not where.startswith("bumble-"):
                c.kube.delete_pod(where, name)
        c.kube.core.patch_node("bumble", {"spec": {"unschedulable": True}})


def test_gitlab_runners_land_off_bumble_at_min_replicas(flywheel_cluster) -> None:
    from flywheel_runtime.kube import wait_for
    from flywheel_runtime.topology import render
    from flywheel_runtime.topology.render import LABEL_GITLAB_RUNNER

    c = flywheel_cluster
    with c.namespace("gitlab") as ns:
        for obj in render.gitlab_deployments(c.topology):
            obj = c.fit(copy.deepcopy(obj))
            obj["metadata"]["namespace"] = ns
            if obj["kind"] == "HorizontalPodAutoscaler":
                continue
            c.kube.apply(obj)
        for g in c.topology.gitlab_runners:
            sel = f"{LABEL_GITLAB_RUNNER}={g.name}"
            pods = wait_for(lambda sel=sel, g=g: (items := c.kube.core.list_namespaced_pod(ns, label_selector=sel).items)
                            and len(items) == g.min_replicas and all(p.spec.node_name for p in items) and items,
                            60, f"gitlab runner {g.name} at min replicas")
            assert len(pods) == g.min_replicas
            assert {p.spec.node_name for p in pods} == {g.node}
            assert "bumble" not in {p.spec.node_name for p in pods}


@pytest.mark.backend("sim", reason="kwok's stages drive this lifecycle; real kubelets run real containers")
def test_start_delay_and_job_end_drive_the_pod_lifecycle(flywheel_cluster) -> None:
    """kwok's stages: Running only after the pod's start delay; Succeeded or
    Failed when the test marks the job done."""
    import time

    c = flywheel_cluster
    with c.namespace("lifecycle") as ns:
        t0 = time.monotonic()
        ok = c.kube.create_pod(c.render_pod("tinyland-nix"), namespace=ns, start_delay="2s")
        bad = c.kube.create_pod(c.render_pod("tinyland-nix"), namespace=ns)
        c.kube.wait_phase(ns, ok, "Running", timeout=30)
        assert time.monotonic() - t0 >= 2.0
        c.kube.wait_phase(ns, bad, "Running", timeout=30)
        c.kube.finish_job(ns, ok)
        c.kube.finish_job(ns, bad, "failed")
        c.kube.wait_phase(ns, ok, "Succeeded", timeout=30)
        c.kube.wait_phase(ns, bad, "Failed", timeout=30)
