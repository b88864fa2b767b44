"""ARC in motion on kind: the real 0.14.0 controller and listeners, the real
charts with the project's rendered values, the Actions service double in the
cluster, each lane's own runner image with the test-only runner stand-in.

Needs the ARC controller image (``$FLYWHEEL_ARC_CONTROLLER_IMAGE``: a reference
in the harness's Docker engine or a docker archive); CI cannot build it (the
module proxy refuses ARC 0.14.0), so without it every test here skips with
that reason.  Runner envelopes are scaled to kind's nodes (this machine's
2 CPUs: :mod:`flywheel_runtime.harness.fit`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.topology import load

IMAGE = os.environ.get("FLYWHEEL_ARC_CONTROLLER_IMAGE", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.backend("kind", reason="ARC's controller, listeners and runners need real kubelets"),
    pytest.mark.skipif(not IMAGE, reason="needs the ARC 0.14.0 controller image: set FLYWHEEL_ARC_CONTROLLER_IMAGE "
                                         "to an image reference or a docker archive (CI cannot build it: the module "
                                         "proxy refuses ARC 0.14.0; with a registry: docker pull "
                                         "ghcr.io/actions/gha-runner-scale-set-controller:0.14.0)"),
]

STANDIN = Path(__file__).with_name("runner_standin") / "actions_runner.py"
STANDIN_CM = "flywheel-actions-runner-standin"
TOPO = load()
RUNNERS_NS = "arc-runners"
# What every job checks: the job-started hook published the hints into its environment.
JOB = r"""
echo "job: hints schema ${FLYWHEEL_HINTS_SCHEMA:?the job-started hook did not publish the hints}"
echo "job: lane=$FLYWHEEL_SCALE_SET node=$FLYWHEEL_NODE_NAME"
"""
FIGURES: dict[str, Any] = {}


def standin_values(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Test-only values on top of the rendered ones: the runner stand-in over /home/runner/run.sh."""
    from flywheel_runtime.harness.kind.arc import mount_over_run_sh

    return mount_over_run_sh(STANDIN_CM, "actions_runner.py")(name, values)


