"""The managed apply against an in-memory cluster with an injected clock: every
step, every exit path, the rollback and the restore."""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import signal
from types import SimpleNamespace
from typing import Any

import pytest

from flywheel_runtime.audit import managed_apply as ma
from flywheel_runtime.errors import DeadlineError, ExitCode, FlywheelError
from flywheel_runtime.topology import load

NS, LNS = "arc-runners", "arc-systems"
OLD = dt.datetime(2026, 6, 9, 9, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 6, 9, 3, 0, tzinfo=dt.timezone.utc)  # outside business hours: warm pool min 0


class FakeCluster:
    """The audit Cluster's ARC surface over dicts, recording every write."""

    server = "https://fake"

    def __init__(self) -> None:
        self.objs: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            p: {} for p in ("autoscalingrunnersets", "ephemeralrunnersets", "ephemeralrunners",
                            "autoscalinglisteners")}
        self.secrets: dict[tuple[str, str], dt.datetime] = {}
        self.writes: list[tuple[str, str, Any]] = []
        self.core = SimpleNamespace(list_namespaced_secret=self._secrets)

    def _secrets(self, ns: str, **_: Any) -> Any:
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n, creation_timestamp=t))
                                      for (sns, n), t in self.secrets.items() if sns == ns])

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj["metadata"]
        m.setdefault("uid", f"uid-{m['name']}")
        m.setdefault("resourceVersion", "1")
        self.objs[plural][(m["namespace"], m["name"])] = obj
        return obj

    def list_arc(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (ns, _), o in sorted(self.objs[plural].items()) if namespace in (None, ns)]

    def get_arc(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        o = self.objs[plural].get((namespace, name))
        return copy.deepcopy(o) if o else None

    def patch_arc(self, plural: str, namespace: str, name: str, body: dict[str, Any], *,
                  field_manager: str | None = None) -> dict[str, Any]:
        assert field_manager == ma.FIELD_MANAGER  # never Helm's, never a default
        self.writes.append(("patch", name, copy.deepcopy(body)))
        self.objs[plural][(namespace, name)]["spec"].update(body["spec"])
        return self.objs[plural][(namespace, name)]

    def apply_arc(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("apply", body["metadata"]["name"], copy.deepcopy(body["spec"])))
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        old = self.objs["autoscalingrunnersets"].get(key, {})
        self.objs["autoscalingrunnersets"][key] = {**copy.deepcopy(body), "status": old.get("status", {})}
        return body

    def delete_arc(self, plural: str, namespace: str, name: str, *, resource_version: str | None = None) -> bool:
        self.writes.append(("delete", name, None))
        return self.objs[plural].pop((namespace, name), None) is not None


@pytest.fixture
def topo():
    return load()


def live_world(topo, *, busy: int = 1, max_old: int = 10) -> FakeCluster:
    """Every scale set live as rendered, except tinyland-nix's cap (10, topology 16),
    with ``busy`` runners of tinyland-nix on a job; listeners and secrets settled."""
    from flywheel_runtime.topology import render

    c = FakeCluster()
    for ss in topo.scale_sets:
        ars = render.autoscaling_runner_set(topo, ss.name)
        if ss.name == "tinyland-nix":
            ars["spec"]["maxRunners"] = max_old
        ars["status"] = {"currentRunners": busy if ss.name == "tinyland-nix" else 0}
        c.put("autoscalingrunnersets", ars)
        ers = {"metadata": {"namespace": NS, "name": f"{ss.name}-ers", "ownerReferences": [
            {"kind": "AutoscalingRunnerSet", "name": ss.name}]}, "spec": {"replicas": busy if ss.name ==
                                                                          "tinyland-nix" else 0}}
        c.put("ephemeralrunnersets", ers)
        lst = {"metadata": {"namespace": LNS, "name": f"{ss.name}-listener", "creationTimestamp": OLD.isoformat()},
               "spec": {"autoscalingRunnerSetNamespace": NS, "autoscalingRunnerSetName": ss.name,
                        "minRunners": ss.min_runners, "maxRunners": ars["spec"]["maxRunners"]}}
        c.put("autoscalinglisteners", lst)
        c.secrets[(LNS, f"{ss.name}-listener-config")] = OLD
    for i in range(busy):
        c.put("ephemeralrunners", {"metadata": {"namespace": NS, "name": f"tinyland-nix-runner-{i}", "ownerReferences": [
            {"kind": "EphemeralRunnerSet", "name": "tinyland-nix-ers"}]}, "spec": {},
            "status": {"jobId": f"job-{i}", "jobRequestId": 100 + i}})
    return c


def listeners_follow(c: FakeCluster) -> None:
    """What ARC does after an apply: listeners reflect their set's caps (the test's stand-in)."""
    for (_, name), ars in c.objs["autoscalingrunnersets"].items():
        lst = c.objs["autoscalinglisteners"].get((LNS, f"{name}-listener"))
        if lst is None:  # ARC never brought this one back
            continue
        lst["spec"]["maxRunners"] = ars["spec"]["maxRunners"]
        lst["spec"]["minRunners"] = ars["spec"].get("minRunners", 0)


class Clock:
    def __init__(self, c: FakeCluster, on_sleep=None) -> None:
        self.t, self.c, self.on_sleep, self.sleeps = 0.0, c, on_sleep, 0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self)
        listeners_follow(self.c)


