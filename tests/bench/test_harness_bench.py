"""Harness benchmarks (``-m bench``): pod latencies per scale set, burst
scenarios from the capacity-planning table, cluster up cold and warm.

Quick by default; ``FLYWHEEL_BENCH_MAX=1`` adds the every-scale-set-at-max
scenario (~90 pods).  Targets are recorded in ``extra_info`` and asserted only
where the issue states one (``cluster up`` with cached binaries under 20 s).
"""

from __future__ import annotations

from tests.bench.conftest import check_target

import os
import uuid

import pytest

from flywheel_runtime.topology import load

pytestmark = [pytest.mark.bench, pytest.mark.e2e]

SCALE_SETS = [s.name for s in load().scale_sets]
SCENARIOS = ["quiet", "normal", "burst"] + (["max"] if os.environ.get("FLYWHEEL_BENCH_MAX") else [])
UP_TARGET_S = 20.0


@pytest.mark.parametrize("scale_set", SCALE_SETS)
def test_pod_create_to_scheduled_and_running(benchmark, flywheel_cluster, scale_set) -> None:
    from flywheel_runtime.harness.benchmarks import pod_latency

    c = flywheel_cluster
    with c.namespace("bench-pod") as ns:
        result = benchmark.pedantic(pod_latency, args=(c.kube, c.topology, ns, scale_set), rounds=3, iterations=1)
    benchmark.extra_info.update(result)
    assert result["scheduled_s"] <= result["running_s"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_burst_admitted_vs_queued_and_drain(benchmark, flywheel_cluster, scenario) -> None:
    from flywheel_runtime.harness.benchmarks import run_scenario, scenario_pods

    c = flywheel_cluster
    with c.namespace(f"bench-{scenario}") as ns:
        result = benchmark.pedantic(run_scenario, args=(c.kube, c.topology, ns, scenario), rounds=1, iterations=1)
    benchmark.extra_info.update(result.as_dict())
    assert result.pods == len(scenario_pods(c.topology, scenario))
    assert result.admitted + result.queued == result.pods
    assert result.admitted > 0


def test_cluster_up_cold_and_warm(benchmark) -> None:
    """A second, throwaway cluster: cold up (binaries cached), warm reuse, down."""
    from flywheel_runtime.harness.benchmarks import time_up

    result = benchmark.pedantic(time_up, args=(f"bench-{uuid.uuid4().hex[:6]}",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    check_target(result["cold_up_s"] < UP_TARGET_S, f"cluster up took {result['cold_up_s']}s (target {UP_TARGET_S}s)")
    check_target(result["warm_up_s"] < 2.0, f"warm cluster up took {result['warm_up_s']}s (target 2s)")
