"""seed-nix benchmarks (pytest-benchmark).  Quick by default; bigger stores with
FLYWHEEL_BENCH_NIXSEED_FILES / FLYWHEEL_BENCH_NIXSEED_MB.  The side-by-side
comparison with cp -a, rsync -aH and tar|tar is bench/seed_nix_bench.py."""

from __future__ import annotations

from tests.bench.conftest import check_target

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flywheel_runtime.nixseed import seed
from flywheel_runtime.nixseed.compare import compare_trees
from flywheel_runtime.nixseed.synth import generate

pytestmark = [pytest.mark.bench, pytest.mark.skipif(os.geteuid() != 0, reason="store owners need root")]

FILES = int(os.environ.get("FLYWHEEL_BENCH_NIXSEED_FILES", "2000"))
MB = int(os.environ.get("FLYWHEEL_BENCH_NIXSEED_MB", "24"))


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("synth") / "nix"
    generate(src, files=FILES, total_bytes=MB << 20)
    return src


def test_bench_seed_fresh_target(benchmark, synth_store: Path, tmp_path: Path) -> None:
    counter = itertools.count()
    targets: list[Path] = []

    def setup() -> tuple[tuple[Path], dict]:
        for old in targets:  # keep the disk flat between rounds
            subprocess.run(["chmod", "-R", "u+w", str(old)], check=False)
            shutil.rmtree(old.parent, ignore_errors=True)
        targets.clear()
        dst = tmp_path / f"t{next(counter)}" / "nix"
        targets.append(dst)
        return (dst,), {}

    report = benchmark.pedantic(lambda dst: seed(synth_store, dst, progress_interval=0), setup=setup, rounds=3)
    assert not report.skipped and report.files > 0
    assert compare_trees(synth_store, targets[-1]) == []
    benchmark.extra_info.update(files=report.files, bytes=report.bytes, method=report.method)


def test_bench_rerun_on_seeded_target(benchmark, synth_store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "nix"
    seed(synth_store, dst, progress_interval=0)
    report = benchmark(lambda: seed(synth_store, dst, progress_interval=0))
    assert report.skipped
    # A re-run must not walk the content: far below a second even on CI's shared cores.
    check_target(benchmark.stats.stats.median < 0.2, f"re-run median {benchmark.stats.stats.median:.3f}s (target 0.2s)")
