from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from flywheel_runtime.hooks.jobhooks import SUMMARY_CAP, clean_workspace, mount_points
from flywheel_runtime.probe import SCHEMA_FILE
from tests.unit.probe.tree import CARDS, as_nobody, make_root

REPO = Path(__file__).resolve().parents[3]
HOOKS = REPO / "images" / "hooks"
CLI = str(Path(sys.executable).with_name("flywheel-runtime"))
TOKEN = "ghs_" + "S" * 36


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], env={**os.environ, **env},
                          capture_output=True, text=True, **kw)


def _hook(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The way the runner calls it: `bash -e FILE` on the image's wrapper."""
    return subprocess.run(["bash", "-e", str(HOOKS / f"{name}.sh")],
                          env={**os.environ, "FLYWHEEL_RUNTIME_BIN": CLI, **env}, capture_output=True, text=True)


def _job_env(tmp_path: Path, scale_set: str, root: Path | str, runner_class: str = "tinyland-nix-kvm") -> dict[str, str]:
    (tmp_path / "temp").mkdir(exist_ok=True)
    return {"FLYWHEEL_SCALE_SET": scale_set, "FLYWHEEL_ROOT": str(root), "RUNNER_TEMP": str(tmp_path / "temp"),
            "GITHUB_ENV": str(tmp_path / "github_env"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "FLYWHEEL_RUNNER_CLASS": runner_class, "FLYWHEEL_NODE_NAME": "honey", "GITHUB_TOKEN": TOKEN,
            "ACTIONS_RUNTIME_TOKEN": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJydW5uZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"}


def _published(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "github_env").read_text().splitlines())


# --- job-started ---------------------------------------------------------------


def test_job_started_on_kvm_lane_without_dev_kvm_refuses_the_job(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    out = _hook("job-started", _job_env(tmp_path, "tinyland-nix-kvm", root))
    assert out.returncode == 6
    assert out.stderr.strip().splitlines() == [
        "flywheel-runtime: lane tinyland-nix-kvm declares kvm but this pod lacks kvm "
        "(/dev/kvm does not exist (no KVM in this pod: host passthrough missing?)): refusing the job"]
    # The hints still reach the job's log/summary so the failure can be read there.
    assert _published(tmp_path)["FLYWHEEL_KVM"] == "0"


def test_job_started_kvm_lane_with_a_regular_file_for_kvm_refuses(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "kvm").write_text("")
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-kvm", root))
    assert out.returncode == 6 and "/dev/kvm is a regular file" in out.stderr


@pytest.mark.kvm
def test_job_started_on_kvm_lane_with_real_kvm_publishes_hints(tmp_path: Path) -> None:
    env = _job_env(tmp_path, "tinyland-nix-kvm", "/")
    out = _hook("job-started", env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("flywheel: hints published (kvm API 12,")
    published = _published(tmp_path)
    assert published["FLYWHEEL_KVM"] == "1" and published["FLYWHEEL_NODE"] == "honey"
    hints = Path(published["FLYWHEEL_HINTS_FILE"])
    assert hints.parent == tmp_path / "temp"
    jsonschema.validate(json.loads(hints.read_text()), json.loads(Path(SCHEMA_FILE).read_text()))
    summary = (tmp_path / "summary.md").read_text()
    assert "| KVM | yes (API 12, via root) |" in summary
    everything = out.stdout + out.stderr + summary + (tmp_path / "github_env").read_text() + hints.read_text()
    assert TOKEN not in everything and env["ACTIONS_RUNTIME_TOKEN"] not in everything


def test_gpu_lane_without_render_node_refuses(tmp_path: Path) -> None:
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-gpu", "/", "tinyland-nix-gpu"))
    assert out.returncode == 6
    assert "declares dri but this pod lacks dri (/dev/dri does not exist)" in out.stderr


def test_gpu_lane_with_crafted_render_nodes_is_admitted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    root = make_root(tmp_path, CARDS, openable=True)  # nodes that open, each with a driver in sysfs
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-gpu", root, "tinyland-nix-gpu"))
    assert out.returncode == 0, out.stderr
    assert _published(tmp_path)["FLYWHEEL_DRI_RENDER_NODES"] == "/dev/dri/renderD128,/dev/dri/renderD129"
    assert _published(tmp_path)["FLYWHEEL_DRI"] == "1"


def test_render_nodes_answering_enxio_are_unusable_to_hints_and_gate_alike(tmp_path: Path) -> None:
    """Issue 19: DRM-numbered nodes on this GPU-less host answer ENXIO/ENODEV on open: the
    hints said FLYWHEEL_DRI=1 while the gate refused.  One decision now: not usable."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    root = make_root(tmp_path, CARDS)  # 226:N, sysfs says amdgpu/nvidia: no driver answers here
    out = _run(["hook", "job-started"], _job_env(tmp_path, "tinyland-nix-gpu", root, "tinyland-nix-gpu"))
    assert out.returncode == 6
    assert "answer ENXIO/ENODEV on open: no driver behind them" in out.stderr
    published = _published(tmp_path)
    assert published["FLYWHEEL_DRI"] == "0" and published["FLYWHEEL_DRI_RENDER_NODES"] == ""
    hints = _run(["hints", "--format", "env", "--root", str(root)], {})
    assert "FLYWHEEL_DRI=0\n" in hints.stdout


def test_gpu_lane_refuses_when_the_nodes_are_closed_to_the_job(tmp_path: Path) -> None:
    from flywheel_runtime.hooks.jobhooks import unmet
    from flywheel_runtime.probe.dri import probe_dri

    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    root = make_root(tmp_path, CARDS)
    dri = as_nobody(probe_dri, ".", cwd=root)
    problems = unmet({"kvm": {"usable": False, "reason": "-"}, "dri": dri}, frozenset({"dri"}))
    assert problems == ["dri (no render node in /dev/dri this job may open read-write)"]


def test_unknown_scale_set_falls_back_to_its_runner_class(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    out = _run(["hook", "job-started"], _job_env(tmp_path, "jess-nix-kvm", root, "tinyland-nix-kvm"))
    assert out.returncode == 6 and "lane jess-nix-kvm declares kvm" in out.stderr
    plain = _run(["hook", "job-started"], _job_env(tmp_path, "jess-nix", root, "tinyland-nix"))
    assert plain.returncode == 0, plain.stderr


def test_lane_unknown_to_the_topology_is_a_topology_error(tmp_path: Path) -> None:
    out = _run(["hook", "job-started"], _job_env(tmp_path, "nobody-knows", "/", "no-such-class"))
    assert out.returncode == 3
    assert len(out.stderr.strip().splitlines()) == 1 and "set FLYWHEEL_TOPOLOGY" in out.stderr


def test_pod_without_a_lane_only_publishes(tmp_path: Path) -> None:
    env = _job_env(tmp_path, "", "/", "")
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0, out.stderr
    assert _published(tmp_path)["FLYWHEEL_RUNNER_CLASS"] == ""


def test_secret_shaped_pod_values_never_reach_github_env(tmp_path: Path) -> None:
    env = _job_env(tmp_path, "", "/", "ghp_" + "L" * 36)  # a class name that looks like a token
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 3  # no such runner class; the error line is redacted too
    written = (out.stderr + (tmp_path / "github_env").read_text() + (tmp_path / "summary.md").read_text()
               + (tmp_path / "temp" / "flywheel-hints.json").read_text())
    assert "ghp_" + "L" * 36 not in written
    assert _published(tmp_path)["FLYWHEEL_RUNNER_CLASS"] == "[redacted]"


def test_summary_never_passes_the_1_mib_cap(tmp_path: Path) -> None:
    env = _job_env(tmp_path, "", "/", "")
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"x" * (SUMMARY_CAP - 200))  # room for the note, not for the table
    out = _run(["hook", "job-started"], env)
    assert out.returncode == 0 and "at its 1 MiB cap" in out.stderr
    assert SUMMARY_CAP - 200 < summary.stat().st_size <= SUMMARY_CAP
    assert b"runtime hints left out" in summary.read_bytes()
    summary.write_bytes(b"x" * (SUMMARY_CAP - 10))  # not even room for the note
    assert _run(["hook", "job-started"], env).returncode == 0
    assert summary.stat().st_size == SUMMARY_CAP - 10


# --- job-completed ---------------------------------------------------------------


def _workspace(tmp_path: Path) -> tuple[Path, Path, Path]:
    runner_ws = tmp_path / "_work" / "repo"
    ws = runner_ws / "repo"
    (ws / "sub" / "deep").mkdir(parents=True)
    (ws / "sub" / "deep" / "f").write_text("x")
    (ws / "top").write_text("y")
    (ws / ".hidden").write_text("z")
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (ws / "link-to-outside").symlink_to(outside)
    (ws / "sub" / "link-in-sub").symlink_to(outside)
    (runner_ws / "sibling").write_text("left alone")
    return runner_ws, ws, outside


def test_job_completed_records_duration_and_cleans_the_workspace(tmp_path: Path) -> None:
    runner_ws, ws, outside = _workspace(tmp_path)
    env = {**_job_env(tmp_path, "tinyland-nix", "/", "tinyland-nix"), "GITHUB_WORKSPACE": str(ws),
           "RUNNER_WORKSPACE": str(runner_ws), "GITHUB_RUN_ID": "42", "GITHUB_JOB": "build"}
    assert _hook("job-started", env).returncode == 0
    out = _hook("job-completed", env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("flywheel: job ran ") and "workspace cleaned (4 entries)" in out.stderr
    assert ws.is_dir() and list(ws.iterdir()) == []
    assert (outside / "precious").read_text() == "keep" and (runner_ws / "sibling").exists()
    assert "flywheel: job ran" in (tmp_path / "summary.md").read_text()
    record = json.loads((tmp_path / "temp" / "flywheel-jobs.jsonl").read_text().splitlines()[-1])
    assert record["run_id"] == "42" and record["job"] == "build" and record["duration_s"] >= 0
    assert not (tmp_path / "temp" / "flywheel-job.json").exists()


def test_job_completed_without_job_started_says_so(tmp_path: Path) -> None:
    out = _run(["hook", "job-completed"], {"RUNNER_TEMP": str(tmp_path)})
    assert out.returncode == 0 and "job start not recorded" in out.stderr


def test_keep_policy_leaves_the_workspace(tmp_path: Path) -> None:
    runner_ws, ws, _ = _workspace(tmp_path)
    env = {"RUNNER_TEMP": str(tmp_path), "GITHUB_WORKSPACE": str(ws), "RUNNER_WORKSPACE": str(runner_ws),
           "FLYWHEEL_WORKSPACE_POLICY": "keep"}
    out = _run(["hook", "job-completed"], env)
    assert out.returncode == 0 and "policy keep: nothing removed" in out.stderr
    assert (ws / "top").exists()
    bad = _run(["hook", "job-completed"], {**env, "FLYWHEEL_WORKSPACE_POLICY": "nuke"})
    assert bad.returncode == 2 and "is not one of clean, keep" in bad.stderr


def test_workspace_outside_runner_workspace_is_never_cleaned(tmp_path: Path) -> None:
    runner_ws, ws, outside = _workspace(tmp_path)
    env = {"RUNNER_TEMP": str(tmp_path), "GITHUB_WORKSPACE": str(outside), "RUNNER_WORKSPACE": str(runner_ws)}
    out = _run(["hook", "job-completed"], env)
    assert out.returncode == 1 and "is not strictly inside the work directory" in out.stderr
    assert (outside / "precious").exists()
    with pytest.raises(Exception, match="not strictly inside"):
        clean_workspace(runner_ws, runner_ws)
    with pytest.raises(Exception, match="not strictly inside"):
        clean_workspace("/etc", "/")
    # A workspace that is a symlink out of the work dir is judged by where it points.
    (runner_ws / "escape").symlink_to(outside)
    with pytest.raises(Exception, match="not strictly inside"):
        clean_workspace(runner_ws / "escape", runner_ws)
    assert (outside / "precious").exists()


def test_read_only_trees_are_cleaned_without_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    import shutil
    import tempfile

    # Outside pytest's 0700 tmp dir: the unprivileged child must reach it by absolute path.
    base = Path(tempfile.mkdtemp(prefix="flywheel-ro-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        runner_ws, ws, _ = _workspace(base)
        closure = ws / "result-copy" / "store" / "abc-hello"
        (closure / "bin").mkdir(parents=True)
        (closure / "bin" / "hello").write_text("#!/bin/sh\n")
        os.chmod(closure / "bin" / "hello", 0o444)
        for d in (closure / "bin", closure, closure.parent, closure.parent.parent):  # a copied Nix closure
            os.chmod(d, 0o555)
        subprocess.run(["chown", "-R", "65534:65534", str(base / "_work")], check=True)
        result = as_nobody(clean_workspace, str(ws), str(runner_ws))
        assert result == {"removed": 5, "skipped": []}
        assert list(ws.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_a_mount_inside_the_workspace_is_left_alone(tmp_path: Path) -> None:
    runner_ws, ws, _ = _workspace(tmp_path)
    mnt = ws / "sub" / "cache"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "shared").write_text("another filesystem")
        assert mnt in mount_points()
        result = clean_workspace(ws, runner_ws)
        # The mount itself is left and named; everything around it goes.
        assert result == {"removed": 3, "skipped": [str(mnt)]}
        assert (mnt / "shared").read_text() == "another filesystem"
        assert sorted(p.name for p in ws.iterdir()) == ["sub"] and list((ws / "sub").iterdir()) == [mnt]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# --- entrypoint ------------------------------------------------------------------


def test_entrypoint_preserves_exit_code_and_writes_hints(tmp_path: Path) -> None:
    hints = tmp_path / "run" / "hints.json"
    out = _run(["entrypoint", "--", sys.executable, "-c",
                "import os, sys; print(os.environ['FLYWHEEL_HINTS_FILE']); sys.exit(42)"],
               {"FLYWHEEL_HINTS_FILE": str(hints)})
    assert out.returncode == 42 and out.stdout.strip() == str(hints)
    jsonschema.validate(json.loads(hints.read_text()), json.loads(Path(SCHEMA_FILE).read_text()))
    assert os.listdir(hints.parent) == ["hints.json"]  # no temp file left behind
    assert stat.S_IMODE(hints.stat().st_mode) == 0o644


def test_entrypoint_execs_so_signals_reach_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = ("import signal, sys, time, pathlib, os\n"
              f"def h(*a): pathlib.Path({str(marker)!r}).write_text('TERM'); sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, h)\n"
              "print(os.getpid(), flush=True)\n"
              "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-m", "flywheel_runtime", "entrypoint", "--", sys.executable, "-c",
                             script], env={**os.environ, "FLYWHEEL_HINTS_FILE": str(tmp_path / "h.json")},
                            stdout=subprocess.PIPE, text=True)
    assert int(proc.stdout.readline()) == proc.pid  # exec: the command *is* the entrypoint's process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert marker.read_text() == "TERM"


def test_entrypoint_hints_file_masks_secret_shaped_values(tmp_path: Path) -> None:
    hints = tmp_path / "hints.json"
    out = _run(["entrypoint", "--", "true"], {"FLYWHEEL_HINTS_FILE": str(hints), "FLYWHEEL_NODE_NAME": TOKEN})
    assert out.returncode == 0, out.stderr
    assert TOKEN not in hints.read_text() and json.loads(hints.read_text())["runner"]["node"] == "[redacted]"


def test_entrypoint_falls_back_when_the_hints_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _run(["entrypoint", "--", "true"], {"FLYWHEEL_HINTS_FILE": str(blocker / "hints.json")})
    assert out.returncode == 0 and "hints file not written" in out.stderr


def test_entrypoint_reports_a_missing_command(tmp_path: Path) -> None:
    out = _run(["entrypoint", "--", str(tmp_path / "no-such-runner")], {"FLYWHEEL_HINTS_FILE": str(tmp_path / "h")})
    assert out.returncode == 127 and out.stderr.strip().endswith("command not found: " + str(tmp_path / "no-such-runner"))
    assert _run(["entrypoint"], {"FLYWHEEL_HINTS_FILE": str(tmp_path / "h")}).returncode == 2


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
    assert f"flywheel: {dst} seeded from {src}" in out.stderr
    half = _run(["entrypoint", "--", "true"], {"FLYWHEEL_SEED_NIX_SOURCE": str(src)})
    assert half.returncode == 2 and "must be set together" in half.stderr  # a bad pod spec: not a found violation


def test_entrypoint_fails_the_pod_when_the_seed_source_is_missing(tmp_path: Path) -> None:
    out = _run(["entrypoint", "--", "true"], {"FLYWHEEL_SEED_NIX_SOURCE": str(tmp_path / "absent"),
                                              "FLYWHEEL_SEED_NIX_TARGET": str(tmp_path / "v"),
                                              "FLYWHEEL_HINTS_FILE": str(tmp_path / "h.json")})
    assert out.returncode == 7, out.stderr  # SourceMissingError: the runner never starts


def test_hints_file_default_and_fallback_order(tmp_path: Path) -> None:
    from flywheel_runtime.hooks.entrypoint import hints_paths

    assert hints_paths({"RUNNER_TEMP": str(tmp_path)}) == [Path("/run/flywheel/hints.json"),
                                                           tmp_path / "flywheel-hints.json"]
    assert hints_paths({"FLYWHEEL_HINTS_FILE": "/x/h.json", "RUNNER_TEMP": str(tmp_path)}) == [Path("/x/h.json")]


def test_gpu_lane_refuses_render_nodes_with_no_driver_behind_them() -> None:
    # what a device RuntimeClass yields on a GPU-less node: openable nodes, nothing in sysfs
    from flywheel_runtime.hooks.jobhooks import unmet

    bare = {"path": "/dev/dri/renderD128", "kind": "render", "accessible": True, "driver": None}
    doc = {"kvm": {"usable": False, "reason": "-"}, "dri": {"reason": None, "devices": [bare]}}
    assert unmet(doc, frozenset({"dri"})) == ["dri (render node(s) /dev/dri/renderD128 have no kernel driver "
                                              "behind them)"]
    doc["dri"]["devices"] = [{**bare, "driver": "amdgpu"}]
    assert unmet(doc, frozenset({"dri"})) == []