def proc(c: FakeCluster, topo, clock: Clock, **kw: Any) -> ma.Procedure:
    opts = ma.Options(listener_namespace=LNS, drain_timeout_s=kw.pop("drain", 60), settle_timeout_s=5,
                      interval_s=1, prove_grace_s=0, prove_deadline_s=30, **kw)
    return ma.Procedure(c, topo, opts, clock=clock.clock, sleep=clock.sleep, now=lambda: NOW, applier=owner_apply)


def owner_apply(c: FakeCluster, topo, change: ma.Change, values: dict[str, Any], opts: ma.Options) -> str:
    """The set's owner (Helm, in the real thing) makes the chart's AutoscalingRunnerSet of ``values``."""
    from flywheel_runtime.topology import render

    c.apply_arc(render.autoscaling_runner_set(topo, change.name, values))
    return "owner"


def finish_jobs(c: FakeCluster) -> None:
    for r in c.objs["ephemeralrunners"].values():
        r["status"] = {}
    for key in list(c.objs["ephemeralrunners"]):
        del c.objs["ephemeralrunners"][key]
    c.objs["ephemeralrunnersets"][(NS, "tinyland-nix-ers")]["spec"]["replicas"] = 0
    c.objs["autoscalingrunnersets"][(NS, "tinyland-nix")]["status"]["currentRunners"] = 0


def caps(c: FakeCluster, name: str) -> tuple[int, int]:
    spec = c.objs["autoscalingrunnersets"][(NS, name)]["spec"]
    return spec["minRunners"], spec["maxRunners"]


# --- plan ----------------------------------------------------------------------


def test_plan_scopes_changed_sets_and_freezes_the_shared_label(topo) -> None:
    c = live_world(topo)
    p = ma.plan(topo, c.list_arc("autoscalingrunnersets"))
    assert [(ch.name, ch.action, ch.fields) for ch in p.changes] == [("tinyland-nix", "update", ("maxRunners",))]
    assert p.quiesced_labels == ["tinyland-nix"]
    # The whole shared label quiesces: its overflow set is frozen too.
    assert p.frozen == [(NS, "tinyland-nix"), (NS, "tinyland-nix-compute-expansion")]


def test_plan_ignores_a_warm_pools_min_runners_and_sees_template_drift(topo) -> None:
    c = live_world(topo, max_old=16)
    c.objs["autoscalingrunnersets"][(NS, "tinyland-nix")]["spec"]["minRunners"] = 1  # the warm pool's doing
    assert ma.plan(topo, c.list_arc("autoscalingrunnersets")).changes == []
    c.objs["autoscalingrunnersets"][(NS, "tinyland-nix-gpu")]["spec"]["template"]["spec"]["priorityClassName"] = "x"
    del c.objs["autoscalingrunnersets"][(NS, "tinyland-docker")]
    p = ma.plan(topo, c.list_arc("autoscalingrunnersets"))
    assert [(ch.name, ch.action, ch.fields) for ch in p.changes] == [
        ("tinyland-docker", "create", ()), ("tinyland-nix-gpu", "update", ("template",))]
    assert p.frozen == []  # docker is not live yet; gpu is not a shared lane


def test_plan_view_changes_nothing(topo) -> None:
    c = live_world(topo)
    report = proc(c, topo, Clock(c)).plan_view()
    assert c.writes == []
    assert report.result == "planned"
    steps = {s["step"]: s for s in report.steps}
    assert steps["scope"]["busy_runners"] == ["arc-runners/tinyland-nix-runner-0"]
    assert steps["freeze"]["would"] == {"arc-runners/tinyland-nix": {"maxRunners": 0, "minRunners": 0},
                                        "arc-runners/tinyland-nix-compute-expansion": {"maxRunners": 0,
                                                                                       "minRunners": 0}}
    assert steps["restore"]["would"]["arc-runners/tinyland-nix"] == {"maxRunners": 16, "minRunners": 0}
    assert report.snapshot["arc-runners/tinyland-nix"] == {"maxRunners": 10, "minRunners": 0}


