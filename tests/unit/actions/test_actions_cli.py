"""``flywheel-runtime actions ...``: queue, jobs, release against a double; how the double is found; serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.actions import ActionsDouble, state_file, write_state
from flywheel_runtime.cli import main
from tests.unit.actions.wire import authenticate

FIELDS = ["id", "label", "state", "runner", "node", "queued_at", "assigned_at", "started_at", "completed_at"]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(autouse=True)
def _no_ambient_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FLYWHEEL_ACTIONS_URL", raising=False)


def test_queue_jobs_release(double: ActionsDouble, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "actions", "queue", "tinyland-nix", "--count", "2", "--hold", "--url", double.url)
    assert rc == 0 and out.split() == ["1", "2"]
    rc, out, _ = _cli(capsys, "actions", "queue", "tinyland-dind", "--json", "--url", double.url)
    [job] = json.loads(out)
    assert rc == 0 and job["id"] == 3 and job["state"] == "queued" and set(FIELDS) <= set(job)

    rc, out, _ = _cli(capsys, "actions", "jobs", "--url", double.url)
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == FIELDS and len(lines) == 4
    assert lines[1].split()[:5] == ["1", "tinyland-nix", "queued", "-", "-"]
    rc, out, _ = _cli(capsys, "actions", "jobs", "--json", "--url", double.url)
    assert [j["id"] for j in json.loads(out)] == [1, 2, 3] and json.loads(out)[0]["held"] is True

    rc, out, _ = _cli(capsys, "actions", "release", "1", "--url", double.url)
    assert rc == 0 and out.strip() == "1 queued"
    rc, out, _ = _cli(capsys, "actions", "release", "--all", "--url", double.url)
    assert rc == 0 and out.strip() == "2 queued"
    assert [j["held"] for j in double.jobs()] == [False, False, False]


def test_release_of_a_started_held_job_completes_it(double: ActionsDouble, capsys: pytest.CaptureFixture[str]) -> None:
    a = authenticate(double.url)
    s = a.scale_set("lane")
    [job] = double.queue("lane", hold=True)
    jit = a.jit(s["id"], "r")["encodedJITConfig"]
    double.service.acquire(jit, 0)
    double.service.started(jit, "honey")
    rc, out, _ = _cli(capsys, "actions", "release", str(job["id"]), "--json", "--url", double.url)
    [done] = json.loads(out)
    assert rc == 0 and (done["state"], done["result"], done["node"], done["runner"]) == ("completed", "canceled", "honey", "r")


def test_errors_are_one_line_with_their_exit_codes(double: ActionsDouble, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "actions", "release", "99", "--url", double.url)
    assert rc == 2 and err.strip().splitlines() == [f"flywheel-runtime: actions double {double.url}: no job 99"]
    rc, _, err = _cli(capsys, "actions", "queue", "x", "--count", "0", "--url", double.url)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(capsys, "actions", "jobs", "--url", "http://127.0.0.1:9")
    assert rc == 20 and err.startswith("flywheel-runtime: actions double at http://127.0.0.1:9 cannot be reached")
    assert len(err.strip().splitlines()) == 1


def test_found_by_env_then_state_file(double: ActionsDouble, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rc, _, err = _cli(capsys, "actions", "jobs")
    assert rc == 20 and "no actions double found" in err and str(state_file()) in err
    write_state(double.url, os.getpid())
    rc, out, _ = _cli(capsys, "actions", "queue", "lane")
    assert rc == 0 and out.strip() == "1"
    write_state(double.url, 2**22 + 12345)  # a pid no process has (above the default pid_max)
    rc, _, err = _cli(capsys, "actions", "jobs")
    assert rc == 20 and "is not running" in err
    monkeypatch.setenv("FLYWHEEL_ACTIONS_URL", double.url)  # the variable wins over the file
    rc, out, _ = _cli(capsys, "actions", "jobs", "--json")
    assert rc == 0 and len(json.loads(out)) == 1


def test_serve_records_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "FLYWHEEL_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("FLYWHEEL_ACTIONS_URL", None)
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "flywheel_runtime", "actions", "serve", "--log", str(log)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("actions double: http://127.0.0.1:"), first
        url = first.split()[2]
        recorded = json.loads((tmp_path / "cache" / "actions" / "double.json").read_text())
        assert recorded == {"url": url, "pid": proc.pid}
        q = subprocess.run([sys.executable, "-m", "flywheel_runtime", "actions", "queue", "tinyland-nix", "--count", "3"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert q.returncode == 0 and q.stdout.split() == ["1", "2", "3"], q.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0
    assert not (tmp_path / "cache" / "actions" / "double.json").exists()
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [("POST", "/_flywheel/jobs", 201)]


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path, double: ActionsDouble,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "actions", "serve", "--port", str(double.port), "--log", str(tmp_path / "l"))
    assert rc == 20 and err.startswith(f"flywheel-runtime: actions double cannot listen on 127.0.0.1:{double.port}")


def test_registered_once_and_light_to_import() -> None:
    from flywheel_runtime.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    actions = sub.choices["actions"]
    verbs = next(a for a in actions._actions if a.dest == "actions").choices
    assert set(verbs) == {"serve", "queue", "jobs", "release"}
    out = subprocess.run([sys.executable, "-c", "import sys, flywheel_runtime.actions._cli; "
                          "print(sorted(m for m in sys.modules if m.startswith('flywheel_runtime')))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "['flywheel_runtime', 'flywheel_runtime.actions', 'flywheel_runtime.actions._cli']"
