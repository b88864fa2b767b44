"""audit imagefs, audit labels, cleanup runner-pods and warm-pool reconcile
through the CLI against the sim cluster."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from flywheel_runtime.topology import render
from tests.e2e.audit_helpers import GROUP, VERSION, ars, cli, create, topology_in
from tests.e2e.helpers import filler

pytestmark = pytest.mark.e2e


# -- audit imagefs ------------------------------------------------------------------

def test_imagefs_reports_a_real_kubelet_and_refuses_a_kwok_node_in_one_line(flywheel_cluster) -> None:
    """A real kubelet (kind) serves its stats summary: the imagefs figures come
    back, classified.  A kwok node has no kubelet to ask: the command says so in
    one line and points at --stats-file."""
    c = flywheel_cluster
    rc, out, err = cli("audit", "imagefs", "--node", "bumble", "--kubeconfig", str(c.kubeconfig), "--json")
    if c.backend == "kind":
        assert rc in (0, 1), err
        assert out["node"] == "bumble" and out["status"] in ("healthy", "warning", "critical")
        fss = {f["name"]: f for f in out["filesystems"]}
        assert {"rootfs", "imagefs"} <= set(fss), out
        assert all(0 < f["available_bytes"] <= f["capacity_bytes"] for f in fss.values()), out
        # The node's own verdicts sit beside the figures.
        assert set(out["conditions"]) == {"Ready", "DiskPressure"} and out["conditions"]["Ready"] == "True", out
    else:
        assert rc == 12, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "bumble" in lines[0] and "--stats-file" in lines[0]


def test_imagefs_for_an_unknown_node_is_one_line(flywheel_cluster) -> None:
    c = flywheel_cluster
    rc, _, err = cli("audit", "imagefs", "--node", "no-such-node", "--kubeconfig", str(c.kubeconfig))
    assert rc == 12, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "node 'no-such-node' does not exist on https://" in lines[0]


# -- audit labels ----------------------------------------------------------------------

def test_labels_joins_live_runner_counts_and_flags_drift_and_residue(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    topo = c.topology
    with c.namespace("labels") as ns:
        topo_file = topology_in(topo, ns, tmp_path)
        for ss in topo.scale_sets:
            body = render.autoscaling_runner_set(topo, ss.name)
            body["metadata"] = {"name": ss.name, "labels": body["metadata"].get("labels", {})}
            current = 2 if ss.label == "tinyland-nix-heavy" else 0
            create(c.kube, "autoscalingrunnersets", ns, body, {"currentRunners": current})
        rc, out, err = cli("audit", "labels", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig),
                           "--json")
        assert rc == 0, err
        assert out["mode"] == "live"
        heavy = next(lbl for lbl in out["labels"] if lbl["label"] == "tinyland-nix-heavy")
        assert heavy["current_runners"] == 2 * len(topo.scale_sets_for("tinyland-nix-heavy"))
        assert heavy["overlays"] == sorted({s.overlay for s in topo.scale_sets_for("tinyland-nix-heavy")})
        assert all(not lbl["flags"] for lbl in out["labels"]), [lbl["flags"] for lbl in out["labels"]]
        assert main_exit(c, topo_file, "--fail-on-debt") == 0

        # Drift: a live cap differs from the topology; residue: a repo-shaped set.
        c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", "jess-nix-heavy",
                                                     {"spec": {"maxRunners": 4}})
        create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-lab-ci", 0, 2, ["tinyland-nix-heavy", "linux"]),
               {"currentRunners": 1})
        rc, out, err = cli("audit", "labels", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig),
                           "--json")
        heavy = next(lbl for lbl in out["labels"] if lbl["label"] == "tinyland-nix-heavy")
        assert any("cap drift" in f for f in heavy["flags"])
        assert [r["scale_set"] for r in heavy["residue"]] == ["tinyland-lab-ci"]
        assert main_exit(c, topo_file, "--fail-on-debt") == 1

        # Beyond caps: Docker's listener moved off sting, the DinD daemon lost its CPU request.
        c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", "tinyland-docker",
                                                     {"spec": {"listenerTemplate": {"spec": {"nodeSelector": {
                                                         "kubernetes.io/hostname": "honey"}}}}})
        dind = c.kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", "tinyland-dind")
        daemon = next(x for x in dind["spec"]["template"]["spec"]["initContainers"] if x["name"] == "dind")
        del daemon["resources"]["requests"]["cpu"]
        c.kube.custom.replace_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", "tinyland-dind",
                                                       dind)
        rc, out, err = cli("audit", "labels", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig),
                           "--json")
        flags = {lbl["label"]: lbl["flags"] for lbl in out["labels"]}
        assert flags["tinyland-docker"] == [
            f'placement drift: {ns}/tinyland-docker listener: live nodeSelector {{"kubernetes.io/hostname":"honey"}} '
            '!= topology {"kubernetes.io/hostname":"sting"}']
        assert len(flags["tinyland-dind"]) == 1 and flags["tinyland-dind"][0].startswith(
            f"envelope drift: {ns}/tinyland-dind container dind: live ")


def main_exit(c, topo_file, *extra: str) -> int:
    rc, _, _ = cli("audit", "labels", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig), *extra)
    return rc


# -- cleanup runner-pods -----------------------------------------------------------

@pytest.mark.backend("sim", reason="kwok stands in for a kubelet that never confirms termination and for jobs "
                                    "that end on cue; a real kubelet does neither on demand")
def test_cleanup_deletes_old_completed_and_force_deletes_stuck_terminating(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("cleanup") as ns:
        for name in ("done-1", "done-2", "stuck-1", "live-1"):
            body = filler(name, "honey")
            body["metadata"]["namespace"] = ns
            c.kube.core.create_namespaced_pod(ns, body)
        for name in ("done-1", "done-2", "stuck-1", "live-1"):
            c.kube.wait_phase(ns, name, "Running", timeout=60)
        for name in ("done-1", "done-2"):
            c.kube.finish_job(ns, name)
            c.kube.wait_phase(ns, name, "Succeeded", timeout=60)
        c.kube.core.patch_namespaced_pod("stuck-1", ns, {"metadata": {"annotations": {
            "flywheel.tinyland.dev/stuck-terminating": "true"}}})
        c.kube.delete_pod(ns, "stuck-1", grace=30)

        base = ["cleanup", "runner-pods", "--namespace", ns, "--kubeconfig", str(c.kubeconfig), "--json"]
        rc, out, err = cli(*base)  # now: everything too young
        assert rc == 0, err
        assert out["actions"] == [] and out["mode"] == "dry run"

        later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=c.topology.cleanup.succeeded_after_s + 60))
        rc, out, err = cli(*base, "--now", later.isoformat())
        assert rc == 0, err
        assert sorted((a["name"], a["kind"]) for a in out["actions"]) == [
            ("done-1", "delete"), ("done-2", "delete"), ("stuck-1", "force-delete")]
        assert {p.metadata.name for p in c.kube.core.list_namespaced_pod(ns).items} >= {"done-1", "stuck-1"}

        rc, out, err = cli(*base, "--now", later.isoformat(), "--apply")
        assert rc == 0, err
        assert all(a["applied"] for a in out["actions"])
        deadline = time.monotonic() + 30
        while True:
            left = {p.metadata.name for p in c.kube.core.list_namespaced_pod(ns).items}
            if left == {"live-1"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert left == {"live-1"}


# -- warm-pool reconcile --------------------------------------------------------------

def test_warm_pool_reconcile_cli_dry_run_then_apply(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    topo = c.topology
    with c.namespace("warm") as ns:
        topo_file = topology_in(topo, ns, tmp_path)
        warm = [s for s in topo.scale_sets if s.warm_pool is not None]
        for ss in warm:
            body = render.autoscaling_runner_set(topo, ss.name)
            body["metadata"] = {"name": ss.name}
            body["spec"]["minRunners"] = 0
            create(c.kube, "autoscalingrunnersets", ns, body)
        base = ["warm-pool", "reconcile", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig), "--json",
                "--now", "2026-11-30T13:00:00Z"]  # Monday 13:00 UTC
        rc, out, err = cli(*base)
        assert rc == 0, err
        assert [(ch["scale_set"], ch["from"], ch["to"], ch["applied"]) for ch in out["changes"]] == [
            (s.name, 0, 1, False) for s in warm]
        live = lambda name: c.kube.custom.get_namespaced_custom_object(  # noqa: E731
            GROUP, VERSION, ns, "autoscalingrunnersets", name)["spec"]["minRunners"]
        assert all(live(s.name) == 0 for s in warm)
        rc, out, err = cli(*base, "--apply", "--scale-set", warm[0].name)
        assert rc == 0, err
        assert out["changes"][0]["applied"]
        assert live(warm[0].name) == 1
        rc, out, _ = cli(*base[:-2], "--now", "2026-12-01T01:00:00Z", "--apply")  # Tuesday 01:00: drain
        assert rc == 0 and live(warm[0].name) == 0


def test_warm_pool_reconcile_for_a_missing_scale_set_is_one_line(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("warm") as ns:
        topo_file = topology_in(c.topology, ns, tmp_path)
        rc, _, err = cli("warm-pool", "reconcile", "--topology", str(topo_file), "--kubeconfig", str(c.kubeconfig))
        assert rc == 12, err
        assert len(err.strip().splitlines()) == 1 and "not found" in err


# -- audit pod-slots -----------------------------------------------------------------

def test_pod_slots_counts_the_live_pods_outside_the_contract(flywheel_cluster) -> None:
    """What the facts do not give -- the pods outside the contract on each node --
    counted live and fed to the capacity model's pod ceiling.  On kind honey is the
    control-plane node: its real static pods (etcd, apiserver, controller-manager,
    scheduler) and kube-proxy count there."""
    from flywheel_runtime.topology import capacity, load
    from tests.e2e.helpers import node_usage

    c = flywheel_cluster
    with c.namespace("podslots") as ns:
        for i in range(3):
            body = filler(f"outside-{i}", "honey")
            body["metadata"]["namespace"] = ns
            c.kube.core.create_namespaced_pod(ns, body)
        for i in range(3):
            c.kube.wait_scheduled(ns, f"outside-{i}", timeout=60)
        for _ in range(20):  # pods of earlier tests may still be leaving: compare on a still moment
            rc, out, err = cli("audit", "pod-slots", "--kubeconfig", str(c.kubeconfig), "--json")
            assert rc == 0, err
            honey = next(n for n in out["nodes"] if n["node"] == "honey")
            if honey["contract"] + honey["other"] == node_usage(c.kube, "honey")["pods"]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"pod-slots never matched the API's count on honey: {honey}")
        assert honey["other_by_namespace"][ns] == 3
        assert honey["free"] == honey["slots"] - honey["contract"] - honey["other"]
        if c.backend == "kind":
            assert honey["other_by_namespace"].get("kube-system", 0) >= 4, honey
        # the CLI's topology (on kind, c.topology's envelopes are fitted to this machine)
        ceiling = capacity.pod_ceiling(load(), "honey").refused_at
        assert honey["refused_at"] == ceiling
        assert honey["reached"] == [lane for lane, k in ceiling.items() if honey["other"] >= k]
        rc, text, err = cli("audit", "pod-slots", "--kubeconfig", str(c.kubeconfig))
        assert rc == 0 and text.splitlines()[0].startswith("honey: 110 pod slots; live "), (text, err)