@dataclass
class Arc:
    c: Any  # the flywheel_cluster handle
    actions: Any  # ActionsClient at the double
    install: Any  # harness.kind.arc.ArcInstall

    @property
    def kube(self) -> Any:
        return self.c.kube

    def runners(self, scale_set: str | None = None) -> list[dict[str, Any]]:
        items = self.kube.list_arc("ephemeralrunners", RUNNERS_NS)
        if scale_set is None:
            return items
        return [r for r in items if r["metadata"]["labels"].get("actions.github.com/scale-set-name") == scale_set]

    def runner_set(self, scale_set: str) -> dict[str, Any]:
        sets = [s for s in self.kube.list_arc("ephemeralrunnersets", RUNNERS_NS)
                if s["metadata"]["labels"].get("actions.github.com/scale-set-name") == scale_set]
        assert len(sets) == 1, [s["metadata"]["name"] for s in sets]
        return sets[0]

    def release_reported(self, ids: list[int], timeout: float = 300) -> None:
        """Release every held job once each started one's runner has reported its result: a
        release before the report ends the job ``canceled`` (the double's rule), and a loaded
        machine can take longer than any fixed pause to run the hooks and the script."""
        self.wait_jobs(ids, lambda j: j["state"] != "started" or j.get("reported_result") is not None,
                       "every started job's result reported", timeout=timeout)
        self.actions.release(every=True)

    def wait_jobs(self, ids: list[int], pred: Callable[[dict[str, Any]], bool], what: str,
                  timeout: float = 300) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            jobs = [j for j in self.actions.jobs() if j["id"] in ids]
            return jobs if len(jobs) == len(ids) and all(pred(j) for j in jobs) else None

        return self.wait(check, timeout, what, ids)

    def wait(self, probe: Callable[[], Any], timeout: float, what: str, ids: list[int]) -> Any:
        """``wait_for`` that, on timeout, shows the jobs ``ids`` and :meth:`diagnose`."""
        from flywheel_runtime.kube import wait_for

        try:
            return wait_for(probe, timeout, what, interval=0.5)
        except Exception as exc:
            jobs = [j for j in self.actions.jobs() if j["id"] in ids]
            raise AssertionError(f"{exc}: {json.dumps(jobs)[:3000]}\n{self.diagnose()}") from None

    def at_min(self, scale_set: str, timeout: float = 180) -> None:
        """The set is back at minRunners: no EphemeralRunner beyond it, replicas at min."""
        from flywheel_runtime.kube import wait_for

        want = TOPO.scale_set(scale_set).min_runners
        ars = self.kube.get_arc("autoscalingrunnersets", RUNNERS_NS, scale_set)
        want = ars["spec"].get("minRunners", want) if ars else want
        wait_for(lambda: len(self.runners(scale_set)) == want and self.runner_set(scale_set)["spec"].get("replicas", 0)
                 == want, timeout, f"{scale_set} back at minRunners {want}", interval=1)
        # And their pods gone, not only the EphemeralRunners: a terminating pod still holds its
        # requests on the node, and the next test's runners (the heavy pair fills honey's
        # memory to the design's share) would wait behind it.
        wait_for(lambda: len(_lane_pods(self, scale_set)) == want, timeout,
                 f"{scale_set}'s runner pods down to {want}", interval=1)

    def diagnose(self) -> str:
        """What a failed wait leaves to read: runner and listener pods, each set's replicas,
        each EphemeralRunner's phase, and the double's view of its sets and sessions."""
        from flywheel_runtime.harness.kind.arc import listener_pods, pod_state

        pods = self.kube.core.list_namespaced_pod(RUNNERS_NS).items

        listeners = listener_pods(self.kube, TOPO.arc.controller.namespace)
        sets = {s["metadata"]["name"]: s["spec"].get("replicas") for s in self.kube.list_arc("ephemeralrunnersets",
                                                                                              RUNNERS_NS)}
        runners = {r["metadata"]["name"]: r.get("status", {}).get("phase") for r in self.runners()}
        try:
            double = json.dumps(self.actions.scale_sets())[:1500]
        except Exception as exc:  # the double itself may be what is wrong
            double = f"unreadable: {exc}"
        return (f"pods: {'; '.join(f'{p.metadata.name} {pod_state(p)} {p.spec.node_name}' for p in pods)[:3000]}\n"
                f"listeners: {'; '.join(f'{n} {why}' for n, why in sorted(listeners.items()))[:2000]}\n"
                f"ephemeralrunnersets replicas: {sets}\nephemeralrunners: {runners}\ndouble: {double}")


@pytest.fixture(scope="module")
def arc_env(flywheel_cluster: Any) -> Iterator[Arc]:
    from flywheel_runtime import toolchain
    from flywheel_runtime.actions import ActionsClient
    from flywheel_runtime.harness.kind import arc, engine

    c = flywheel_cluster
    c.kube.ensure_namespace(RUNNERS_NS)
    c.kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STANDIN_CM, "namespace": RUNNERS_NS},
                  "data": {"actions_runner.py": STANDIN.read_text()}})
    eng = engine.start(toolchain.cache_root())
    t0 = time.monotonic()
    result = arc.install(c._impl, eng, c.kube, c.topology, IMAGE, values_hook=standin_values,
                         log=lambda m: print(f"arc: {m}", flush=True))
    FIGURES["install"] = {**result.seconds, "total_s": round(time.monotonic() - t0, 1)}
    yield Arc(c, ActionsClient(result.double_url), result)
    out = _figures_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")


def _figures_file() -> Path:
    from flywheel_runtime import toolchain

    return toolchain.cache_root() / "bench" / "arc-motion-e2e.json"


@pytest.fixture()
def clean(arc_env: Arc) -> Iterator[Arc]:
    """Every test starts and ends with no held job left running."""
    yield arc_env
    arc_env.actions.release(every=True)


def _labels() -> list[str]:
    """Each workflow label a scale set is published for (its own ``label``), once."""
    return list(dict.fromkeys(ss.label for ss in TOPO.scale_sets))


