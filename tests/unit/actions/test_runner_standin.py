"""The test-only runner stand-in (tests/e2e/runner_standin/actions_runner.py) on the host against the double.

What it does in a runner pod: take its job with its JIT config, report it started on its
node, run the job hooks (the images' wrappers over `flywheel-runtime hook`) around the
job's script, report completion, wait while the job is held, and exit 0, never 7.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel_runtime.actions import ActionsDouble
from tests.unit.actions.wire import Admin, messages

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / "tests" / "e2e" / "runner_standin" / "actions_runner.py"
HOOKS = REPO / "images" / "hooks"
CLI = str(Path(sys.executable).with_name("flywheel-runtime"))


def _env(tmp_path: Path, jit: str, lane: str = "tinyland-nix", **extra: str) -> dict[str, str]:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "GITHUB_", "ACTIONS_", "RUNNER_"))}
    env.update({
        "ACTIONS_RUNNER_INPUT_JITCONFIG": jit, "NODE_NAME": "honey",
        "ACTIONS_RUNNER_HOOK_JOB_STARTED": str(HOOKS / "job-started.sh"),
        "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": str(HOOKS / "job-completed.sh"),
        "FLYWHEEL_RUNTIME_BIN": CLI, "FLYWHEEL_SCALE_SET": lane, "FLYWHEEL_ROOT": str(root),
        "FLYWHEEL_NODE_NAME": "honey", "FLYWHEEL_STANDIN_WORK": str(tmp_path / "work"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    })
    env.update(extra)
    return env


def _standin(env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(STANDIN)], env=env, capture_output=True, text=True, timeout=120, **kw)


def _result(out: str) -> dict:
    last = out.strip().splitlines()[-1]
    assert last.startswith("standin: result "), out
    return json.loads(last.removeprefix("standin: result "))


def test_runs_its_job_with_the_hooks_and_reports_it(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    s = admin.scale_set("tinyland-nix")
    sess = admin.session(s["id"])
    marker = tmp_path / "ran"
    [job] = double.queue("tinyland-nix", script=f'echo "$FLYWHEEL_NODE $FLYWHEEL_KVM $PWD" > {marker}')
    cfg = admin.jit(s["id"], "tinyland-nix-xyz-runner-1")
    out = _standin(_env(tmp_path, cfg["encodedJITConfig"]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert _result(out.stdout) == {"job_id": job["id"], "started": 0, "job": 0, "completed": 0, "result": "succeeded"}
    # the job's script ran in the workspace, with what job-started published through GITHUB_ENV
    node, kvm, cwd = marker.read_text().split()
    assert (node, kvm, cwd) == ("honey", "0", str(tmp_path / "work" / "repo" / "repo"))
    assert "flywheel: hints published" in out.stderr and "flywheel: job ran" in out.stderr
    done = double.jobs()[0]
    assert (done["state"], done["runner"], done["node"], done["result"]) == (
        "completed", "tinyland-nix-xyz-runner-1", "honey", "succeeded")
    entries = messages(sess)
    assert [e["messageType"] for e in entries] == ["JobAssigned", "JobStarted", "JobCompleted"]
    assert entries[1]["runnerId"] == cfg["runner"]["id"]


def test_a_failing_job_is_reported_failed_and_still_exits_0(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    s = admin.scale_set("tinyland-nix-kvm")
    double.queue("tinyland-nix-kvm", script="true")
    # the kvm lane's job-started hook refuses the job: this root has no /dev/kvm
    out = _standin(_env(tmp_path, admin.jit(s["id"], "kvm-runner")["encodedJITConfig"], lane="tinyland-nix-kvm"))
    assert out.returncode == 0, out.stdout + out.stderr
    res = _result(out.stdout)
    assert (res["started"], res["job"], res["result"]) == (6, -1, "failed")
    assert double.jobs()[0]["result"] == "failed"


@pytest.mark.parametrize(("asked", "exits"), [("3", 3), ("7", 1)])
def test_a_job_asks_its_runner_to_exit_non_zero_through_github_env(double: ActionsDouble, admin: Admin,
                                                                   tmp_path: Path, asked: str, exits: int) -> None:
    s = admin.scale_set("tinyland-nix")
    double.queue("tinyland-nix", script=f'echo "FLYWHEEL_STANDIN_EXIT={asked}" >> "$GITHUB_ENV"')
    out = _standin(_env(tmp_path, admin.jit(s["id"], "failing-runner")["encodedJITConfig"]))
    assert out.returncode == exits, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("standin: result "))
    assert json.loads(line.removeprefix("standin: result "))["result"] == "succeeded"  # the job passed; the runner fails


def test_a_stalling_runner_holds_its_job_unstarted_and_its_removal_is_refused(double: ActionsDouble, admin: Admin,
                                                                             tmp_path: Path) -> None:
    import time

    s = admin.scale_set("tinyland-nix")
    double.queue("tinyland-nix", script="#standin: stall-before-start 4\ntrue")
    cfg = admin.jit(s["id"], "stalling-runner")
    proc = subprocess.Popen([sys.executable, str(STANDIN)], env=_env(tmp_path, cfg["encodedJITConfig"]),
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while double.jobs()[0]["runner"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert double.jobs()[0]["state"] == "assigned"  # taken, not started
    r = admin("DELETE", f"_apis/distributedtask/pools/0/agents/{cfg['runner']['id']}")
    assert (r.status, r.body["typeName"]) == (400, "JobStillRunningException")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stalling 4 s before reporting it started" in out
    assert double.jobs()[0]["state"] == "completed"


def test_a_held_job_keeps_the_runner_until_released(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    s = admin.scale_set("tinyland-docker")
    [job] = double.queue("tinyland-docker", hold=True)
    cfg = admin.jit(s["id"], "docker-runner")
    proc = subprocess.Popen([sys.executable, str(STANDIN)], env=_env(tmp_path, cfg["encodedJITConfig"], lane="tinyland-docker"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while double.service.job(job["id"])["state"] != "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None
        removal = admin("DELETE", f"_apis/distributedtask/pools/0/agents/{cfg['runner']['id']}")
        assert removal.status == 400 and removal.body["typeName"] == "JobStillRunningException"
        deadline = time.monotonic() + 60
        while double.service.job(job["id"])["reported_result"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert double.service.job(job["id"])["reported_result"] == "succeeded"
        assert proc.poll() is None  # reported, but the held job runs on
        double.release([job["id"]])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "is held by the service" in out and _result(out)["result"] == "succeeded"
    assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{cfg['runner']['id']}").status == 204


def test_a_removed_runner_exits_0_without_a_job(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    s = admin.scale_set("lane")
    cfg = admin.jit(s["id"], "idle-runner")
    assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{cfg['runner']['id']}").status == 204
    out = _standin(_env(tmp_path, cfg["encodedJITConfig"]))
    assert out.returncode == 0 and "standin: no job: runner idle-runner was removed" in out.stdout


@pytest.mark.parametrize(("asked", "exits"), [("3", 3), ("7", 1)])
def test_exit_code_is_the_one_asked_for_but_never_7(double: ActionsDouble, admin: Admin, tmp_path: Path,
                                                   asked: str, exits: int) -> None:
    s = admin.scale_set("lane")
    cfg = admin.jit(s["id"], "r")
    admin("DELETE", f"_apis/distributedtask/pools/0/agents/{cfg['runner']['id']}")
    out = _standin(_env(tmp_path, cfg["encodedJITConfig"], FLYWHEEL_STANDIN_EXIT=asked))
    assert out.returncode == exits
    assert ("runner outdated" in out.stdout or "outdated" in out.stdout) == (asked == "7")


def test_without_a_jit_config_it_fails_plainly(tmp_path: Path) -> None:
    env = _env(tmp_path, "")
    out = _standin(env)
    assert out.returncode == 1 and "no ACTIONS_RUNNER_INPUT_JITCONFIG" in out.stdout
