from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel_runtime.hooks.redact import REDACTED, name_is_secret, redact_text, redact_value, value_is_secret


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], env={**os.environ, **env},
                          capture_output=True, text=True, **kw)


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                                  "SSH_PRIVATE_KEY", "NPM_AUTH", "API_KEY", "DOCKER_CREDENTIALS"])
def test_secret_names_are_redacted(name) -> None:
    assert name_is_secret(name)
    assert redact_value(name, "harmless-looking") == REDACTED


@pytest.mark.parametrize("value", [
    "ghp_" + "a" * 36, "github_pat_11ABCDEFG0" + "x" * 40, "ghs_" + "B" * 36,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "AKIAIOSFODNN7EXAMPLE", "https://user:hunter2@example.com/repo.git", "-----BEGIN OPENSSH PRIVATE KEY-----",
])
def test_secret_values_are_redacted(value) -> None:
    assert value_is_secret(value)
    assert redact_value("HARMLESS", value) == REDACTED
    assert value not in redact_text(f"before {value} after")


@pytest.mark.parametrize("name,value", [("FLYWHEEL_NODE", "honey"), ("PATH", "/usr/bin:/bin"),
                                        ("KEYBOARD_LAYOUT", "us"), ("ATTIC_SERVER", "http://attic:8080")])
def test_ordinary_values_pass(name, value) -> None:
    assert redact_value(name, value) == value


def _job_env(tmp_path: Path, scale_set: str, root: Path | str) -> dict[str, str]:
    (tmp_path / "temp").mkdir(exist_ok=True)
    return {"FLYWHEEL_SCALE_SET": scale_set, "FLYWHEEL_ROOT": str(root), "RUNNER_TEMP": str(tmp_path / "temp"),
            "GITHUB_ENV": str(tmp_path / "github_env"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "FLYWHEEL_RUNNER_CLASS": "tinyland-nix-kvm", "FLYWHEEL_NODE_NAME": "honey",
            "GITHUB_TOKEN": "ghs_" + "S" * 36}


def test_job_started_on_kvm_lane_without_dev_kvm_refuses_the_job(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-kvm", root))
    assert out.returncode == 6
    lines = out.stderr.strip().splitlines()
    assert lines == ["flywheel-runtime: lane tinyland-nix-kvm declares kvm but this pod lacks kvm "
                     "(/dev/kvm does not exist (no KVM in this pod: host passthrough missing?)): refusing the job"]


@pytest.mark.kvm
def test_job_started_on_kvm_lane_with_real_kvm_publishes_hints(tmp_path: Path) -> None:
    env = _job_env(tmp_path, "tinyland-nix-kvm", "/")
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0, out.stderr
    published = dict(line.split("=", 1) for line in (tmp_path / "github_env").read_text().splitlines())
    assert published["FLYWHEEL_KVM"] == "1" and published["FLYWHEEL_NODE"] == "honey"
    summary = (tmp_path / "summary.md").read_text()
    assert "| KVM | yes (API 12) |" in summary
    everything = out.stdout + out.stderr + summary + (tmp_path / "github_env").read_text()
    assert env["GITHUB_TOKEN"] not in everything


def test_gpu_lane_without_render_node_refuses(tmp_path: Path) -> None:
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-gpu", "/"))
    assert out.returncode == 6
    assert "declares dri but this pod lacks dri (/dev/dri does not exist)" in out.stderr


def test_job_completed_records_duration_and_cleans_the_workspace(tmp_path: Path) -> None:
    work = tmp_path / "_work"
    ws = work / "repo" / "repo"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "f").write_text("x")
    (ws / "top").write_text("y")
    outside = tmp_path / "keep"
    outside.write_text("keep")
    (ws / "link").symlink_to(outside)
    env = {**_job_env(tmp_path, "tinyland-nix", "/"), "GITHUB_WORKSPACE": str(ws), "RUNNER_WORKSPACE": str(work)}
    assert _run(["hook", "job-started"], env).returncode == 0
    out = _run(["hook", "job-completed"], env)
    assert out.returncode == 0, out.stderr
    assert "flywheel: job ran" in out.stderr
    assert ws.is_dir() and list(ws.iterdir()) == []
    assert outside.read_text() == "keep"
    assert "flywheel: job ran" in (tmp_path / "summary.md").read_text()


def test_entrypoint_preserves_exit_code_and_writes_hints(tmp_path: Path) -> None:
    hints = tmp_path / "run" / "hints.json"
    out = _run(["entrypoint", "--", sys.executable, "-c", "import sys; sys.exit(42)"],
               {"FLYWHEEL_HINTS_FILE": str(hints)})
    assert out.returncode == 42
    assert json.loads(hints.read_text())["schema"] == "flywheel.tinyland.dev/hints/v1"


def test_entrypoint_execs_so_signals_reach_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = ("import signal, sys, time, pathlib\n"
              f"def h(*a): pathlib.Path({str(marker)!r}).write_text('TERM'); sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, h)\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-m", "flywheel_runtime", "entrypoint", "--", sys.executable, "-c",
                             script], env={**os.environ, "FLYWHEEL_HINTS_FILE": str(tmp_path / "h.json")},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)  # sent to the entrypoint's pid: exec made it the command
    assert proc.wait(timeout=10) == 143
    assert marker.read_text() == "TERM"


def test_entrypoint_seeds_nix_when_asked(tmp_path: Path) -> None:
    src = tmp_path / "image-nix"
    (src / "store" / "abc-pkg").mkdir(parents=True)
    (src / "store" / "abc-pkg" / "f").write_text("x")
    dst = tmp_path / "volume"
    out = _run(["entrypoint", "--", "true"], {"FLYWHEEL_SEED_NIX_SOURCE": str(src),
                                              "FLYWHEEL_SEED_NIX_TARGET": str(dst),
                                              "FLYWHEEL_HINTS_FILE": str(tmp_path / "h.json")})
    assert out.returncode == 0, out.stderr
    assert (dst / "store" / "abc-pkg" / "f").read_text() == "x"
    assert "flywheel: /nix seeded" in out.stderr