@pytest.mark.parametrize("label", _labels())
def test_a_job_per_label_lands_where_the_design_says_and_the_set_returns_to_min(clean: Arc, label: str) -> None:
    a = clean
    (job,) = a.actions.queue(label, 1, False, JOB)
    (done,) = a.wait_jobs([job["id"]], lambda j: j["state"] == "completed", f"job {job['id']} ({label}) completed")
    lane = done["scale_set"]
    ss = TOPO.scale_set(lane)
    assert label in ss.labels
    assert done["node"] == ss.node, done  # where the runner reported it ran
    assert done["runner"], done
    if "dri" in ss.devices:
        # no GPU here: the job-started hook refuses the job, the runner still exits 0
        assert done["result"] == "failed", done
    else:
        assert done["result"] == "succeeded", done
    a.at_min(lane)
    FIGURES.setdefault("lanes", {})[label] = {
        "scale_set": lane, "node": done["node"],
        "queued_to_started_s": round(done["started_at"] - done["queued_at"], 2),
        "started_to_completed_s": round(done["completed_at"] - done["started_at"], 2)}


def test_a_burst_past_a_lane_cap_runs_exactly_max_runners_the_rest_wait(clean: Arc) -> None:
    a = clean
    lane = "tinyland-nix-operator"  # nothing else publishes its name: only this set takes these jobs
    cap = TOPO.scale_set(lane).max_runners
    ids = [j["id"] for j in a.actions.queue(lane, cap + 2, True, JOB)]
    a.wait(lambda: sum(j["state"] == "started" for j in a.actions.jobs() if j["id"] in ids) == cap, 240,
           f"{cap} of {lane}'s jobs started", ids)
    time.sleep(5)  # long enough for an over-cap runner to show up if the cap leaked
    now = [j for j in a.actions.jobs() if j["id"] in ids]
    assert sum(j["state"] == "started" for j in now) == cap, now
    assert sum(j["state"] == "queued" for j in now) == len(ids) - cap, now
    assert len(a.runners(lane)) == cap
    # Released: the started ones complete, the waiting ones lose their hold and run in turn.
    a.release_reported(ids)
    done = a.wait_jobs(ids, lambda j: j["state"] == "completed", "every burst job completed", timeout=600)
    assert all(j["result"] == "succeeded" for j in done), done
    a.at_min(lane)


def test_two_overlays_sets_with_one_label_each_hold_their_own_cap(clean: Arc) -> None:
    a = clean
    label = "tinyland-nix-heavy"
    sets = [ss for ss in TOPO.scale_sets if label in ss.labels]
    assert {ss.overlay for ss in sets} == {"tinyland", "jess"}
    caps = {ss.name: ss.max_runners for ss in sets}
    jobs = a.actions.queue(label, sum(caps.values()) + 2, True, JOB)
    ids = [j["id"] for j in jobs]
    a.wait(lambda: sum(j["state"] == "started" for j in a.actions.jobs() if j["id"] in ids) == sum(caps.values()),
           300, f"{sum(caps.values())} heavy jobs started", ids)
    time.sleep(5)
    now = [j for j in a.actions.jobs() if j["id"] in ids]
    per_set = {name: sum(1 for j in now if j["state"] == "started" and j["scale_set"] == name) for name in caps}
    assert per_set == caps, now
    assert sum(j["state"] == "queued" for j in now) == 2
    for name in caps:
        assert len(a.runners(name)) == caps[name]
    a.release_reported(ids)
    done = a.wait_jobs(ids, lambda j: j["state"] == "completed", "every heavy job completed", timeout=600)
    assert all(j["result"] == "succeeded" for j in done), done
    for name in caps:
        a.at_min(name)