# --- run -------------------------------------------------------------------------


def test_run_drains_applies_restores_from_topology_and_proves(topo, tmp_path) -> None:
    c = live_world(topo)

    def jobs_end(clk: Clock) -> None:
        if caps(c, "tinyland-nix") == (0, 0) and clk.sleeps >= 3:
            finish_jobs(c)

    clk = Clock(c, jobs_end)
    snap = tmp_path / "caps.json"
    report = proc(c, topo, clk, snapshot_path=snap).run()
    assert report.result == "applied" and report.exit_code == 0
    assert [s["step"] for s in report.steps] == ["scope", "reap", "snapshot", "freeze", "drain", "guard", "apply",
                                                 "restore", "prove"]
    writes = [(w[0], w[1]) for w in c.writes]
    assert writes == [("patch", "tinyland-nix"), ("patch", "tinyland-nix-compute-expansion"),
                      ("apply", "tinyland-nix"),
                      ("patch", "tinyland-nix"), ("patch", "tinyland-nix-compute-expansion")]
    # The apply kept the lane frozen; the restore took the caps from the topology, not the snapshot.
    assert c.writes[2][2]["maxRunners"] == 0
    assert caps(c, "tinyland-nix") == (0, 16) and caps(c, "tinyland-nix-compute-expansion") == (0, 8)
    assert report.snapshot["arc-runners/tinyland-nix"] == {"maxRunners": 10, "minRunners": 0}
    assert snap.read_text().startswith("{") and '"maxRunners": 10' in snap.read_text()
    drain = next(s for s in report.steps if s["step"] == "drain")
    assert drain["waited_s"] >= 3


def test_drain_timeout_rolls_back_to_the_snapshot_and_applies_nothing(topo) -> None:
    c = live_world(topo)
    with pytest.raises(DeadlineError) as err:
        proc(c, topo, Clock(c), drain=10).run()
    assert err.value.exit_code == ExitCode.TIMEOUT
    assert str(err.value) == ("1 shared runner(s) still busy after the 10s drain window (e.g. "
                              "arc-runners/tinyland-nix-runner-0); caps restored from the snapshot, nothing applied")
    assert "apply" not in [w[0] for w in c.writes]
    assert caps(c, "tinyland-nix") == (0, 10) and caps(c, "tinyland-nix-compute-expansion") == (0, 8)


def test_a_plan_that_changed_under_the_apply_is_refused(topo) -> None:
    c = live_world(topo)

    def someone_edits(clk: Clock) -> None:
        if caps(c, "tinyland-nix") == (0, 0):
            c.objs["autoscalingrunnersets"][(NS, "tinyland-nix-gpu")]["spec"]["maxRunners"] = 3
            finish_jobs(c)

    p = proc(c, topo, Clock(c, someone_edits))
    with pytest.raises(ma.PlanChangedError) as err:
        p.run()
    assert err.value.exit_code == ExitCode.PLAN_CHANGED == 14
    assert str(err.value) == ("refused: the live scale sets changed under the managed apply (fresh plan 2 "
                              "change(s), scoped 1); caps restored from the snapshot")
    assert p.last_report.result == "rolled back"
    assert caps(c, "tinyland-nix") == (0, 10)


def test_a_signal_restores_the_snapshot(topo) -> None:
    c = live_world(topo)

    def interrupt(clk: Clock) -> None:
        if caps(c, "tinyland-nix") == (0, 0):
            os.kill(os.getpid(), signal.SIGTERM)

    p = proc(c, topo, Clock(c, interrupt))
    with pytest.raises(ma.ApplyInterrupted) as err:
        p.run()
    assert err.value.exit_code == ExitCode.INTERRUPTED == 15
    assert str(err.value) == "managed apply interrupted by SIGTERM; caps restored from the snapshot"
    assert caps(c, "tinyland-nix") == (0, 10)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_it_refuses_to_run_from_a_lane_it_quiesces(topo) -> None:
    c = live_world(topo)
    with pytest.raises(ma.ScopeConflictError) as err:
        proc(c, topo, Clock(c), runs_on="tinyland-nix").run()
    assert err.value.exit_code == ExitCode.SCOPE_CONFLICT == 16
    assert str(err.value) == ("managed apply runs on tinyland-nix, a lane it would quiesce; run it from "
                              "tinyland-nix-operator or tinyland-nix-heavy")
    assert c.writes == []


