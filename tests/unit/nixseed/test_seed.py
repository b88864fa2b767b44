from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel_runtime.errors import NoSpaceError, SourceMissingError
from flywheel_runtime.nixseed import STAMP_NAME, read_stamp, seed, source_identity
from flywheel_runtime.nixseed.compare import compare_trees

from .conftest import as_if_killed_before_the_stamp, nix_store


def _verify(target_nix: Path) -> None:
    out = nix_store(target_nix.parent, "--verify", "--check-contents")
    assert "error" not in out.lower(), out


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_seed_is_exact_and_nix_verifies_it(store: Path, tmp_path: Path, jobs: int) -> None:
    dst = tmp_path / "root" / "nix"
    report = seed(store, dst, jobs=jobs, progress_interval=0)
    assert not report.skipped and report.files > 0 and report.hardlinks > 0 and report.symlinks > 0
    assert compare_trees(store, dst) == []
    _verify(dst)
    links = sorted(p.name for p in (dst / "store" / ".links").iterdir())
    assert links == sorted(p.name for p in (store / "store" / ".links").iterdir())
    assert [(dst / "store/.links" / n).lstat().st_nlink for n in links] == [
        (store / "store/.links" / n).lstat().st_nlink for n in links]
    assert any((dst / "store/.links" / n).lstat().st_nlink > 1 for n in links)
    assert os.readlink(dst / "var/nix/profiles/default") == "default-1-link"
    stamp = read_stamp(dst)
    assert stamp and stamp["identity"] == source_identity(store) == report.identity
    # The store's metadata survives: mtime 1 and read-only store paths.
    some = next(p for p in (dst / "store").iterdir() if p.name != ".links")
    assert some.lstat().st_mtime == 1 and (some.lstat().st_mode & 0o222) == 0


def test_rerun_is_recognised_without_walking(store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "nix"
    seed(store, dst, progress_interval=0)
    report = seed(store, dst, progress_interval=0)
    assert report.skipped and report.files == 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_reseed_from_a_different_image_is_exact(store: Path, store_b: Path, tmp_path: Path, jobs: int) -> None:
    dst = tmp_path / "nix"
    seed(store, dst, jobs=jobs, progress_interval=0)
    report = seed(store_b, dst, jobs=jobs, progress_interval=0)
    assert not report.skipped and report.removed > 0
    assert compare_trees(store_b, dst) == []
    assert read_stamp(dst)["identity"] == source_identity(store_b)


@pytest.mark.parametrize("jobs", [1, 2])
def test_nothing_is_written_outside_the_target(store: Path, tmp_path: Path, jobs: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "nix"
    dst.mkdir()
    # Hostile leftovers: links where the store and a file belong.
    (dst / "store").symlink_to(outside)
    (dst / "var").mkdir()
    (dst / "var" / "nix").symlink_to(outside)
    seed(store, dst, jobs=jobs, progress_interval=0, force="test: hostile leftovers")
    assert list(outside.iterdir()) == []
    assert compare_trees(store, dst) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_stale_temp_files_and_truncated_files_are_repaired(store: Path, tmp_path: Path, jobs: int) -> None:
    dst = tmp_path / "nix"
    seed(store, dst, jobs=jobs, progress_interval=0)
    as_if_killed_before_the_stamp(dst)
    victim = next(p for p in (dst / "store").rglob("libbig*.so"))
    victim.chmod(0o644)
    with open(victim, "r+b") as fh:
        fh.truncate(10)
    (victim.parent.chmod(0o755))
    (victim.parent / ".flywheel-tmp-junk").write_text("half")
    farm_entry = next((dst / "store" / ".links").iterdir())  # a farm name damaged too
    farm_entry.unlink()
    seed(store, dst, jobs=jobs, progress_interval=0)
    assert compare_trees(store, dst) == []


@pytest.mark.parametrize("rnd", range(8))
def test_sigkill_at_a_random_moment_then_rerun_is_exact(store: Path, tmp_path: Path, rnd: int) -> None:
    dst = tmp_path / "nix"
    cmd = [sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store), "--target", str(dst),
           "--progress-interval", "0", "--jobs", str(1 + rnd % 2)]
    # Measure a full run once to aim the kill inside it.
    if rnd == 0:
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, capture_output=True)
        full = time.monotonic() - t0
        import shutil

        shutil.rmtree(dst)
    else:
        full = 0.6
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(rnd).uniform(0.05, max(full, 0.3)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _no_worker_outlives(dst)
    stamp = read_stamp(dst)
    if stamp is not None:  # it finished before the kill: then it must be exact
        assert compare_trees(store, dst) == []
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert compare_trees(store, dst) == []
    assert read_stamp(dst)["identity"] == source_identity(store)


def _no_worker_outlives(dst: Path) -> None:
    """A killed seeder's workers die with it (PR_SET_PDEATHSIG): none keeps writing."""
    deadline = time.monotonic() + 5
    while True:
        alive = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(dst))]
        if not alive:
            return
        assert time.monotonic() < deadline, f"workers outlived their seeder: {alive}"
        time.sleep(0.05)


