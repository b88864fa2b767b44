"""The design document's scheduler lessons, replayed against the real
kube-scheduler: pod ceilings, root ephemeral storage, honest queueing, and
pod slots held by runner pods nobody cleaned up."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from flywheel_runtime.topology.quantity import format_bytes

from .helpers import fill_pod_slots, filler, node_free

pytestmark = [pytest.mark.e2e, pytest.mark.backend(
    "sim", reason="needs the platform's capacities (honey's pod slots and memory, sting's ephemeral storage); "
                  "kind's nodes have this machine's")]


def test_honey_pod_ceiling_blocks_nix_while_sting_has_room(flywheel_cluster) -> None:
    """2026-05-11: honey's pod slots full, tinyland-nix Pending on "Too many pods"
    although sting has spare CPU and memory."""
    c = flywheel_cluster
    with c.namespace("ceiling") as ns:
        fill_pod_slots(c.kube, ns, "honey", c.topology)
        assert node_free(c.kube, c.topology, "honey")["pods"] == 0
        name = c.kube.create_pod(c.render_pod("tinyland-nix"), namespace=ns)
        verdict = c.kube.wait_unschedulable(ns, name, timeout=60)
        assert "Too many pods" in verdict.message
        sting = node_free(c.kube, c.topology, "sting")
        nix = c.topology.scale_set("tinyland-nix").envelope.pod_requests()
        assert sting["cpu"] >= nix["cpu"] and sting["memory"] >= nix["memory"], "sting has spare CPU and memory"


def test_sting_root_ephemeral_storage_vs_pvc_backed_scratch(flywheel_cluster) -> None:
    """2026-05-24: scratch asked from sting's root ephemeral storage (beyond its
    advertised 66.32Gi) stays Pending; the PVC-backed lane schedules."""
    c = flywheel_cluster
    ss = c.topology.scale_set("tinyland-nix-compute-expansion")
    root_variant = copy.deepcopy(c.render_pod(ss.name))
    spec = root_variant["spec"]
    scratch = sum(v.size for v in ss.volumes)
    assert scratch > c.topology.node("sting").allocatable.ephemeral_storage
    # The same lane without its claims: the scratch moves to root ephemeral storage.
    spec.pop("volumes")
    spec.pop("initContainers")
    runner = spec["containers"][0]
    runner.pop("volumeMounts")
    runner["resources"]["requests"]["ephemeral-storage"] = format_bytes(scratch)
    runner["resources"]["limits"]["ephemeral-storage"] = format_bytes(scratch)
    with c.namespace("ephemeral") as ns:
        bad = c.kube.create_pod(root_variant, namespace=ns)
        verdict = c.kube.wait_unschedulable(ns, bad, timeout=60)
        assert "Insufficient ephemeral-storage" in verdict.message
        good = c.kube.create_pod(c.render_pod(ss.name), namespace=ns)
        assert c.kube.wait_scheduled(ns, good, timeout=60).node == "sting"


def test_two_overlays_heavy_runners_queue_honestly(flywheel_cluster) -> None:
    """Tinyland and Jess overlays each run one tinyland-nix-heavy runner (cap 1
    per scale set, no global cap): when honey admits one, the second queues and
    schedules once the first is gone."""
    c = flywheel_cluster
    heavy = [s for s in c.topology.scale_sets_for("tinyland-nix-heavy")]
    assert len({s.overlay for s in heavy}) == 2
    mem = heavy[0].envelope.pod_requests()["memory"]
    with c.namespace("heavy") as ns:
        # Leave room for one and a half heavy runners: one fits, two do not.
        free = node_free(c.kube, c.topology, "honey")["memory"]
        body = filler("honey-memory", "honey", memory=format_bytes(free - mem - mem // 2))
        body["metadata"]["namespace"] = ns
        c.kube.core.create_namespaced_pod(ns, body)
        c.kube.wait_scheduled(ns, "honey-memory")
        first = c.kube.create_pod(c.render_pod(heavy[0].name), namespace=ns)
        assert c.kube.wait_scheduled(ns, first, timeout=60).node == "honey"
        second = c.kube.create_pod(c.render_pod(heavy[1].name), namespace=ns)
        verdict = c.kube.wait_unschedulable(ns, second, timeout=60)
        assert "Insufficient memory" in verdict.message
        c.kube.finish_job(ns, first)
        c.kube.wait_phase(ns, first, "Succeeded", timeout=30)
        c.kube.delete_pod(ns, first)
        assert c.kube.wait_scheduled(ns, second, timeout=60).node == "honey"


def test_uncleaned_runner_pods_hold_slots_until_cleanup(flywheel_cluster) -> None:
    """2026-05-12: runner pods nobody finished off hold honey's pod slots; the
    cleanup policy (force-delete Terminating > 300 s) frees them and the queued
    runner schedules.  Completed (Succeeded) pods no longer count against the
    scheduler's pod ceiling in this Kubernetes release; the policy still
    deletes them after 600 s as hygiene."""
    from flywheel_runtime.audit.cleanup import select

    c = flywheel_cluster
    policy = c.topology.cleanup
    with c.namespace("cleanup") as ns:
        names = fill_pod_slots(c.kube, ns, "honey", c.topology)
        stuck, done = names[:3], names[3:6]
        for n in names[-1:]:
            c.kube.wait_phase(ns, n, "Running", timeout=60)
        for n in stuck:  # a kubelet that never confirms termination
            c.kube.core.patch_namespaced_pod(n, ns, {"metadata": {"annotations": {
                "flywheel.tinyland.dev/stuck-terminating": "true"}}})
            c.kube.delete_pod(ns, n, grace=30)
        queued = c.kube.create_pod(c.render_pod("tinyland-nix"), namespace=ns)
        verdict = c.kube.wait_unschedulable(ns, queued, timeout=60)
        assert "Too many pods" in verdict.message

        pods = [c.kube.api_client.sanitize_for_serialization(p) for p in c.kube.core.list_namespaced_pod(ns).items]
        now = dt.datetime.now(dt.timezone.utc)
        assert [a for a in select(pods, policy, now) if a.name in stuck] == []  # too young yet
        later = now + dt.timedelta(seconds=policy.terminating_after_s + 31)
        actions = [a for a in select(pods, policy, later) if a.name in stuck]
        assert sorted(a.name for a in actions) == sorted(stuck)
        assert {a.kind for a in actions} == {"force-delete"}
        for a in actions:
            c.kube.delete_pod(a.namespace, a.name, grace=a.grace_period_seconds or 0)
        assert c.kube.wait_scheduled(ns, queued, timeout=60).node == "honey"

        # Completed pods: kwok completes them; the policy deletes them after 600 s.
        for n in done:
            c.kube.finish_job(ns, n)
        for n in done:
            c.kube.wait_phase(ns, n, "Succeeded", timeout=30)
        pods = [c.kube.api_client.sanitize_for_serialization(p) for p in c.kube.core.list_namespaced_pod(ns).items]
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
        assert [a.name for a in select(pods, policy, soon) if a.name in done] == []
        late = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=policy.succeeded_after_s + 5)
        assert sorted(a.name for a in select(pods, policy, late) if a.name in done) == sorted(done)


def test_the_capacity_models_pod_ceiling_is_the_schedulers(flywheel_cluster) -> None:
    """The 2026-05-11 ceiling offline (``capacity.pod_ceiling``) against the real
    scheduler: with the contract's standing pods on honey and exactly the model's
    count of pods outside the contract, tinyland-nix at its cap gets all but one
    runner, the last refused on "Too many pods" while honey still has its CPU and
    memory; one such pod fewer and it schedules."""
    import time

    from flywheel_runtime.topology import capacity, render

    from .helpers import gitlab_pods, listener_pod, node_usage

    c = flywheel_cluster
    topo = c.topology
    ss = topo.scale_set("tinyland-nix")
    ceiling = capacity.pod_ceiling(topo, "honey")
    k = ceiling.refused_at[ss.name]
    assert 0 < k < ceiling.slots - ceiling.standing
    with c.namespace("ceiling-model") as ns:
        # The standing pods the model counts: the controller, honey's listeners, GitLab at min.
        standing = [c.kube.create_pod(render.controller_pod(topo), namespace=ns)]
        standing += [c.kube.create_pod(listener_pod(topo, s.name), namespace=ns)
                     for s in topo.scale_sets if s.listener.node == "honey"]
        standing += [c.kube.create_pod(body, namespace=ns) for body in gitlab_pods(c, ns)]
        assert len(standing) == ceiling.standing
        for n in standing:
            assert c.kube.wait_scheduled(ns, n, timeout=60).node == "honey"
        # Pods outside the contract: whatever else is on honey once pods of earlier tests
        # have left, topped up with slot-only pods (no requests) to the model's k.
        deadline = time.monotonic() + 60
        while any(p.metadata.deletion_timestamp for p in c.kube.core.list_pod_for_all_namespaces(
                field_selector="spec.nodeName=honey").items):
            assert time.monotonic() < deadline, "pods on honey still terminating after 60 s"
            time.sleep(0.5)
        present = node_usage(c.kube, "honey")["pods"] - ceiling.standing
        assert 0 <= present < k, present
        others = []
        for i in range(k - present):
            body = filler(f"other-{i}", "honey")
            body["metadata"]["namespace"] = ns
            c.kube.core.create_namespaced_pod(ns, body)
            others.append(body["metadata"]["name"])
        for n in others:
            c.kube.wait_scheduled(ns, n, timeout=60)
        runners = [c.kube.create_pod(c.render_pod(ss.name), namespace=ns) for _ in range(ss.max_runners)]
        verdicts = {}
        deadline = time.monotonic() + 60
        while len(verdicts) < len(runners):
            assert time.monotonic() < deadline, f"no verdict for {set(runners) - set(verdicts)}"
            for n in runners:
                if n not in verdicts:
                    v = c.kube.placement(ns, n)
                    if v.scheduled or v.reason == "Unschedulable":
                        verdicts[n] = v
            time.sleep(0.2)
        refused = [v for v in verdicts.values() if not v.scheduled]
        assert len(refused) == 1, [(v.pod, v.node, v.message) for v in verdicts.values()]
        assert "Too many pods" in refused[0].message
        assert "Insufficient" not in refused[0].message  # CPU, memory and storage had room
        free = node_free(c.kube, topo, "honey")
        req = ss.envelope.pod_requests()
        assert free["pods"] == 0 and all(free[r] >= req[r] for r in ("cpu", "memory", "ephemeral-storage"))
        # One pod outside the contract fewer: the refused runner schedules.
        c.kube.delete_pod(ns, others[-1], grace=0)
        assert c.kube.wait_scheduled(ns, refused[0].pod, timeout=60).node == "honey"
