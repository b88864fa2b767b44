"""reap leaked-runners against the sim cluster's real apiserver and ARC CRDs."""

from __future__ import annotations

import pytest

from tests.e2e.audit_helpers import RUNNER_SPEC, ars, cli, create, names, owner_ref

pytestmark = pytest.mark.e2e


def _ers(kube, ns, name, owner, replicas, current):
    return create(kube, "ephemeralrunnersets", ns,
                  {"kind": "EphemeralRunnerSet", "metadata": {"name": name, "ownerReferences": [owner_ref(owner)]},
                   "spec": {"replicas": replicas, "patchID": 0, "ephemeralRunnerSpec": dict(RUNNER_SPEC)}},
                  {"currentReplicas": current})


def _runner(kube, ns, name, owner, job=None, phase="Running"):
    return create(kube, "ephemeralrunners", ns,
                  {"kind": "EphemeralRunner", "metadata": {"name": name, "ownerReferences": [owner_ref(owner)]},
                   "spec": dict(RUNNER_SPEC)},
                  {"phase": phase, "ready": phase == "Running", **(job or {})})


def _world(kube, ns):
    """Three sets: one drained to zero, one over desired, one warm pool at desired."""
    drained = create(kube, "autoscalingrunnersets", ns, ars("tinyland-nix-heavy"))
    over = create(kube, "autoscalingrunnersets", ns, ars("tinyland-docker"))
    warm = create(kube, "autoscalingrunnersets", ns, ars("tinyland-nix", min_runners=1))
    e_drained = _ers(kube, ns, "heavy-ers", drained, 0, 2)
    e_over = _ers(kube, ns, "docker-ers", over, 1, 3)
    e_warm = _ers(kube, ns, "nix-ers", warm, 1, 1)
    _runner(kube, ns, "heavy-idle", e_drained)
    _runner(kube, ns, "heavy-busy", e_drained, {"jobRequestId": 7001, "jobId": "j-1",
                                                "jobRepositoryName": "tinyland-inc/lab", "workflowRunId": 55})
    _runner(kube, ns, "docker-idle-a", e_over)
    _runner(kube, ns, "docker-idle-b", e_over, phase="Pending")
    _runner(kube, ns, "docker-busy", e_over, {"jobDisplayName": "lint"})
    _runner(kube, ns, "nix-warm", e_warm)


def test_dry_run_lists_only_the_provably_leaked(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("reap") as ns:
        _world(c.kube, ns)
        rc, out, err = cli("reap", "leaked-runners", "--namespace", ns, "--kubeconfig", str(c.kubeconfig), "--json")
        assert rc == 0, err
        assert out["mode"] == "dry run" and out["deleted"] == []
        leaked = {(x["name"], x["reason"]) for x in out["leaks"]}
        # docker set: 3 runners, desired 1 -> excess 2, both idle ones (pending first).
        assert leaked == {("heavy-idle", "owner-at-zero"), ("docker-idle-b", "excess"), ("docker-idle-a", "excess")}
        verdicts = {s["name"]: s["verdict"] for s in out["sets"]}
        assert verdicts["nix-ers"] == "warm pool at desired: untouchable"
        assert "heavy-idle" in names(c.kube, "ephemeralrunners", ns)  # nothing deleted


def test_apply_deletes_exactly_the_leaked_and_settles(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("reap") as ns:
        _world(c.kube, ns)
        rc, out, err = cli("reap", "leaked-runners", "--apply", "--namespace", ns, "--kubeconfig",
                           str(c.kubeconfig), "--json")
        assert rc == 0, err
        assert sorted(out["deleted"]) == sorted(f"{ns}/{n}" for n in ("heavy-idle", "docker-idle-a", "docker-idle-b"))
        assert out["settled"] is True
        assert names(c.kube, "ephemeralrunners", ns) == {"heavy-busy", "docker-busy", "nix-warm"}
        # A second pass finds nothing more: the busy and warm runners stay.
        rc, out, _ = cli("reap", "leaked-runners", "--apply", "--namespace", ns, "--kubeconfig",
                         str(c.kubeconfig), "--json")
        assert rc == 0 and out["leaks"] == [] and out["deleted"] == []


def test_just_in_time_recheck_spares_a_runner_that_took_a_job(flywheel_cluster) -> None:
    """Between the plan and the delete a leaked runner picks up a job: the
    fresh re-read spares it.  The job is assigned through the real API."""
    from flywheel_runtime.audit import reaper
    from flywheel_runtime.kube import Client, connect

    c = flywheel_cluster
    with c.namespace("reap") as ns:
        _world(c.kube, ns)
        base = connect(c.kubeconfig)

        class RacingCluster(Client):
            """The real client; a job lands right after the planning snapshot."""

            listed = 0

            def list_arc(self, plural, namespace=None):
                items = super().list_arc(plural, namespace)
                if plural == "ephemeralrunners":
                    RacingCluster.listed += 1
                    if RacingCluster.listed == 1:
                        c.kube.custom.patch_namespaced_custom_object_status(
                            "actions.github.com", "v1alpha1", ns, "ephemeralrunners", "heavy-idle",
                            {"status": {"jobRequestId": 9100, "jobDisplayName": "late job"}})
                return items

        cluster = RacingCluster(base.api_client, base.kubeconfig)
        result = reaper.reap(cluster, ns, apply=True, settle_timeout_s=30)
        assert {"name": "heavy-idle", "why": "picked up a job"} in result.spared
        assert f"{ns}/heavy-idle" not in result.deleted
        assert "heavy-idle" in names(c.kube, "ephemeralrunners", ns)
        assert sorted(result.deleted) == sorted(f"{ns}/{n}" for n in ("docker-idle-a", "docker-idle-b"))


def test_finalizer_held_runner_hits_the_bounded_settle_wait(flywheel_cluster) -> None:
    """ARC puts finalizers on EphemeralRunners; with nobody to clear them the
    bounded wait ends with exit 13 and a clear line."""
    c = flywheel_cluster
    with c.namespace("reap") as ns:
        owner = create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-nix-kvm"))
        ers = _ers(c.kube, ns, "kvm-ers", owner, 0, 1)
        r = create(c.kube, "ephemeralrunners", ns,
                   {"kind": "EphemeralRunner", "metadata": {"name": "kvm-idle", "ownerReferences": [owner_ref(ers)],
                                                            # ARC's own finalizers (../shared/arc/README.md)
                                                            "finalizers": [
                                                                "ephemeralrunner.actions.github.com/finalizer",
                                                                "ephemeralrunner.actions.github.com/"
                                                                "runner-registration-finalizer"]},
                    "spec": dict(RUNNER_SPEC)}, {"phase": "Running"})
        try:
            rc, _, err = cli("reap", "leaked-runners", "--apply", "--namespace", ns, "--settle-timeout", "2",
                             "--kubeconfig", str(c.kubeconfig))
            assert rc == 13, err
            assert len(err.strip().splitlines()) == 1 and "still present after 2s" in err
        finally:
            c.kube.custom.patch_namespaced_custom_object("actions.github.com", "v1alpha1", ns, "ephemeralrunners",
                                                         r["metadata"]["name"], {"metadata": {"finalizers": None}})
