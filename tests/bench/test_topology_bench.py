"""Topology benchmarks (``-m bench``): hooks load the topology before every
job, so ``load()`` of the shipped file must stay cheap, in-process and as a
fresh interpreter (what a job hook pays).  Quick by default; the synthetic
wide topology (many scale sets) runs with ``FLYWHEEL_BENCH_TOPOLOGY_SETS=N``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

from flywheel_runtime.topology import DEFAULT_TOPOLOGY, capacity, check, load, load_data, render

pytestmark = pytest.mark.bench

WIDE = int(os.environ.get("FLYWHEEL_BENCH_TOPOLOGY_SETS", "0"))


def test_load_shipped(benchmark) -> None:
    topo = benchmark(load)
    assert len(topo.scale_sets) == 10
    benchmark.extra_info["yaml_loader"] = "CSafeLoader" if hasattr(yaml, "CSafeLoader") else "SafeLoader"


def test_validate_and_build_only(benchmark) -> None:
    data = yaml.load(DEFAULT_TOPOLOGY.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    topo = benchmark(load_data, data, "bench")
    assert topo.scale_set("tinyland-nix").max_runners == 16


def test_cold_process_import_and_load(benchmark) -> None:
    """What a job hook pays: a fresh interpreter importing and loading."""
    code = "import flywheel_runtime.topology as t; t.load()"

    def run() -> None:
        subprocess.run([sys.executable, "-c", code], check=True)

    benchmark.pedantic(run, rounds=5, iterations=1)


def test_check_and_capacity(benchmark) -> None:
    topo = load()

    def both() -> tuple[int, int]:
        return len(check.check(topo)), len(capacity.report(topo)["labels"])

    assert benchmark(both) == (0, 7)


def test_render_everything(benchmark) -> None:
    topo = load()

    def everything() -> int:
        docs = render.cluster_objects(topo) + [render.helm_values(topo, s.name) for s in topo.scale_sets]
        return len(docs) + len(render.node_objects(topo)) + len(render.kind_config(topo)["nodes"])

    assert benchmark(everything) > 20


@pytest.mark.skipif(not WIDE, reason="set FLYWHEEL_BENCH_TOPOLOGY_SETS=N for the wide synthetic topology")
def test_load_wide_topology(benchmark) -> None:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    base = data["scale_sets"]
    data["scale_sets"] = [{**copy.deepcopy(base[i % len(base)]), "name": f"lane-{i}"} for i in range(WIDE)]
    topo = benchmark(load_data, data, "wide")
    assert len(topo.scale_sets) == WIDE
