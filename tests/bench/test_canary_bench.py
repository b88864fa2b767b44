"""Canary benchmarks (``-m bench``): KVM guest round trip in-process, GPU canaries whole-process.

Targets (from the issue): KVM round trip under 50 ms in-process; each GPU canary
under 3 s whole-process on lavapipe.  ``vulkaninfo --summary`` is measured beside
them as the peer.  Quick by default (3 whole-process rounds each);
``FLYWHEEL_BENCH_ROUNDS=N`` for more; bench/canary_bench.py prints the table.
"""

from __future__ import annotations

from tests.bench.conftest import check_target

import os
import shutil
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("FLYWHEEL_BENCH_ROUNDS", "3"))
KVM_TARGET_S = 0.050
GPU_TARGET_S = 3.0


@pytest.mark.kvm
def test_kvm_guest_round_trip_in_process(benchmark) -> None:
    from flywheel_runtime.canary.kvm import run_guest

    result = benchmark.pedantic(run_guest, rounds=50, iterations=1, warmup_rounds=2)
    assert result.io_value == result.expected  # the benchmarked call really ran the guest
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(target_s=KVM_TARGET_S, median_s=median)
    check_target(median < KVM_TARGET_S, f"KVM guest round trip median {median * 1000:.1f} ms")


def _whole_process(cmd: list[str]) -> int:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


@pytest.mark.gpu
@pytest.mark.parametrize("canary", ["vulkan", "webgpu", "dawn"])
def test_gpu_canary_whole_process(benchmark, canary: str) -> None:
    cmd = [sys.executable, "-m", "flywheel_runtime", "canary", canary]
    rc = benchmark.pedantic(_whole_process, args=(cmd,), rounds=ROUNDS, iterations=1)
    assert rc == 0
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(target_s=GPU_TARGET_S, median_s=median)
    check_target(median < GPU_TARGET_S, f"canary {canary} whole-process median {median:.2f} s")


@pytest.mark.gpu
def test_peer_vulkaninfo_summary(benchmark) -> None:
    exe = shutil.which("vulkaninfo")
    assert exe, "vulkaninfo (vulkan-tools) is the peer; install it"
    rc = benchmark.pedantic(_whole_process, args=([exe, "--summary"],), rounds=ROUNDS, iterations=1)
    assert rc == 0
    benchmark.extra_info["median_s"] = statistics.median(benchmark.stats.stats.data)
