"""Crafted trees the Nix-built store does not cover: owners, set-id bits,
big files, read-only and empty directories, odd names, fifos, stale
hardlink groups, and the Nix database opening in the copy."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.nixseed import read_stamp, seed
from flywheel_runtime.nixseed.compare import compare_trees
from flywheel_runtime.nixseed.copy import SMALL
from flywheel_runtime.nixseed.synth import freeze_like_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="exact owners need root")


def _crafted(root: Path) -> Path:
    src = root / "nix"
    d = src / "store" / "0123456789abcdfghijklmnpqrsvwxyz-crafted"
    (d / "bin").mkdir(parents=True)
    (d / "empty" / "nested-empty").mkdir(parents=True)
    (d / "bin" / "suid").write_bytes(b"\x7fELF" + bytes(100))
    os.chmod(d / "bin" / "suid", 0o4555)
    (d / "bin" / "sgid").write_bytes(b"x")
    os.chmod(d / "bin" / "sgid", 0o2555)
    (d / "big.bin").write_bytes(os.urandom(3 * SMALL + 17))
    (d / "exactly-small").write_bytes(os.urandom(SMALL))
    (d / "zero").write_bytes(b"")
    (d / "runner-owned").write_text("owned by the runner user")
    os.chown(d / "runner-owned", 1001, 30000)
    (d / "name\nwith newline \u2603 \u00e9").write_text("odd")
    (d / "-leading-dash").write_text("x")
    (d / "abs").symlink_to("/etc/passwd")
    (d / "dangling").symlink_to("../does/not/exist")
    os.symlink("bin", d / "dirlink")
    os.chown(d / "abs", 1001, 1001, follow_symlinks=False)
    os.mkfifo(d / "fifo", 0o644)
    os.link(d / "big.bin", d / "big-link.bin")
    (src / "var" / "nix" / "db").mkdir(parents=True)
    freeze_like_image(src)  # read-only directories, mtime 1 on everything, as in an image
    return src


def test_crafted_edge_cases_copy_exactly(tmp_path: Path) -> None:
    src = _crafted(tmp_path / "src")
    dst = tmp_path / "dst" / "nix"
    report = seed(src, dst, progress_interval=0)
    assert compare_trees(src, dst) == []
    d = dst / "store" / "0123456789abcdfghijklmnpqrsvwxyz-crafted"
    assert (d / "bin" / "suid").lstat().st_mode & 0o7777 == 0o4555
    assert (d / "bin" / "sgid").lstat().st_mode & 0o7777 == 0o2555
    assert ((d / "runner-owned").stat().st_uid, (d / "runner-owned").stat().st_gid) == (1001, 30000)
    assert os.readlink(d / "abs") == "/etc/passwd" and (d / "abs").lstat().st_uid == 1001
    assert (d / "big.bin").stat().st_ino == (d / "big-link.bin").stat().st_ino
    assert (d / "empty" / "nested-empty").is_dir() and d.lstat().st_mode & 0o777 == 0o555
    assert report.hardlinks == 1


def test_reseed_breaks_a_stale_hardlink_group(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("same")
    (src / "b").write_text("same")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "a").write_text("same")
    os.link(dst / "a", dst / "b")  # an older image had them optimised together
    for p in (src / "a", src / "b", dst / "a"):
        os.utime(p, (1, 1))
    assert compare_trees(src, dst) != []
    seed(src, dst, progress_interval=0, force="test: a volume an older seeder optimised")
    assert compare_trees(src, dst) == []


def test_nix_database_opens_in_the_copy(store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "nix"
    seed(store, dst, progress_interval=0)
    db = dst / "var" / "nix" / "db" / "db.sqlite"
    with open(store / "var/nix/db/db.sqlite", "rb") as fh:
        wal_mode = fh.read(20)[18] == 2
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = con.execute("SELECT count(*) FROM ValidPaths").fetchone()[0]
    finally:
        con.close()
    src = sqlite3.connect(f"file:{store / 'var/nix/db/db.sqlite'}?mode=ro&immutable=1", uri=True)
    try:
        assert n == src.execute("SELECT count(*) FROM ValidPaths").fetchone()[0] > 0
    finally:
        src.close()
    if wal_mode:  # the copy kept WAL mode and opens without its -wal/-shm companions
        with open(db, "rb") as fh:
            assert fh.read(20)[18] == 2


def test_json_report_on_stdout(store: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store), "--target",
           str(tmp_path / "nix"), "--json", "--progress-interval", "0"]
    first = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert {"files", "dirs", "symlinks", "hardlinks", "bytes", "seconds", "method", "identity", "skipped"} <= set(first)
    assert first["skipped"] is False and first["files"] > 0 and first["method"] in ("ficlone", "copy_file_range", "sendfile")
    again = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert again["skipped"] is True and again["identity"] == first["identity"] == read_stamp(tmp_path / "nix")["identity"]


def test_negative_jobs_is_a_usage_error(store: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(store), "--target",
                          str(tmp_path / "nix"), "--jobs", "-1"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--jobs" in out.stderr
    assert not (tmp_path / "nix").exists()


def test_import_stays_light() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import flywheel_runtime.nixseed._cli"],
                         capture_output=True, text=True, check=True)
    for heavy in ("kubernetes", "wgpu", "vulkan", "pynvml", "sqlite3", "hashlib"):
        assert f" {heavy}\n" not in out.stderr and f" {heavy}." not in out.stderr


def test_reseed_over_equal_metadata_compares_bytes(tmp_path: Path) -> None:
    """Two images whose db (or any file) has the same size, mode and mtime 1
    but other bytes: the re-seed must not trust metadata it did not write."""
    one, two = tmp_path / "one", tmp_path / "two"
    for root, body in ((one, b"image one db page"), (two, b"image two db page")):
        (root / "var" / "nix" / "db").mkdir(parents=True)
        (root / "var" / "nix" / "db" / "db.sqlite").write_bytes(body)
        os.utime(root / "var" / "nix" / "db" / "db.sqlite", (1, 1))
    dst = tmp_path / "dst"
    seed(one, dst, progress_interval=0)
    seed(two, dst, progress_interval=0)
    assert (dst / "var/nix/db/db.sqlite").read_bytes() == b"image two db page"
    assert compare_trees(two, dst) == []


def test_progress_has_a_numeric_eta_from_the_nix_database(store: Path, tmp_path: Path) -> None:
    import io
    import re

    buf = io.StringIO()
    seed(store, tmp_path / "nix", progress=buf, progress_interval=0.001)
    etas = re.findall(r"eta_s=(\S+)", buf.getvalue())
    assert etas and any(re.fullmatch(r"\d+\.\d", e) for e in etas), buf.getvalue()[:500]


@pytest.fixture
def xfs(tmp_path: Path):
    """A reflink-capable XFS on a loop device (xfsprogs; root)."""
    if shutil.which("mkfs.xfs") is None or shutil.which("losetup") is None:
        pytest.skip("mkfs.xfs (xfsprogs) or losetup is missing")
    img, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(img, "wb") as fh:
        fh.truncate(512 << 20)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(img)], check=True)
    mnt.mkdir()
    out = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot loop-mount XFS here: {out.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("jobs", [1, 2])
def test_reflinks_where_the_filesystem_allows(xfs: Path, jobs: int) -> None:
    src = _crafted(xfs / "src")
    dst = xfs / "dst" / "nix"
    report = seed(src, dst, jobs=jobs, progress_interval=0)
    assert report.method == "ficlone"
    assert compare_trees(src, dst) == []
    big = dst / "store" / "0123456789abcdfghijklmnpqrsvwxyz-crafted" / "big.bin"
    extents = subprocess.run(["filefrag", "-v", str(big)], capture_output=True, text=True, check=True).stdout
    assert "shared" in extents, extents  # the copy shares the source's extents: a reflink, not bytes
