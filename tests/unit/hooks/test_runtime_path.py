"""Issue 19's reproductions on the hooks and the entrypoint, each as a test.

The runtime path runs in every runner pod before every job: a hostile or
broken environment must get one line on stderr and a documented exit code,
never a hang, a traceback or a published secret.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from flywheel_runtime.errors import FlywheelError
from flywheel_runtime.hooks.jobhooks import clean_workspace, job_completed, job_started
from tests.unit.probe.tree import as_uid

DEADLINE = 30
RUNNER_UID = 1001  # the runner image's user


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=DEADLINE, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(args)} hung")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "temp").mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return {"RUNNER_TEMP": str(tmp_path / "temp"), "GITHUB_ENV": str(tmp_path / "github_env"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "FLYWHEEL_ROOT": str(root),
            "FLYWHEEL_NODE_NAME": "honey", **extra}


def _one_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def _runner_env(text: str) -> dict[str, str]:
    """GITHUB_ENV as the Actions runner reads it (NAME=value lines, NAME<<DELIM blocks)."""
    lines, out, i = text.split("\n"), {}, 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line:
            continue
        eq, hd = line.find("="), line.find("<<")
        if eq >= 0 and (hd < 0 or eq < hd):
            out[line[:eq]] = line[eq + 1:]
        else:
            delim, body = line[hd + 2:], []
            while i < len(lines) and lines[i].rstrip("\r") != delim:
                body.append(lines[i])
                i += 1
            i += 1
            out[line[:hd]] = "\n".join(body)
    return out


# --- output files that are not files -------------------------------------------------


def test_github_env_that_is_a_directory_is_one_line_and_exit_18(tmp_path: Path) -> None:
    env = _env(tmp_path)
    Path(env["GITHUB_ENV"]).mkdir()
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 18
    assert "GITHUB_ENV" in _one_line(out) and "Is a directory" in out.stderr


def test_a_missing_step_summary_directory_only_warns(tmp_path: Path) -> None:
    env = _env(tmp_path, GITHUB_STEP_SUMMARY=str(tmp_path / "gone" / "summary.md"))
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0, out.stderr
    assert "job summary" in out.stderr and "not written" in out.stderr and "Traceback" not in out.stderr
    assert _runner_env(Path(env["GITHUB_ENV"]).read_text())["FLYWHEEL_KVM"] == "0"  # the hints still published
    completed = _run(["hook", "job-completed"], env)
    assert completed.returncode == 0 and "Traceback" not in completed.stderr


def test_fifos_for_github_env_summary_and_state_never_hang_a_hook(tmp_path: Path) -> None:
    env = _env(tmp_path)
    os.mkfifo(env["GITHUB_STEP_SUMMARY"])
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0 and "job summary" in out.stderr
    os.mkfifo(tmp_path / "env-fifo")
    out = _run(["hook", "job-started"], {**env, "GITHUB_ENV": str(tmp_path / "env-fifo")})
    assert out.returncode == 18 and "GITHUB_ENV" in _one_line(out)
    state = Path(env["RUNNER_TEMP"]) / "flywheel-job.json"
    state.unlink(missing_ok=True)
    os.mkfifo(state)
    records = Path(env["RUNNER_TEMP"]) / "flywheel-jobs.jsonl"
    os.mkfifo(records)
    out = _run(["hook", "job-completed"], env)
    assert out.returncode == 0 and "job start not recorded" in out.stderr and "job record not written" in out.stderr


def test_a_fifo_under_flywheel_root_never_hangs_job_started(tmp_path: Path) -> None:
    env = _env(tmp_path)
    root = Path(env["FLYWHEEL_ROOT"])
    for rel in ("proc/cpuinfo", "nix/.flywheel-seed.json", "usr/share/vulkan/icd.d/x.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / rel)
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0, out.stderr


def test_a_non_utf8_value_is_no_traceback(tmp_path: Path) -> None:
    env = _env(tmp_path, FLYWHEEL_NODE_NAME="node-\udcff", FLYWHEEL_RUNNER_CLASS="class-\udcff",
               PYTHONIOENCODING="utf-8:strict")
    started = _run(["hook", "job-started"], env)
    assert started.returncode == 3 and "class-" in _one_line(started)  # no such lane: its own code, one line
    assert "Traceback" not in _run(["hook", "job-completed"], env).stderr


# --- entrypoint ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["no-interpreter-line", "directory", "no-x-bit"])
def test_entrypoint_with_a_command_that_cannot_run_is_126(tmp_path: Path, kind: str) -> None:
    cmd = tmp_path / "runner"
    if kind == "directory":
        cmd.mkdir()
    else:
        cmd.write_bytes(b"\x7fELF\x02garbage" if kind == "no-interpreter-line" else b"#!/bin/sh\n")
        cmd.chmod(0o755 if kind == "no-interpreter-line" else 0o644)
    out = _run(["entrypoint", "--", str(cmd)], {"FLYWHEEL_HINTS_FILE": str(tmp_path / "h.json")})
    assert out.returncode == 126 and "command not executable" in _one_line(out)


# --- what is published --------------------------------------------------------------


def test_a_line_break_in_the_hints_file_path_never_sets_a_variable(tmp_path: Path) -> None:
    evil = tmp_path / "h\nBASH_ENV=/tmp/evil.sh\nx.json"
    env = _env(tmp_path, FLYWHEEL_HINTS_FILE=str(evil))
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0, out.stderr
    published = _runner_env(Path(env["GITHUB_ENV"]).read_text())
    assert "BASH_ENV" not in published and all(k.startswith("FLYWHEEL_") for k in published)
    assert published["FLYWHEEL_HINTS_FILE"] == str(evil) and evil.is_file()  # still said faithfully


def test_the_workspace_policy_value_is_never_echoed(tmp_path: Path) -> None:
    token = "ghp_" + "Q7" * 18
    out = _run(["hook", "job-completed"], {"RUNNER_TEMP": str(tmp_path), "FLYWHEEL_WORKSPACE_POLICY": token})
    assert out.returncode == 2 and "FLYWHEEL_WORKSPACE_POLICY" in _one_line(out)
    assert token not in out.stderr and token.lower() not in out.stderr


def test_a_topology_that_is_no_topology_is_never_quoted(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    first = "root:$y$j9T$Qx1abcdefghij$Zk9mnopqrstuvwxyz0123456789ABCDEFGHIJKL:19000:0:99999:7:::"
    shadow.write_text(first + "\ndaemon:*:19000:0:99999:7:::\n")
    out = _run(["hook", "job-started"], _env(tmp_path, FLYWHEEL_SCALE_SET="tinyland-nix",
                                             FLYWHEEL_TOPOLOGY=str(shadow)))
    line = _one_line(out)
    assert out.returncode == 3 and str(shadow) in line
    assert "root:" not in line and "Zk9mnop" not in line and "daemon" not in line
    os.mkfifo(tmp_path / "fifo")
    fifo = _run(["hook", "job-started"], _env(tmp_path, FLYWHEEL_SCALE_SET="tinyland-nix",
                                              FLYWHEEL_TOPOLOGY=str(tmp_path / "fifo")))
    assert fifo.returncode == 3 and "not a regular file" in _one_line(fifo)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


TOKEN = "ghs_" + "Zq4" * 12
# Shapes issue 19 found passing the old rules: (value as a pod may hold it, what must not survive).
LEAKS = {
    "base64-wrapped token": (base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode(),
                             base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()),
    "user:token in a URL": ("https://deploy:Ab/Cd+Ef/Gh12Ij34Kl56@registry.example.com/v2/",
                            "Ab/Cd+Ef/Gh12Ij34Kl56"),
    "token split over lines": (TOKEN[:17] + "\n" + TOKEN[17:], TOKEN),
    "JWT with spaces in the header": (
        _b64url(b'{ "alg": "RS256", "typ": "JWT" }') + "." + _b64url(b'{"sub":"repo:o/r:ref:main"}')
        + ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc", "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc"),
    "GitLab CI job token": ("glcbt-64_Aq1Bw2Ce3Dr4Ft5Gy6Hu", "Aq1Bw2Ce3Dr4Ft5Gy6Hu"),
    "GitLab deploy token": ("gldt-Kp9Lq8Mr7Ns6Ot5Pu4Qv", "Kp9Lq8Mr7Ns6Ot5Pu4Qv"),
    "PGP private key": ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQVYBGXz1q0BDAC7kQ2m9\n=Ab12\n"
                        "-----END PGP PRIVATE KEY BLOCK-----", "lQVYBGXz1q0BDAC7kQ2m9"),
    "OpenSSH private key": ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
                            "-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
    "Bearer header": ("Authorization: Bearer ya29.a0AfH6SMBx3kq", "ya29.a0AfH6SMBx3kq"),
    "Slack webhook": ("https://hooks.slack.com/services/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",
                      "zYxWvUtSrQpOnMlKjIhGfEdC"),
    "Discord webhook": ("https://discord.com/api/webhooks/112233445566778899/aBcDeFgHiJkLmNoPqRsTuVwXyZ012345",
                        "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"),
}


@pytest.mark.parametrize("shape", sorted(LEAKS))
def test_secret_shapes_the_old_rules_let_through_are_never_published(shape: str) -> None:
    value, secret = LEAKS[shape]
    base = Path(tempfile.mkdtemp(prefix="flywheel-leak-"))
    try:
        (base / "temp").mkdir()
        (base / "root").mkdir()
        env = {"RUNNER_TEMP": str(base / "temp"), "GITHUB_ENV": str(base / "github_env"),
               "GITHUB_STEP_SUMMARY": str(base / "summary.md"), "FLYWHEEL_NODE_NAME": value,
               "FLYWHEEL_OVERLAY": value, "GITHUB_JOB": value, "FLYWHEEL_RUNNER_CLASS": value}
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                job_started(env=env, root=str(base / "root"))
            except FlywheelError as exc:  # the class is no lane: its error line is published too
                err.write(str(exc))
            job_completed(env=env)
        written = err.getvalue() + "".join(
            p.read_text() for p in (base / "github_env", base / "summary.md", base / "temp" / "flywheel-hints.json",
                                    base / "temp" / "flywheel-jobs.jsonl"))
        flat = written.replace("\\n", "").replace("\n", "")
        assert secret not in written and secret not in flat, shape
    finally:
        shutil.rmtree(base)


# --- workspace cleanup as the runner -----------------------------------------------


def _tree(base: Path) -> tuple[Path, Path]:
    runner_ws = base / "_work" / "repo"
    ws = runner_ws / "repo"
    locked = ws / "build" / "locked" / "inner"
    locked.mkdir(parents=True)
    (locked / "secret.txt").write_text("previous job")
    closure = ws / "result" / "store" / "abc-hello" / "bin"
    closure.mkdir(parents=True)
    (closure / "hello").write_text("#!/bin/sh\n")
    os.chmod(closure / "hello", 0o444)
    for d in (closure, closure.parent, closure.parent.parent, closure.parent.parent.parent):
        os.chmod(d, 0o555)  # a copied Nix closure
    os.chmod(locked, 0o000)  # a nested directory a job left mode 000
    os.chmod(locked.parent, 0o000)
    (ws / "top").write_text("x")
    return runner_ws, ws


def _clean(ws: str, runner_ws: str) -> dict:
    return clean_workspace(ws, runner_ws)


@pytest.fixture
def shared_base() -> Path:
    if os.geteuid() != 0:
        pytest.skip("changing uid needs root")
    # Outside pytest's 0700 tmp dir: the runner uid must reach it by absolute path.
    base = Path(tempfile.mkdtemp(prefix="flywheel-ws-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    subprocess.run(["chmod", "-R", "u+rwx", str(base)], check=False)
    shutil.rmtree(base)


def test_cleanup_as_the_runner_uid_empties_mode_000_and_read_only_trees(shared_base: Path) -> None:
    runner_ws, ws = _tree(shared_base)
    subprocess.run(["chown", "-R", f"{RUNNER_UID}:{RUNNER_UID}", str(shared_base / "_work")], check=True)
    result = as_uid(RUNNER_UID, _clean, str(ws), str(runner_ws), raises=True)
    assert result == {"removed": 3, "skipped": []}, result
    assert list(ws.iterdir()) == []


def test_the_tree_holds_a_nested_mode_000_directory(shared_base: Path) -> None:
    _, ws = _tree(shared_base)
    assert stat.S_IMODE(os.lstat(ws / "build" / "locked").st_mode) == 0
    assert stat.S_IMODE(os.lstat(ws / "build" / "locked" / "inner").st_mode) == 0


def test_cleanup_as_the_runner_says_what_it_had_to_leave(shared_base: Path) -> None:
    runner_ws, ws = _tree(shared_base)
    subprocess.run(["chown", "-R", f"{RUNNER_UID}:{RUNNER_UID}", str(shared_base / "_work")], check=True)
    root_owned = ws / "by-root"
    root_owned.mkdir()
    (root_owned / "f").write_text("a container job ran as root")
    os.chmod(root_owned, 0o555)  # the runner cannot open it up: not its own
    result = as_uid(RUNNER_UID, _clean, str(ws), str(runner_ws), raises=True)
    assert result["__error__"] == "WorkspaceLeftError", result
    assert f"{ws / 'by-root'}: Operation not permitted" in result["message"] and "\n" not in result["message"]
    assert sorted(p.name for p in ws.iterdir()) == ["by-root"]  # everything else is gone


# --- one error contract -------------------------------------------------------------


def _boom(_args: object) -> int:
    raise RuntimeError("unexpected\nsecond line ghp_" + "x1" * 18)


def test_an_unexpected_error_is_one_line_and_exit_70(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from flywheel_runtime import cli
    from flywheel_runtime.probe import _cli as probe_cli

    monkeypatch.setattr(probe_cli, "_hints", _boom)
    monkeypatch.delenv("FLYWHEEL_DEBUG", raising=False)
    assert cli.main(["hints"]) == 70
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "RuntimeError" in err and "Traceback" not in err
    assert "ghp_" + "x1" * 18 not in err
    assert cli.main(["--debug", "hints"]) == 70
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("FLYWHEEL_DEBUG", "1")
    assert cli.main(["hints"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_every_exit_code_is_in_the_readme() -> None:
    from flywheel_runtime.errors import ExitCode

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme[readme.index("## Exit codes"):]
    table = table[:table.index("\n## ", 1)]
    documented = {int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and
                  line.split("|")[1].strip().isdigit()}
    assert documented == {int(c) for c in ExitCode}



def test_a_store_name_that_is_not_utf8_is_never_a_traceback(tmp_path: Path) -> None:
    """Issue 19: a non-UTF-8 name at the top of the store ended seed-nix in a traceback, exit 1.
    Whatever seed-nix makes of it, the CLI's contract holds: success, or one line and a
    documented code (70 at worst), never a traceback and never exit 1."""
    src = tmp_path / "image-nix"
    bad = src / "store" / os.fsdecode(b"\xff-name")
    bad.mkdir(parents=True)
    (bad / "f").write_text("x")
    out = _run(["seed-nix", "--source", str(src), "--target", str(tmp_path / "volume")], {})
    assert "Traceback" not in out.stderr and out.returncode != 1, out.stderr[-2000:]
    if out.returncode:
        assert _one_line(out).startswith("flywheel-runtime: ")