def _cmdline_has(pid: str, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return needle.encode() in fh.read().split(b"\0")
    except OSError:
        return False


def test_two_concurrent_seeders_serialise(store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "nix"
    cmd = [sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store), "--target", str(dst),
           "--json", "--progress-interval", "0"]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ra, rb = (json.loads(p.communicate()[0]) for p in (a, b))
    assert a.returncode == b.returncode == 0
    assert sorted([ra["skipped"], rb["skipped"]]) == [False, True]
    assert compare_trees(store, dst) == []


def test_missing_source_is_exit_7_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(tmp_path / "none"),
                          "--target", str(tmp_path / "t")], capture_output=True, text=True)
    assert out.returncode == 7
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr
    with pytest.raises(SourceMissingError):
        seed(tmp_path / "none", tmp_path / "t")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("jobs", [1, 2])
def test_enospc_on_a_small_tmpfs_is_exit_5_and_no_stamp(store: Path, tmp_path: Path, jobs: int) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        with pytest.raises(NoSpaceError):
            seed(store, mnt / "nix", jobs=jobs, progress_interval=0)
        assert read_stamp(mnt / "nix") is None
        out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store),
                              "--target", str(mnt / "nix")], capture_output=True, text=True)
        assert out.returncode == 5 and "no space left" in out.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_permission_denied_is_exit_8(store: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store),
                              "--target", str(ro / "nix")], capture_output=True, text=True)
        assert out.returncode == 8, out.stderr
        assert out.stderr.startswith("flywheel-runtime: permission denied")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_chown_work_volume(store: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    report = seed(store, tmp_path / "nix", progress_interval=0, chown_work=[str(work)], work_owner=(1001, 1001))
    assert report.chowned == [str(work)]
    st = work.stat()
    assert (st.st_uid, st.st_gid) == (1001, 1001)


def test_progress_lines_are_logfmt(store: Path, tmp_path: Path) -> None:
    import io

    buf = io.StringIO()
    seed(store, tmp_path / "nix", progress=buf, progress_interval=0.001)
    lines = [ln for ln in buf.getvalue().splitlines() if ln]
    assert lines and all(ln.startswith("seed-nix progress files=") and "rate_mb_s=" in ln and "eta_s=" in ln
                         for ln in lines)


def test_a_terminal_gets_a_live_bar(store: Path, tmp_path: Path) -> None:
    """On a tty stderr the progress redraws one line (carriage returns), not a log."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store),
                                 "--target", str(tmp_path / "nix"), "--progress-interval", "0.001"],
                                stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait() == 0
    finally:
        os.close(leader)
    text = out.decode(errors="replace")
    assert "\rseed-nix progress files=" in text, text[:300]
    assert compare_trees(store, tmp_path / "nix") == []
