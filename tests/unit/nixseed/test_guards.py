"""seed-nix refuses a target it must not touch, before touching it (exit 17),
never blocks on a special file, and every error is one line with a
documented exit code: the seed-nix reproductions of issue 19.

Every case that would delete something on a seeder without the guards works
in a throwaway directory (a forked child chdirs there for the in-process
empty-target call): these tests are meant to be run against old code too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel_runtime.nixseed import read_stamp, seed
from flywheel_runtime.nixseed.compare import compare_trees
from flywheel_runtime.nixseed.synth import freeze_like_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="exact owners need root")

REFUSED = 17  # ExitCode.TARGET_REFUSED (a literal: the README's table is the contract)


def _source(root: Path) -> Path:
    src = root / "nix"
    (src / "store" / "0000-pkg" / "bin").mkdir(parents=True)
    (src / "store" / "0000-pkg" / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (src / "var" / "nix" / "db").mkdir(parents=True)
    (src / "var" / "nix" / "db" / "db.sqlite").write_bytes(b"not really sqlite")
    freeze_like_image(src)
    return src


def _run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--progress-interval", "0", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def _in_child(fn, *, cwd: Path, uid: int | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run ``fn()`` (returning an exit code) in a forked child in ``cwd``,
    optionally as ``uid`` (the interpreter may not be executable by that uid,
    so no exec); its stderr and exit code.  A child still running after
    ``timeout`` is killed (exit -9)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.close(r)
            os.dup2(w, 2)
            sys.stderr = open(2, "w", closefd=False)  # pytest's capture replaced sys.stderr
            os.chdir(cwd)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            code = fn()
        except BaseException:  # noqa: BLE001 - what fn let through: show it, as python would
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    os.set_blocking(r, False)
    err, deadline = b"", time.monotonic() + timeout
    while True:
        try:
            chunk = os.read(r, 65536)
        except BlockingIOError:
            chunk = None
        if chunk:
            err += chunk
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            _p, status = os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    try:
        err += os.read(r, 1 << 20)
    except BlockingIOError:
        pass
    os.close(r)
    return os.waitstatus_to_exitcode(status), err.decode(errors="replace")


def _cli(*args: str) -> int:
    from flywheel_runtime.cli import main

    return main(["seed-nix", "--progress-interval", "0", *args])


def _one_line(stderr: str) -> None:
    assert stderr.count("\n") == 1 and stderr.startswith("flywheel-runtime: "), stderr[-2000:]
    assert "Traceback" not in stderr


def _snapshot(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            out.append((os.path.relpath(os.path.join(dirpath, n), root), st.st_mode, st.st_size))
    return sorted(out)


def test_an_empty_target_is_refused_and_the_current_directory_kept(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "precious").write_text("the operator's work")
    out = _run("--source", str(src), "--target", "", cwd=cwd)
    assert out.returncode == REFUSED, out.stderr
    _one_line(out.stderr)
    assert "empty path" in out.stderr
    assert os.listdir(cwd) == ["precious"] and (cwd / "precious").read_text() == "the operator's work"


def test_the_library_refuses_an_empty_target_too(tmp_path: Path) -> None:
    """The entrypoint calls seed() directly: the guards live there, not in the CLI."""
    src = _source(tmp_path / "src")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "precious").write_text("x")

    def call() -> int:
        try:
            seed(src, "", progress_interval=0)
        except Exception as exc:  # noqa: BLE001 - the exit code is what is checked
            return int(getattr(exc, "exit_code", 1))
        return 0

    code, err = _in_child(call, cwd=cwd)
    assert code == REFUSED, err[-2000:]
    assert os.listdir(cwd) == ["precious"]


@pytest.mark.parametrize("where", ["same", "inside", "deep-inside", "via-symlink"])
def test_a_target_that_is_or_lies_inside_the_source_is_refused(tmp_path: Path, where: str) -> None:
    src = _source(tmp_path / "src")
    before = _snapshot(src)
    if where == "same":
        target = src
    elif where == "inside":
        target = src / "var" / "seeded"
    elif where == "deep-inside":
        target = src / "store" / "0000-pkg" / "bin" / "new"
    else:
        (tmp_path / "alias").symlink_to(src / "var")
        target = tmp_path / "alias" / "seeded"
    try:
        out = _run("--source", str(src), "--target", str(target))
    except subprocess.TimeoutExpired:
        pytest.fail("seed-nix recursed into its own target")
    assert out.returncode == REFUSED, out.stderr[-2000:]
    _one_line(out.stderr)
    assert _snapshot(src) == before


def test_a_target_holding_the_source_is_refused_and_the_source_kept(tmp_path: Path) -> None:
    outer = tmp_path / "volume"
    src = _source(outer)  # the source lies inside the target
    before = _snapshot(src)
    out = _run("--source", str(src), "--target", str(outer))
    assert out.returncode == REFUSED, out.stderr[-2000:]
    _one_line(out.stderr)
    assert "holds the source" in out.stderr
    assert _snapshot(src) == before


@pytest.mark.parametrize("where", ["same", "inside", "holding"])
def test_force_never_overrides_an_overlap(tmp_path: Path, where: str) -> None:
    src = _source(tmp_path / "v")
    target = {"same": src, "inside": src / "var" / "x", "holding": tmp_path / "v"}[where]
    before = _snapshot(src)
    out = _run("--source", str(src), "--target", str(target), "--force", "no reason is enough")
    assert out.returncode == REFUSED, out.stderr[-2000:]
    assert _snapshot(src) == before


def test_a_bind_mounted_alias_of_the_source_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    alias = tmp_path / "alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(alias)], check=True)
    try:
        before = _snapshot(src)
        for target in (alias, alias / "var" / "x"):
            out = _run("--source", str(src), "--target", str(target))
            assert out.returncode == REFUSED, out.stderr[-2000:]
            _one_line(out.stderr)
        assert _snapshot(src) == before
    finally:
        subprocess.run(["umount", str(alias)], check=True)


def test_a_non_empty_target_never_seeded_is_refused_untouched(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dst = tmp_path / "data"
    (dst / "home").mkdir(parents=True)
    (dst / "home" / "thesis.tex").write_text("years of work")
    before = _snapshot(dst)
    out = _run("--source", str(src), "--target", str(dst))
    assert out.returncode == REFUSED, out.stderr
    _one_line(out.stderr)
    assert "never" in out.stderr and "--force" in out.stderr
    assert _snapshot(dst) == before  # not even a lock file


def test_force_with_a_reason_seeds_over_it_and_logs_the_reason(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "junk").write_text("left by an older seeder")
    out = _run("--source", str(src), "--target", str(dst), "--force", "volume reused from the old lane")
    assert out.returncode == 0, out.stderr
    assert "--force (volume reused from the old lane)" in out.stderr and "'junk'" in out.stderr
    assert compare_trees(src, dst) == []
    out = _run("--source", str(src), "--target", str(tmp_path / "other"), "--force", " ")
    assert out.returncode == 2 and "reason" in out.stderr


def test_a_fresh_volume_with_only_lost_and_found_is_seeded(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dst = tmp_path / "volume"
    (dst / "lost+found").mkdir(parents=True)
    out = _run("--source", str(src), "--target", str(dst))
    assert out.returncode == 0, out.stderr
    assert read_stamp(dst) is not None


def test_a_seeded_target_is_reseeded_without_force(tmp_path: Path) -> None:
    one, two = _source(tmp_path / "one"), _source(tmp_path / "two")
    os.chmod(two / "var" / "nix" / "db", 0o755)
    (two / "var" / "nix" / "db" / "db.sqlite").write_bytes(b"another image's db")
    dst = tmp_path / "nix"
    assert _run("--source", str(one), "--target", str(dst)).returncode == 0
    out = _run("--source", str(two), "--target", str(dst))
    assert out.returncode == 0, out.stderr
    assert compare_trees(two, dst) == []


@pytest.mark.parametrize("name", [".flywheel-seed.json", ".flywheel-seed.lock", ".flywheel-seed.partial"])
def test_a_fifo_where_seed_nix_keeps_a_file_does_not_hang(tmp_path: Path, name: str) -> None:
    src = _source(tmp_path / "src")
    dst = tmp_path / "nix"
    assert _run("--source", str(src), "--target", str(dst)).returncode == 0
    (dst / name).unlink(missing_ok=True)
    os.mkfifo(dst / name)
    (tmp_path / "src" / "nix" / "var").chmod(0o755)
    (src / "var" / "new").write_text("a changed image: the stamp must be read")
    try:
        out = _run("--source", str(src), "--target", str(dst), timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"seed-nix hung on a FIFO at {name}")
    assert out.returncode == REFUSED, out.stderr
    _one_line(out.stderr)
    assert "FIFO" in out.stderr and name in out.stderr


def test_read_stamp_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".flywheel-seed.json")
    code, err = _in_child(lambda: 0 if read_stamp(tmp_path) is None else 1, cwd=tmp_path, timeout=20)
    assert code == 0, f"read_stamp blocked on a FIFO (killed)" if code == -9 else err


def test_a_non_utf8_name_at_the_top_of_the_store_is_copied(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    os.chmod(src / "store", 0o755)
    bad = os.path.join(os.fsencode(src / "store"), b"\xff\xfe-not-utf8")
    os.mkdir(bad)
    with open(os.path.join(bad, b"f\xe9"), "wb") as fh:
        fh.write(b"latin-1 named")
    freeze_like_image(src)
    dst = tmp_path / "nix"
    out = _run("--source", str(src), "--target", str(dst))
    assert out.returncode == 0, out.stderr[-2000:]
    assert compare_trees(src, dst) == []


def test_an_unreadable_database_is_exit_8_one_line() -> None:
    """As a non-root seeder (uid 1001) over a source it owns, a db.sqlite it may not read."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="seed-nix-uid-"))  # pytest's tmp_path is 0700 root
    try:
        os.chmod(root, 0o755)
        src = _source(root / "src")
        for dirpath, dirnames, filenames in os.walk(root):
            for n in [*dirnames, *filenames, "."]:
                os.chown(os.path.join(dirpath, n), 1001, 1001, follow_symlinks=False)
        os.chmod(src / "var" / "nix" / "db" / "db.sqlite", 0)
        code, err = _in_child(lambda: _cli("--source", str(src), "--target", str(root / "nix")), cwd=root, uid=1001)
        assert code == 8, err[-2000:]
        _one_line(err)
        assert "db.sqlite" in err
        os.chmod(root / "src", 0)  # and a source it cannot even look at
        code, err = _in_child(lambda: _cli("--source", str(src), "--target", str(root / "nix2")), cwd=root, uid=1001)
        assert code == 8, err[-2000:]
        _one_line(err)
    finally:
        shutil.rmtree(root)


def test_a_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    (tmp_path / "file").write_text("x")
    out = _run("--source", str(src), "--target", str(tmp_path / "file"))
    assert out.returncode == REFUSED, out.stderr
    _one_line(out.stderr)
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("kind", ["file", "fifo", "symlink"])
def test_whatever_stands_at_the_staging_name_is_replaced(tmp_path: Path, kind: str) -> None:
    src = _source(tmp_path / "src")
    dst = tmp_path / "nix"
    assert _run("--source", str(src), "--target", str(dst), "--jobs", "2").returncode == 0
    (dst / ".flywheel-seed.json").unlink()
    (dst / ".flywheel-seed.partial").write_text("sha256:an older journal")  # a killed run's
    staging = dst / ".flywheel-seed.links"
    {"file": lambda: staging.write_text("x"), "fifo": lambda: os.mkfifo(staging),
     "symlink": lambda: staging.symlink_to(tmp_path)}[kind]()
    out = _run("--source", str(src), "--target", str(dst), "--jobs", "2", timeout=30)
    assert out.returncode == 0, out.stderr
    assert compare_trees(src, dst) == [] and not os.path.lexists(staging)