def test_a_missing_listener_with_active_runners_fails_the_proof(topo) -> None:
    c = live_world(topo, busy=0)
    del c.objs["autoscalinglisteners"][(LNS, "tinyland-nix-listener")]
    # A runner still active on the set (not on a job of the frozen label: say a warm runner).
    c.objs["autoscalingrunnersets"][(NS, "tinyland-nix")]["status"]["currentRunners"] = 2
    p = proc(c, topo, Clock(c))
    with pytest.raises(FlywheelError) as err:
        p.run()
    assert err.value.exit_code == ExitCode.FAILED
    assert re.fullmatch(r"listener proof failed: arc-runners/tinyland-nix: stable drift: AutoscalingListener "
                        r"missing while 2 runner\(s\) are active for [0-9.]+s", str(err.value)), str(err.value)
    # The caps were restored from the topology before the proof, and stay so.
    assert caps(c, "tinyland-nix") == (0, 16)
    assert p.last_report.result == "proving"


def test_nothing_to_apply(topo) -> None:
    c = live_world(topo, busy=0, max_old=16)
    report = proc(c, topo, Clock(c)).run()
    assert (report.result, c.writes) == ("nothing to apply", [])


def test_the_default_apply_is_a_helm_upgrade_of_the_release_never_server_side_apply(topo, tmp_path) -> None:
    """The default applier runs helm (here a recording stand-in for the binary) with the chart and the
    set's values, caps frozen; no chart and no command is refused before anything is frozen."""
    import yaml

    log = tmp_path / "helm.log"
    fake = tmp_path / "helm"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nfor a; do case "$prev" in -f) cp "$a" {tmp_path}/values.yaml;; '
                    'esac; prev="$a"; done\n')
    fake.chmod(0o755)
    chart = tmp_path / "gha-runner-scale-set"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("name: gha-runner-scale-set\n")
    c = live_world(topo, busy=0)
    change = ma.Change(NS, "tinyland-nix", "tinyland-nix", "update", ("maxRunners",))
    values = {**ma.chart_values(topo, "tinyland-nix"), "maxRunners": 0, "minRunners": 0}
    opts = ma.Options(chart=chart, helm=str(fake))
    assert ma.apply_release(c, topo, change, values, opts) == "helm upgrade"
    args = log.read_text().split()
    assert args[:5] == ["upgrade", "--install", "tinyland-nix", str(chart), "-n"] and args[5] == NS
    assert yaml.safe_load((tmp_path / "values.yaml").read_text())["maxRunners"] == 0
    with pytest.raises(ma.FlywheelError, match="--chart DIR"):
        ma.check_apply(ma.Options())
    ma.check_apply(ma.Options(apply_command="true"))


def test_an_apply_command_gets_the_values_and_the_manifest_and_its_failure_rolls_back(topo, tmp_path) -> None:
    import yaml

    c = live_world(topo, busy=0)
    change = ma.Change(NS, "tinyland-nix", "tinyland-nix", "update", ("maxRunners",))
    values = ma.chart_values(topo, "tinyland-nix")
    out = tmp_path / "seen"
    cmd = f'cp "$FLYWHEEL_APPLY_MANIFEST" {out}; echo "$FLYWHEEL_APPLY_SCALE_SET $FLYWHEEL_APPLY_ACTION" > {out}.who'
    assert ma.apply_release(c, topo, change, values, ma.Options(apply_command=cmd)) == "--apply-command"
    assert yaml.safe_load(out.read_text())["kind"] == "AutoscalingRunnerSet"
    assert (tmp_path / "seen.who").read_text().split() == ["tinyland-nix", "update"]
    with pytest.raises(ma.FlywheelError, match="exit 3"):
        ma.apply_release(c, topo, change, values, ma.Options(apply_command="echo nope >&2; exit 3"))


def test_a_failed_restore_from_the_topology_falls_back_to_the_snapshot(topo) -> None:
    from flywheel_runtime.errors import ClusterError

    c = live_world(topo, busy=0)
    real_patch = c.patch_arc
    calls = {"n": 0}

    def flaky(plural, ns, name, body, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # freeze, freeze, then the first restore from the topology
            raise ClusterError("patching autoscalingrunnersets failed: HTTP 500")
        return real_patch(plural, ns, name, body, **kw)

    c.patch_arc = flaky  # type: ignore[method-assign]
    p = proc(c, topo, Clock(c))
    with pytest.raises(ClusterError):
        p.run()
    assert p.last_report.result == "rolled back"
    assert caps(c, "tinyland-nix") == (0, 10) and caps(c, "tinyland-nix-compute-expansion") == (0, 8)