def _job_from_cronjob(a: Arc, cronjob: str, namespace: str, extra_args: list[str]) -> str:
    """A Job made from a rendered CronJob (as ``kubectl create job --from``), its args extended; waits for it."""
    from flywheel_runtime.kube import wait_for

    name = f"{cronjob[:40]}-{int(time.time())}"
    body = a.kube.to_dict(a.kube.batch.read_namespaced_cron_job(cronjob, namespace))
    spec = copy.deepcopy(body["spec"]["jobTemplate"]["spec"])
    container = spec["template"]["spec"]["containers"][0]
    container["args"] = [*container.get("args", []), *extra_args]
    a.kube.batch.create_namespaced_job(namespace, {"apiVersion": "batch/v1", "kind": "Job",
                                                   "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    wait_for(lambda: (j := a.kube.batch.read_namespaced_job(name, namespace)).status.succeeded
             or j.status.failed, 240, f"Job {name}", interval=1)
    logs = a.c.kubectl("logs", "-n", namespace, f"job/{name}")
    assert a.kube.batch.read_namespaced_job(name, namespace).status.succeeded, logs
    return logs


def test_warm_pool_keeps_one_idle_runner_a_job_takes_it_off_hours_returns_to_zero(clean: Arc) -> None:
    from flywheel_runtime.kube import wait_for

    a = clean
    lane = "tinyland-nix"
    ss = TOPO.scale_set(lane)
    assert ss.warm_pool is not None
    on = next(s for s in ss.warm_pool.schedules if s.min_runners == 1)
    off = next(s for s in ss.warm_pool.schedules if s.min_runners == 0)
    # Each Job evaluates the schedule at an instant inside its own window (the test
    # cannot wait for 13:00 on a weekday): business hours on a Tuesday 13:01, off hours 01:01.
    _job_from_cronjob(a, f"{lane}-warm-pool-min{on.min_runners}", ss.namespace, ["--now", "2026-12-08T13:01:00Z"])
    wait_for(lambda: (r := a.runners(lane)) and len(r) == 1 and r[0].get("status", {}).get("phase") == "Running",
             300, f"one idle warm runner on {lane}", interval=1)
    (idle,) = a.runners(lane)
    pod = a.kube.core.read_namespaced_pod(idle["metadata"]["name"], RUNNERS_NS)
    assert pod.spec.node_name == ss.node
    t0 = time.time()
    (job,) = a.actions.queue(lane, 1, False, JOB)
    (done,) = a.wait_jobs([job["id"]], lambda j: j["state"] == "completed", "the warm-pool job completed")
    assert done["runner"] == idle["metadata"]["name"], done  # the idle runner took it
    FIGURES["warm_pool"] = {"queued_to_started_s": round(done["started_at"] - done["queued_at"], 2),
                            "queue_call_to_started_s": round(done["started_at"] - t0, 2)}
    # min 1 stays: a fresh idle runner replaces the one the job used
    wait_for(lambda: (r := a.runners(lane)) and len(r) == 1 and r[0]["metadata"]["name"] != idle["metadata"]["name"],
             300, "a new warm runner", interval=1)
    _job_from_cronjob(a, f"{lane}-warm-pool-min{off.min_runners}", ss.namespace, ["--now", "2026-12-08T01:01:00Z"])
    a.at_min(lane)
    ars = a.kube.get_arc("autoscalingrunnersets", RUNNERS_NS, lane)
    assert ars["spec"]["minRunners"] == 0


def _lane_pods(a: Arc, lane: str) -> list[Any]:
    return [p for p in a.kube.core.list_namespaced_pod(RUNNERS_NS).items
            if (p.metadata.labels or {}).get("actions.github.com/scale-set-name") == lane]


def test_a_runner_pod_deleted_mid_job_and_a_runner_exiting_non_zero_then_cleanup_frees_the_slots(clean: Arc) -> None:
    import datetime as dt

    from flywheel_runtime.kube import wait_for

    a = clean
    lane = "tinyland-nix-operator"
    node = TOPO.scale_set(lane).node
    a.at_min(lane)
    before = len([p for p in a.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
                  if p.status.phase not in ("Succeeded", "Failed")])
    seen: dict[str, Any] = {}

    # 1. the runner pod deleted while its job runs
    (held,) = a.actions.queue(lane, 1, True, "sleep 600")
    (job,) = a.wait_jobs([held["id"]], lambda j: j["state"] == "started", "the held job started")
    runner = job["runner"]
    wait_for(lambda: (a.kube.get_arc("ephemeralrunners", RUNNERS_NS, runner) or {}).get("status", {}).get("jobId"),
             60, "the listener to record the job on the EphemeralRunner", interval=0.5)
    a.kube.core.delete_namespaced_pod(runner, RUNNERS_NS)
    # ARC deletes the EphemeralRunner (its job was recorded), but its finalizer waits
    # for the service: RemoveRunner answers JobStillRunning while the job is held.
    wait_for(lambda: ((a.kube.get_arc("ephemeralrunners", RUNNERS_NS, runner) or {}).get("metadata") or {})
             .get("deletionTimestamp"), 120, f"ARC to delete EphemeralRunner {runner}", interval=1)
    time.sleep(5)
    assert a.kube.get_arc("ephemeralrunners", RUNNERS_NS, runner) is not None  # held by its finalizer
    still = [r for r in a.actions.requests() if "/agents/" in r.get("path", "") and r.get("status") == 400]
    seen["pod_deleted_mid_job"] = {"runner_deleting_while_job_held": True, "removal_refusals": len(still)}
    (released,) = a.actions.release([held["id"]])
    assert released["state"] == "completed" and released["result"] == "canceled", released
    t0 = time.monotonic()
    wait_for(lambda: a.kube.get_arc("ephemeralrunners", RUNNERS_NS, runner) is None, 90,
             f"EphemeralRunner {runner} gone once the service let it go", interval=1)
    seen["pod_deleted_mid_job"]["gone_after_release_s"] = round(time.monotonic() - t0, 1)

    # 2. a runner whose process exits non-zero after its job
    (failing,) = a.actions.queue(lane, 1, False, 'echo "FLYWHEEL_STANDIN_EXIT=3" >> "$GITHUB_ENV"')
    (done,) = a.wait_jobs([failing["id"]], lambda j: j["state"] == "completed", "the failing runner's job")
    wait_for(lambda: a.kube.get_arc("ephemeralrunners", RUNNERS_NS, done["runner"]) is None, 240,
             f"ARC to delete EphemeralRunner {done['runner']} after exit 3", interval=1)
    seen["runner_exit_3"] = "EphemeralRunner deleted (job recorded)"
    left = [p.metadata.name for p in _lane_pods(a, lane)]
    seen["lane_pods_after_arc"] = left

    # 3. the cleanup CronJob's Job, evaluated late enough that anything left is past its threshold
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    logs = _job_from_cronjob(a, "runner-cleanup", RUNNERS_NS, ["--now", later])
    seen["cleanup"] = logs.strip().splitlines()[-3:]
    wait_for(lambda: not _lane_pods(a, lane), 120, f"no {lane} runner pod left", interval=1)
    a.at_min(lane)
    after = len([p for p in a.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
                 if p.status.phase not in ("Succeeded", "Failed")])
    assert after <= before, (before, after)
    FIGURES["failures"] = seen


# -- the operator tools against the live controller --------------------------------------------------


def _cli(a: Arc, *argv: str, timeout: float = 300) -> tuple[int, Any, str]:
    from tests.e2e.audit_helpers import cli

    return cli(*argv, "--kubeconfig", str(a.c.kubeconfig), timeout=timeout)


def _listener(a: Arc, scale_set: str) -> dict[str, Any] | None:
    found = [x for x in a.kube.list_arc("autoscalinglisteners", ARC_NS)
             if x["spec"]["autoscalingRunnerSetName"] == scale_set and not x["metadata"].get("deletionTimestamp")]
    return found[0] if found else None


def _caps(a: Arc, scale_set: str) -> dict[str, int]:
    spec = a.kube.get_arc("autoscalingrunnersets", RUNNERS_NS, scale_set)["spec"]
    return {"minRunners": int(spec.get("minRunners") or 0), "maxRunners": int(spec["maxRunners"])}


def _set_caps(a: Arc, scale_set: str, **caps: int) -> None:
    a.kube.patch_arc("autoscalingrunnersets", RUNNERS_NS, scale_set, {"spec": caps}, field_manager="e2e")


def _restored(a: Arc, scale_set: str) -> None:
    from flywheel_runtime.kube import wait_for

    ss = TOPO.scale_set(scale_set)
    _set_caps(a, scale_set, minRunners=ss.min_runners, maxRunners=ss.max_runners)
    wait_for(lambda: (lst := _listener(a, scale_set)) is not None and lst["spec"].get("maxRunners") == ss.max_runners
             and int(lst["spec"].get("minRunners") or 0) == ss.min_runners, 120, f"{scale_set}'s listener back",
             interval=1)


ARC_NS = TOPO.arc.namespace if TOPO.arc else "arc-systems"


def test_reaper_finds_the_runner_arc_leaks_while_the_service_says_job_still_running(clean: Arc) -> None:
    from flywheel_runtime.kube import wait_for

    a = clean
    lane, warm = "tinyland-nix-operator", "tinyland-nix"
    try:
        # A warm pool beside it: one idle runner at desired, which the reaper must leave alone.
        _set_caps(a, warm, minRunners=1)
        wait_for(lambda: len(a.runners(warm)) == 1 and a.runners(warm)[0].get("status", {}).get("phase") == "Running",
                 240, "the warm runner", interval=1)
        (warm_runner,) = a.runners(warm)
        # A runner that took its job and hangs before starting it: ARC sees no job on it,
        # the service counts the job as running.
        (job,) = a.actions.queue(lane, 1, False, "#standin: stall-before-start 150\ntrue")
        (taken,) = a.wait_jobs([job["id"]], lambda j: j["runner"] is not None, "the runner to take its job")
        assert taken["state"] == "assigned"
        leaked = taken["runner"]
        # The lane scaled to zero: ARC asks the service to remove the idle runner and is refused.
        _set_caps(a, lane, maxRunners=0)
        wait_for(lambda: int(a.runner_set(lane)["spec"].get("replicas") or 0) == 0, 120, f"{lane}'s runner set at 0",
                 interval=1)
        agent = f"/agents/{a.kube.get_arc('ephemeralrunners', RUNNERS_NS, leaked)['status']['runnerId']}"
        wait_for(lambda: any(r.get("status") == 400 and r.get("path", "").split("?")[0].endswith(agent)
                             for r in a.actions.requests()), 120, "ARC's removal refused with JobStillRunning",
                 interval=1)
        er = a.kube.get_arc("ephemeralrunners", RUNNERS_NS, leaked)
        assert er is not None and not er["metadata"].get("deletionTimestamp")  # leaked: ARC keeps it, idle

        rc, out, err = _cli(a, "reap", "leaked-runners", "--namespace", RUNNERS_NS, "--apply", "--json",
                            "--settle-timeout", "10")
        assert {(x["name"], x["reason"]) for x in out["leaks"]} == {(leaked, "owner-at-zero")}, out
        assert warm_runner["metadata"]["name"] not in json.dumps(out["leaks"])
        verdicts = {s["scale_set"]: s["verdict"] for s in out["sets"]}
        assert verdicts[warm] == "warm pool at desired: untouchable", verdicts
        # Deleted, but its deletion waits for the service: still there when the bounded wait ends.
        assert rc == 13 and out["unsettled"] == [f"{RUNNERS_NS}/{leaked}"], (rc, err)
        assert a.kube.get_arc("ephemeralrunners", RUNNERS_NS, leaked)["metadata"].get("deletionTimestamp")
        assert a.kube.get_arc("ephemeralrunners", RUNNERS_NS, warm_runner["metadata"]["name"]) is not None
        # Once the runner ends its job, the service lets it go and ARC's finalizer completes.
        a.wait_jobs([job["id"]], lambda j: j["state"] == "completed", "the stalled job to end", timeout=300)
        wait_for(lambda: a.kube.get_arc("ephemeralrunners", RUNNERS_NS, leaked) is None, 120,
                 f"{leaked} gone once the service let it go", interval=1)
        FIGURES["reaper"] = {"leaked": leaked, "exit_while_service_holds": rc}
    finally:
        _restored(a, lane)
        _set_caps(a, warm, minRunners=TOPO.scale_set(warm).min_runners)
        a.at_min(warm)


def test_listener_prove_is_green_through_a_real_recreation_and_red_on_stable_drift(clean: Arc) -> None:
    a = clean
    lane = "tinyland-docker"
    prove = ["prove", "listener-caps", "--namespace", RUNNERS_NS, "--listener-namespace", ARC_NS, "--json"]
    before = _listener(a, lane)
    assert before is not None
    try:
        # 2026-06-09: a spec change makes the controller delete and recreate the listener.
        _set_caps(a, lane, maxRunners=TOPO.scale_set(lane).max_runners - 1)
        rc, out, err = _cli(a, *prove, "--grace", "30", "--deadline", "180", "--interval", "1")
        assert rc == 0, (out, err)
        after = _listener(a, lane)
        assert after["metadata"]["uid"] != before["metadata"]["uid"]  # a real recreation
        assert after["spec"]["maxRunners"] == TOPO.scale_set(lane).max_runners - 1
        _restored(a, lane)
        # A stable drift: the listener's caps changed behind the controller's back (it keys on hashes).
        lst = _listener(a, lane)
        a.kube.patch_arc("autoscalinglisteners", ARC_NS, lst["metadata"]["name"], {"spec": {"maxRunners": 3}},
                         field_manager="e2e")
        time.sleep(3)
        assert _listener(a, lane)["spec"]["maxRunners"] == 3  # nothing puts it back
        rc, out, err = _cli(a, *prove, "--grace", "2", "--deadline", "120", "--interval", "1")
        assert rc == 1, (out, err)
        assert lane in json.dumps(out) and "drift" in json.dumps(out)
    finally:
        lst = _listener(a, lane)
        if lst is not None and lst["spec"].get("maxRunners") == 3:
            a.kube.delete_arc("autoscalinglisteners", ARC_NS, lst["metadata"]["name"])
        _restored(a, lane)


def _controller(a: Arc, **flags: str) -> None:
    """helm upgrade of the controller release with these chart flags (rollout waited for)."""
    from flywheel_runtime.harness.kind import arc
    from flywheel_runtime.kube import wait_for

    values = arc.controller_values(TOPO, a.install.controller_image)
    if flags:
        values["flags"] = dict(flags)
    arc._install(a.c.kubeconfig, arc.CONTROLLER_RELEASE, arc.charts() / "gha-runner-scale-set-controller", ARC_NS,
                 values, "--wait", "--timeout", "5m")
    # `helm --wait` returns once the new pod is ready; the old one (the chart runs one replica,
    # no leader election) still reconciles with the old flags until it is gone.
    wait_for(lambda: len(pods := a.kube.core.list_namespaced_pod(
        ARC_NS, label_selector="app.kubernetes.io/part-of=gha-rs-controller").items) == 1
        and pods[0].metadata.deletion_timestamp is None or None, 120, "one controller pod, the new one", interval=1)


def test_a_missing_listener_with_active_runners_fails_the_proof(clean: Arc) -> None:
    """2026-05-15: the controller with ``--update-strategy=eventual`` deletes a set's listener on a
    spec change and holds its recreation while runners run: queued work has no listener."""
    from flywheel_runtime.kube import wait_for

    a = clean
    lane = "tinyland-nix-operator"
    _controller(a, updateStrategy="eventual")
    try:
        (held,) = a.actions.queue(lane, 1, True, JOB)
        a.wait_jobs([held["id"]], lambda j: j["state"] == "started", "the held job started")
        _set_caps(a, lane, maxRunners=TOPO.scale_set(lane).max_runners + 1)  # any spec change
        wait_for(lambda: _listener(a, lane) is None, 120, f"{lane}'s listener deleted", interval=1)
        time.sleep(5)
        assert _listener(a, lane) is None  # held while the runner runs
        rc, out, err = _cli(a, "prove", "listener-caps", "--namespace", RUNNERS_NS, "--listener-namespace", ARC_NS,
                            "--json", "--grace", "5", "--deadline", "90", "--interval", "1")
        assert rc == 1, (out, err)
        assert lane in json.dumps(out), out
        FIGURES["missing_listener_proof"] = {"exit": rc}
        a.actions.release([held["id"]])
        wait_for(lambda: _listener(a, lane) is not None, 240, f"{lane}'s listener once the runner drained",
                 interval=1)
    finally:
        a.actions.release(every=True)
        _controller(a)
        _restored(a, lane)
        a.at_min(lane)


def test_managed_apply_with_a_job_in_flight_goes_through_helm(clean: Arc, tmp_path: Path) -> None:
    """Quiesce, freeze, a bounded drain while the double holds the job, a guarded fresh
    plan, helm upgrade of the changed release, caps restored, listeners proven."""
    import threading

    from flywheel_runtime.audit import managed_apply as ma
    from flywheel_runtime.harness.kind import arc
    from flywheel_runtime.kube import wait_for

    a = clean
    lane = "tinyland-nix"
    hook = arc.kind_values(TOPO, a.kube, standin_values)
    # The live release at an older cap (10; the topology says 16): a helm upgrade, as a past apply left it.
    arc.install_scale_set(a.kube, a.c.kubeconfig, TOPO, lane,
                          lambda n, v: {**standin_values(n, v), "maxRunners": 10})
    wait_for(lambda: _caps(a, lane)["maxRunners"] == 10, 60, "the older cap", interval=1)
    wait_for(lambda: (lst := _listener(a, lane)) is not None and lst["spec"]["maxRunners"] == 10, 120,
             "the listener at the older cap", interval=1)
    (held,) = a.actions.queue(lane, 1, True, JOB)
    a.wait_jobs([held["id"]], lambda j: j["state"] == "started", "the job in flight")
    opts = ma.Options(listener_namespace=ARC_NS, drain_timeout_s=240, settle_timeout_s=30, interval_s=1,
                      prove_grace_s=30, prove_deadline_s=240, chart=arc.charts() / "gha-runner-scale-set",
                      values_hook=hook, snapshot_path=tmp_path / "caps.json")
    proc = ma.Procedure(a.kube, TOPO, opts)
    view = proc.plan_view()
    assert [(c.name, c.fields) for c in view.plan.changes] == [(lane, ("maxRunners",))], view.to_dict()
    seen: dict[str, Any] = {}

    def the_double_holds_the_job_then_lets_it_go() -> None:
        """Beside the procedure (which needs the main thread for its signal handlers)."""
        try:
            wait_for(lambda: _caps(a, lane)["maxRunners"] == 0, 180, "the freeze", interval=0.5)
            time.sleep(5)  # the drain waits: the double holds the job
            seen["frozen_caps"] = _caps(a, lane)
            seen["steps_while_held"] = [s["step"] for s in proc.last_report.steps]
        except Exception as exc:  # noqa: BLE001 - asserted below
            seen["error"] = repr(exc)
        finally:
            a.actions.release([held["id"]])

    t = threading.Thread(target=the_double_holds_the_job_then_lets_it_go, daemon=True)
    t.start()
    try:
        report = proc.run()
    except Exception as exc:
        try:  # the controller's own account of the listener it did (not) recreate
            logs = a.c.kubectl("logs", "-n", ARC_NS, "-l", "app.kubernetes.io/part-of=gha-rs-controller", "--tail=80")
        except Exception as log_exc:  # noqa: BLE001 - the failure above is the one to report
            logs = f"unreadable: {log_exc}"
        raise AssertionError(f"{exc}\n{ma.render_text(proc.last_report)}\n{a.diagnose()}\ncontroller:\n{logs}") from exc
    finally:
        t.join(timeout=300)
        a.actions.release(every=True)
    assert "error" not in seen, (seen, ma.render_text(proc.last_report))
    assert seen["frozen_caps"]["maxRunners"] == 0 and seen["steps_while_held"][-1] == "freeze", seen
    assert report.result == "applied", ma.render_text(report)
    assert [s["step"] for s in report.steps] == ["scope", "reap", "snapshot", "freeze", "drain", "guard", "apply",
                                                 "restore", "prove"]
    applied = next(s for s in report.steps if s["step"] == "apply")["applied"]
    assert applied == [f"update {RUNNERS_NS}/{lane} (helm upgrade)"]
    assert _caps(a, lane)["maxRunners"] == TOPO.scale_set(lane).max_runners
    ars = a.kube.get_arc("autoscalingrunnersets", RUNNERS_NS, lane)
    managers = {m["manager"]: m.get("operation") for m in ars["metadata"]["managedFields"]}
    assert ma.FIELD_MANAGER in managers and "helm" in managers, managers
    assert all(op != "Apply" for op in managers.values()), managers  # no server-side apply took fields from Helm
    history = json.loads(arc.helm(a.c.kubeconfig, "history", lane, "-n", RUNNERS_NS, "-o", "json"))
    assert history[-1]["status"] == "deployed" and len(history) >= 2
    FIGURES["managed_apply"] = {s["step"]: {k: v for k, v in s.items() if k in ("waited_s", "applied", "restored")}
                                for s in report.steps if s["step"] in ("drain", "apply", "restore")}
    a.at_min(lane)
