"""managed-apply run on the sim cluster: ARC's real CRDs, the CLI as a user
runs it, the apply through an operator's command (``kubectl replace`` of the
AutoscalingRunnerSet the chart would make: these sets have no Helm release;
the live test against the real controller upgrades the releases with helm).  What cannot exist here is GitHub: no job is
ever assigned and no listener is ever registered, so the test plays those parts
(job fields on EphemeralRunners, AutoscalingListeners that follow the caps).

The live world: every scale set applied as rendered, except tinyland-nix at an
older cap (10; the topology says 16), with one runner busy on a job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.topology import load, render
from tests.e2e.audit_helpers import GROUP, RUNNER_SPEC, VERSION, create, owner_ref, topology_in

pytestmark = pytest.mark.e2e

JOB = {"jobRequestId": 9001, "jobId": "j-9001", "jobRepositoryName": "tinyland-inc/lab", "workflowRunId": 77,
       "jobDisplayName": "build"}


def _world(kube: Any, ns: str, topo_path: Path) -> None:
    topo = load(topo_path)
    for ss in topo.scale_sets:
        body = render.autoscaling_runner_set(topo, ss.name)
        if ss.name == "tinyland-nix":
            body["spec"]["maxRunners"] = 10
        obj = create(kube, "autoscalingrunnersets", ns, body,
                     {"currentRunners": 1 if ss.name == "tinyland-nix" else 0})
        _listener(kube, ns, ss.name, body["spec"]["minRunners"], body["spec"]["maxRunners"])
        if ss.name == "tinyland-nix":
            ers = create(kube, "ephemeralrunnersets", ns, {
                "kind": "EphemeralRunnerSet", "metadata": {"name": "nix-ers", "ownerReferences": [owner_ref(obj)]},
                "spec": {"replicas": 1, "patchID": 0, "ephemeralRunnerSpec": dict(RUNNER_SPEC)}},
                {"currentReplicas": 1})
            create(kube, "ephemeralrunners", ns, {
                "kind": "EphemeralRunner", "metadata": {"name": "nix-busy", "ownerReferences": [owner_ref(ers)]},
                "spec": dict(RUNNER_SPEC)}, {"phase": "Running", "ready": True, **JOB})


def _listener(kube: Any, ns: str, name: str, lo: int, hi: int) -> None:
    create(kube, "autoscalinglisteners", ns, {
        "kind": "AutoscalingListener", "metadata": {"name": f"{name}-listener"},
        "spec": {"githubConfigUrl": "https://github.com/tinyland-inc", "runnerScaleSetId": 1,
                 "autoscalingRunnerSetNamespace": ns, "autoscalingRunnerSetName": name,
                 "ephemeralRunnerSetName": f"{name}-ers", "minRunners": lo, "maxRunners": hi,
                 "image": "ghcr.io/actions/gha-runner-scale-set-controller:0.14.0"}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": f"{name}-listener-config"},
                                            "stringData": {"config.json": "{}"}})


def _ars(kube: Any, ns: str, name: str) -> dict[str, Any]:
    return kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", name)


def _caps(kube: Any, ns: str, name: str) -> tuple[int, int]:
    spec = _ars(kube, ns, name)["spec"]
    return int(spec.get("minRunners") or 0), int(spec["maxRunners"])


def _start(c: Any, ns: str, topo_path: Path, *extra: str) -> subprocess.Popen[str]:
    from flywheel_runtime import toolchain

    apply = f'{toolchain.kubectl()} --kubeconfig {c.kubeconfig} replace -f "$FLYWHEEL_APPLY_MANIFEST"'
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel_runtime", "managed-apply", "run", "--json", "--kubeconfig",
         str(c.kubeconfig), "--topology", str(topo_path), "--listener-namespace", ns, "--interval", "0.5",
         "--apply-command", apply,
         "--settle-timeout", "2", "--prove-deadline", "60",
         # The listeners here are minutes old at most: inside the grace window they may still follow.
         "--prove-grace", "60", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(what: str, probe: Any, timeout: float = 60, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"managed-apply exited {proc.returncode} before {what}: {err[-2000:]} {out[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _frozen(kube: Any, ns: str) -> bool:
    return _caps(kube, ns, "tinyland-nix")[1] == 0 and _caps(kube, ns, "tinyland-nix-compute-expansion")[1] == 0


def test_busy_runners_drain_then_apply_restores_caps_and_proves(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("mapply") as ns:
        topo_path = topology_in(c.topology, ns, tmp_path)
        _world(c.kube, ns, topo_path)
        snap = tmp_path / "caps.json"
        # The plan view changes nothing.
        out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "managed-apply", "plan", "--json",
                              "--kubeconfig", str(c.kubeconfig), "--topology", str(topo_path)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        view = json.loads(out.stdout)
        assert view["plan"]["frozen"] == [f"{ns}/tinyland-nix", f"{ns}/tinyland-nix-compute-expansion"]
        assert next(s for s in view["steps"] if s["step"] == "scope")["busy_runners"] == [f"{ns}/nix-busy"]
        assert _caps(c.kube, ns, "tinyland-nix") == (0, 10)

        proc = _start(c, ns, topo_path, "--drain-timeout", "60", "--snapshot", str(snap))
        _wait("the freeze", lambda: _frozen(c.kube, ns), proc=proc)
        time.sleep(2)
        assert proc.poll() is None, "it must wait for the busy runner"
        # The job ends: ARC deletes the ephemeral runner and the set goes to zero.
        c.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ephemeralrunners", "nix-busy")
        c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "ephemeralrunnersets", "nix-ers",
                                                     {"spec": {"replicas": 0}})
        c.kube.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "autoscalingrunnersets",
                                                            "tinyland-nix", {"status": {"currentRunners": 0}})
        # ARC's part after the apply: the listeners follow the restored caps.
        # The topology's caps: maxRunners 16, and the warm pool's minRunners for this hour.
        import datetime as dt

        from flywheel_runtime.audit.warmpool import scale_set_min_runners

        warm = scale_set_min_runners(c.topology.scale_set("tinyland-nix"), dt.datetime.now(dt.timezone.utc))
        _wait("caps restored from the topology", lambda: _caps(c.kube, ns, "tinyland-nix") == (warm, 16), proc=proc)
        for name, (lo, hi) in (("tinyland-nix", (warm, 16)), ("tinyland-nix-compute-expansion", (0, 8))):
            c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "autoscalinglisteners",
                                                         f"{name}-listener", {"spec": {"minRunners": lo,
                                                                                       "maxRunners": hi}})
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        report = json.loads(stdout)
        assert report["result"] == "applied"
        assert [s["step"] for s in report["steps"]] == ["scope", "reap", "snapshot", "freeze", "drain", "guard",
                                                        "apply", "restore", "prove"]
        assert json.loads(snap.read_text())[f"{ns}/tinyland-nix"] == {"maxRunners": 10, "minRunners": 0}
        assert _caps(c.kube, ns, "tinyland-nix-compute-expansion") == (0, 8)
        applied = next(s for s in report["steps"] if s["step"] == "apply")["applied"]
        assert applied == [f"update {ns}/tinyland-nix (--apply-command)"]
        fields = _ars(c.kube, ns, "tinyland-nix")["metadata"]["managedFields"]
        # the caps were written by the procedure's own field manager; nothing took fields by server-side apply
        assert any(m["manager"] == "flywheel-managed-apply" and "f:maxRunners" in json.dumps(m["fieldsV1"])
                   for m in fields), fields
        assert all(m.get("operation") != "Apply" for m in fields), fields


def test_drain_that_times_out_restores_the_snapshot(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("mapply") as ns:
        topo_path = topology_in(c.topology, ns, tmp_path)
        _world(c.kube, ns, topo_path)
        proc = _start(c, ns, topo_path, "--drain-timeout", "3")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 13, stderr
        assert stderr.strip().splitlines()[-1] == (
            f"flywheel-runtime: 1 shared runner(s) still busy after the 3s drain window (e.g. {ns}/nix-busy); "
            "caps restored from the snapshot, nothing applied")
        assert json.loads(stdout)["result"] == "rolled back"
        assert _caps(c.kube, ns, "tinyland-nix") == (0, 10)
        assert _caps(c.kube, ns, "tinyland-nix-compute-expansion") == (0, 8)


def test_an_interrupted_run_restores_the_snapshot(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("mapply") as ns:
        topo_path = topology_in(c.topology, ns, tmp_path)
        _world(c.kube, ns, topo_path)
        proc = _start(c, ns, topo_path, "--drain-timeout", "120")
        _wait("the freeze", lambda: _frozen(c.kube, ns), proc=proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 15, stderr
        assert stderr.strip().splitlines()[-1] == (
            "flywheel-runtime: managed apply interrupted by SIGTERM; caps restored from the snapshot")
        assert json.loads(stdout)["result"] == "rolled back"
        assert _caps(c.kube, ns, "tinyland-nix") == (0, 10)


def test_a_plan_changed_under_the_apply_is_refused_and_rolled_back(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("mapply") as ns:
        topo_path = topology_in(c.topology, ns, tmp_path)
        _world(c.kube, ns, topo_path)
        proc = _start(c, ns, topo_path, "--drain-timeout", "60")
        _wait("the freeze", lambda: _frozen(c.kube, ns), proc=proc)
        # Someone edits another set while the shared lane drains; then the job ends.
        c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "autoscalingrunnersets", "tinyland-nix-gpu",
                                                     {"spec": {"maxRunners": 3}})
        c.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ephemeralrunners", "nix-busy")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 14, stderr
        assert stderr.strip().splitlines()[-1] == (
            "flywheel-runtime: refused: the live scale sets changed under the managed apply (fresh plan 2 change(s), "
            "scoped 1); caps restored from the snapshot")
        assert json.loads(stdout)["result"] == "rolled back"
        assert _caps(c.kube, ns, "tinyland-nix") == (0, 10)
        assert _caps(c.kube, ns, "tinyland-nix-gpu")[1] == 3  # not ours to undo


def test_it_refuses_to_run_from_a_lane_it_quiesces(flywheel_cluster, tmp_path) -> None:
    c = flywheel_cluster
    with c.namespace("mapply") as ns:
        topo_path = topology_in(c.topology, ns, tmp_path)
        _world(c.kube, ns, topo_path)
        proc = _start(c, ns, topo_path, "--runs-on", "tinyland-nix")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 16, stderr
        assert stderr.strip().splitlines()[-1] == (
            "flywheel-runtime: managed apply runs on tinyland-nix, a lane it would quiesce; run it from "
            "tinyland-nix-operator or tinyland-nix-heavy")
        assert _caps(c.kube, ns, "tinyland-nix") == (0, 10)
