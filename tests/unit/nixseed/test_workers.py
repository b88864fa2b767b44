"""Worker processes and hardlink groups: the store's link farm, groups it does
not cover, farms that are not one-name-per-inode, and copies racing for one
inode.  Every case runs with one job (in process) and with several (forked)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flywheel_runtime.nixseed import seed
from flywheel_runtime.nixseed.compare import compare_trees
from flywheel_runtime.nixseed.links import STAGING_NAME
from flywheel_runtime.nixseed.synth import freeze_like_image, generate

from .conftest import as_if_killed_before_the_stamp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="exact owners need root")

JOBS = [1, 2, 3]


def _groups(root: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            st = os.lstat(os.path.join(dirpath, n))
            if st.st_nlink > 1:
                out.setdefault(st.st_ino, []).append(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def _same_groups(src: Path, dst: Path) -> None:
    assert sorted(sorted(g) for g in _groups(src).values()) == sorted(sorted(g) for g in _groups(dst).values())


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("synth") / "nix"
    generate(src, files=1500, total_bytes=6 << 20, files_per_path=12)
    return src


@pytest.mark.parametrize("jobs", JOBS)
def test_optimised_store_keeps_every_group(synth_store: Path, tmp_path: Path, jobs: int) -> None:
    dst = tmp_path / "nix"
    report = seed(synth_store, dst, jobs=jobs, progress_interval=0)
    assert compare_trees(synth_store, dst) == []
    _same_groups(synth_store, dst)
    links = len(os.listdir(synth_store / "store" / ".links"))
    lone = sum(1 for d, _s, fs in os.walk(synth_store / "var") for n in fs
               if stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode))
    # Each inode copied once (the farm's names and the db's lone files), every other name linked.
    assert report.files == links + lone and report.hardlinks >= links
    assert not (dst / STAGING_NAME).exists()


def _store_without_farm(root: Path, paths: int = 24) -> Path:
    """Hardlinks the farm does not cover: one inode named in every store path
    (racing workers all want to copy it first), plus a group split between
    var/ and the store, and a lone file."""
    src = root / "nix"
    shared = src / "var" / "shared-payload"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(os.urandom(200_000))
    for i in range(paths):
        sp = src / "store" / f"{i:032d}-p{i}"
        (sp / "lib").mkdir(parents=True)
        os.link(shared, sp / "lib" / "libshared.so")
        (sp / "lib" / "own").write_bytes(os.urandom(1000 + i))
        os.link(sp / "lib" / "own", sp / "own-twin")  # a group inside one store path
    for i in range(8):  # names the parent walks around the store (listing order decides before or after)
        (src / f"side{i}").mkdir()
        os.link(shared, src / f"side{i}" / "payload")
    freeze_like_image(src)
    return src


@pytest.mark.parametrize("jobs", JOBS)
def test_groups_outside_a_farm_are_kept(tmp_path: Path, jobs: int) -> None:
    src = _store_without_farm(tmp_path / "src")
    listing = os.listdir(src)  # some side names come after the store the workers copy
    assert max(listing.index(f"side{i}") for i in range(8)) > listing.index("store"), listing
    dst = tmp_path / "dst" / "nix"
    for _ in range(2):  # and a re-run over the copy (no stamp: the walk compares everything)
        seed(src, dst, jobs=jobs, progress_interval=0)
        assert compare_trees(src, dst) == []
        _same_groups(src, dst)
        assert not (dst / STAGING_NAME).exists()
        as_if_killed_before_the_stamp(dst)


def _farm_store(src: Path, paths: int) -> Path:
    """``paths`` store paths of one file each, every file also named in the farm."""
    farm = src / "store" / ".links"
    farm.mkdir(parents=True)
    for i in range(paths):
        sp = src / "store" / f"{i:032d}-p{i}"
        sp.mkdir()
        (sp / "f").write_text(f"content {i}")
        os.link(sp / "f", farm / f"hash{i}")
    return farm


@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("shape", ["two-names-one-inode", "subdirectory"])
def test_a_links_directory_that_is_not_a_farm_is_copied_as_it_is(tmp_path: Path, jobs: int, shape: str) -> None:
    src = tmp_path / "src" / "nix"
    farm = _farm_store(src, 8)
    if shape == "two-names-one-inode":
        os.link(farm / "hash0", farm / "hash0-again")
    else:
        (farm / "sub").mkdir()
        os.link(farm / "hash1", farm / "sub" / "nested")
    freeze_like_image(src)
    dst = tmp_path / "dst" / "nix"
    seed(src, dst, jobs=jobs, progress_interval=0)
    assert compare_trees(src, dst) == []
    _same_groups(src, dst)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_group_named_before_the_farm_is_kept(tmp_path: Path, jobs: int) -> None:
    """The walk reaches a name of a farm inode before the farm itself: the farm
    must not be the registry then.  The walk follows the directory's listing
    order, so sixteen directories each name a farm inode, and the test checks
    that at least one of them is listed before the store."""
    src = tmp_path / "src" / "nix"
    farm = _farm_store(src, 24)  # wider than the root: the workers fork at the store
    for i in range(16):
        (src / f"pre{i}").mkdir()
        os.link(farm / f"hash{i}", src / f"pre{i}" / "also")
    listing = os.listdir(src)
    assert min(listing.index(f"pre{i}") for i in range(16)) < listing.index("store"), listing
    freeze_like_image(src)
    dst = tmp_path / "dst" / "nix"
    seed(src, dst, jobs=jobs, progress_interval=0)
    assert compare_trees(src, dst) == []
    _same_groups(src, dst)


def test_a_killed_runs_staging_directory_is_removed(tmp_path: Path) -> None:
    src = _store_without_farm(tmp_path / "src", paths=4)
    dst = tmp_path / "dst" / "nix"
    (dst / STAGING_NAME).mkdir(parents=True)
    (dst / STAGING_NAME / "1-2").write_text("left by a SIGKILLed seeder")
    seed(src, dst, jobs=2, progress_interval=0)
    assert not (dst / STAGING_NAME).exists()
    assert compare_trees(src, dst) == []


@pytest.mark.parametrize(("files", "want"), [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2, 1.5 CPUs rounds up
    ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity decides
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_default_jobs_follows_the_cpu_quota(tmp_path: Path, files: dict[str, str], want: int | None) -> None:
    from flywheel_runtime.nixseed.seeding import default_jobs

    for rel, body in files.items():
        f = tmp_path / "sys" / "fs" / "cgroup" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(body)
    cpus = min(len(os.sched_getaffinity(0)), 8)
    assert default_jobs(tmp_path) == (min(want, cpus) if want else cpus)
