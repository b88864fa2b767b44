"""The design document's capacity table (quiet, normal, burst) beside the
model's requests, limits and admitted count (hand-computed figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.errors import TopologyError
from flywheel_runtime.topology import capacity

GiB = 2**30
BURST = {"tinyland-nix": 2, "tinyland-nix-heavy": 1, "jess-nix-heavy": 1, "tinyland-dind": 1,
         "tinyland-nix-compute-expansion": 1}


@pytest.fixture(scope="module")
def rows(topo):
    return {name: capacity.capacity_row(topo, sc) for name, sc in capacity.named_scenarios(topo).items()}


def test_the_document_rows_are_data(topo) -> None:
    named = capacity.named_scenarios(topo)
    assert list(named) == ["quiet", "normal", "burst"]
    assert named["quiet"].document == capacity.DocumentRow("3 GitLab + 0 ARC", "~3 vCPU / 6Gi", 3000, 6 * GiB)
    assert named["normal"].document.usage == "~11 vCPU / 22Gi" and named["normal"].arc == {"tinyland-nix": 2}
    assert named["burst"].document.exceeds_cluster
    # Six ARC runners, mixed as the harness's burst benchmark mixes them.
    assert named["burst"].arc == BURST
    assert {sc.gitlab for sc in named.values()} == {3}


def test_quiet_is_three_gitlab_runners_and_the_document_counts_limits(rows) -> None:
    # Three GitLab runners at min 1, each 500m / 1Gi requested, 1 / 2Gi limit.
    q = rows["quiet"]
    assert (q.gitlab, q.asked, q.admitted) == (3, {}, {})
    assert q.requests == {"cpu": 1500, "memory": 3 * GiB}
    assert q.limits == {"cpu": 3000, "memory": 6 * GiB}
    assert q.reasons == ["the document's figure is the runners' limits (ours 3 vCPU / 6Gi); the scheduler admits "
                         "by requests (1.5 vCPU / 3Gi)"]


def test_normal_adds_two_warm_nix_runners(rows) -> None:
    # + 2 tinyland-nix: 500m / 1Gi requested, 4 / 8Gi limit each.
    n = rows["normal"]
    assert (n.admitted, n.queued, n.scheduler, n.scheduler_source) == (
        {"tinyland-nix": 2}, {"tinyland-nix": 0}, {"tinyland-nix": 2}, "model")
    assert n.requests == {"cpu": 2500, "memory": 5 * GiB}
    assert n.limits == {"cpu": 11_000, "memory": 22 * GiB}
    assert "the runners' limits (ours 11 vCPU / 22Gi)" in n.reasons[0]


def test_burst_fits_at_the_facts_allocatable(rows, topo) -> None:
    b = rows["burst"]
    assert (b.admitted, b.queued) == (BURST, {k: 0 for k in BURST})
    # Requests: GitLab 3 x 500m/1Gi, nix 2 x 500m/1Gi, heavy 2 x 4/64Gi, dind runner + daemon
    # 2 x 500m/1Gi, nix-ce 500m/4Gi = 12 vCPU / 139Gi.  Limits: 3/6Gi + 8/16Gi + 16/320Gi + 8/16Gi
    # + 4/16Gi = 39 vCPU / 374Gi, beyond honey and sting's 219.81 + 54.68Gi of memory.
    assert b.requests == {"cpu": 12_000, "memory": 139 * GiB}
    assert b.limits == {"cpu": 39_000, "memory": 374 * GiB}
    assert b.allocatable == {"cpu": 64_000, "memory": topo.node("honey").allocatable.memory
                             + topo.node("sting").allocatable.memory}
    assert b.reasons == [
        "the document says it exceeds the cluster and builds queue; at the facts' allocatable (platform-facts.md, "
        "2026-05-03) the scheduler admits all 6 by requests (12 vCPU / 139Gi) while the limits (39 vCPU / 374Gi) "
        "overcommit memory: contention, not a queue",
        "1 admitted runner(s) are not backed by fast-local pool local-path-sting-fast-ephemeral (size unstated)"]


def test_burst_queues_where_honey_is_crowded(topo) -> None:
    # 94 pods outside the contract beside honey's 13 standing: 3 slots, taken in the order asked
    # (two Nix, one heavy); the Jess heavy and the DinD runner queue on the pod count, sting's runs.
    row = capacity.capacity_row(topo.with_other_pods({"honey": 94}), capacity.named_scenarios(topo)["burst"])
    assert row.admitted == {"tinyland-nix": 2, "tinyland-nix-heavy": 1, "jess-nix-heavy": 0, "tinyland-dind": 0,
                            "tinyland-nix-compute-expansion": 1}
    assert row.reasons[0] == "2 runner(s) queue, as the document says (refused on pods)"


def test_limits_beyond_the_node_are_contention(topo) -> None:
    sc = capacity.NamedScenario("wide", "wide", capacity.DocumentRow("x", "Exceeds cluster", exceeds_cluster=True),
                                3, {"tinyland-nix": 16})
    row = capacity.capacity_row(topo, sc)
    # 16 x 4 + 3 = 67 vCPU of limits on honey's 32: overcommitted, yet all admitted by requests.
    assert row.limits["cpu"] == 67_000 and row.queued == {"tinyland-nix": 0}
    assert row.reasons[0].endswith("while the limits (67 vCPU / 134Gi) overcommit cpu: contention, not a queue")


def test_admitted_by_plugs_in_the_real_schedulers_count(topo) -> None:
    seen = []

    def sim(t, asked):
        seen.append(dict(asked))
        return {"tinyland-nix": 5}

    row = capacity.capacity_row(topo, capacity.named_scenarios(topo)["burst"], admitted_by=sim)
    assert seen == [BURST]
    assert (row.scheduler, row.scheduler_source, row.admitted) == ({"tinyland-nix": 5}, "sim", BURST)
    assert f"the scheduler (sim) admits {{'tinyland-nix': 5}}, the model {BURST}" in row.reasons
    same = capacity.capacity_row(topo, capacity.named_scenarios(topo)["burst"],
                                 admitted_by=lambda t, a: dict(BURST))
    assert not any("the scheduler (sim)" in r for r in same.reasons)


def test_a_gitlab_count_off_the_topology_is_a_reason(variant) -> None:
    def two(d):
        d["gitlab_runners"][0]["min_replicas"] = 2

    topo = variant(two)
    row = capacity.capacity_row(topo, capacity.named_scenarios(topo)["quiet"])
    assert row.gitlab == 4
    assert "the document counts 3 GitLab runners; the topology keeps 4 at their minimum replicas" in row.reasons
    # The extra runner's limits (1 / 2Gi) take the figure off the document's too.
    assert row.reasons[0].startswith("the document's ~3 vCPU / 6Gi matches neither")


def test_overflow_runners_beyond_the_pool_are_a_reason(topo) -> None:
    sc = capacity.NamedScenario("overflow", "overflow", capacity.DocumentRow("x", "y"), 3,
                                {"tinyland-nix-compute-expansion": 2})
    assert capacity.capacity_row(topo, sc).reasons == [
        "2 admitted runner(s) are not backed by fast-local pool local-path-sting-fast-ephemeral (size unstated)"]


def test_relief_paths_heavy_to_sting_has_no_lane(topo, variant) -> None:
    paths = {p.label: p for p in capacity.relief_paths(topo)}
    assert paths["tinyland-nix-heavy"].lanes == []
    assert paths["tinyland-nix-heavy"].elsewhere == {"tinyland-nix-heavy": "honey", "jess-nix-heavy": "honey"}
    assert paths["tinyland-docker"].lanes == ["tinyland-docker"]

    def heavy_on_sting(d):
        next(s for s in d["scale_sets"] if s["name"] == "jess-nix-heavy")["node"] = "sting"

    moved = {p.label: p for p in capacity.relief_paths(variant(heavy_on_sting))}
    assert moved["tinyland-nix-heavy"].lanes == ["jess-nix-heavy"]


def test_the_table_in_words(topo, rows) -> None:
    text = capacity.capacity_table(topo, list(rows.values()), capacity.relief_paths(topo))
    lines = text.splitlines()
    assert lines[1].split()[-2:] == ["admitted", "(model)"]
    burst = next(line for line in lines if line.startswith("burst "))
    assert "3 GitLab + 4-6 ARC" in burst and "Exceeds cluster, queue builds" in burst
    assert burst.split()[-13:-10] == ["6", "of", "6"]
    assert burst.endswith("(tinyland-nix 2, tinyland-nix-heavy 1, jess-nix-heavy 1, tinyland-dind 1, "
                          "tinyland-nix-compute-expansion 1)")
    assert sum(line.startswith("  why they differ: ") for line in lines) == 4
    assert lines[-2] == ("relief path tinyland-nix-heavy -> sting (runner-topology.txt): NO LANE; the facts keep "
                         "tinyland-nix-heavy on honey, jess-nix-heavy on honey: its runners queue there, not on sting")
    assert lines[-1] == "relief path tinyland-docker -> sting: tinyland-docker"


def test_a_scenario_file_naming_an_unknown_scale_set_fails(topo, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("scenarios:\n  odd:\n    document: {runners: a, usage: b}\n    arc: {tinyland-nope: 1}\n")
    with pytest.raises(TopologyError, match=r"s\.yaml: scenarios\.odd\.arc\.tinyland-nope: expected a scale set of "
                                            r"the topology"):
        capacity.named_scenarios(topo, f)
    f.write_text("scenarios:\n  odd:\n    document: {runners: a, usage: b, cpu: lots}\n")
    with pytest.raises(TopologyError, match=r"scenarios\.odd\.document: expected cpu and memory as Kubernetes"):
        capacity.named_scenarios(topo, f)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity", *args],
                          capture_output=True, text=True)


def test_cli_prints_the_rows_asked_beside_the_set_scenario() -> None:
    out = _cli("--scenario", "quiet", "--scenario", "tinyland-nix=3", "--scenario", "burst")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "scenario: tinyland-nix 3" in text  # the SET=N scenario still prints
    table = text[text.index("capacity table: "):].splitlines()
    assert [line.split()[0] for line in table[2:] if not line.startswith(" ") and not line.startswith("relief")] == [
        "quiet", "burst"]
    assert "NO LANE" in text


def test_cli_json_and_unknown_name() -> None:
    out = _cli("--scenario", "normal", "--json")
    doc = json.loads(out.stdout)
    (row,) = doc["capacity_table"]["rows"]
    assert (row["scenario"], row["scheduler_source"], row["limits"]) == ("normal", "model",
                                                                        {"cpu": 11_000, "memory": 22 * GiB})
    heavy = next(p for p in doc["capacity_table"]["relief_paths"] if p["label"] == "tinyland-nix-heavy")
    assert heavy["lanes"] == []
    bad = _cli("--scenario", "loud")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("no scenario named 'loud' (known: quiet, normal, burst; or SCALE_SET=N)")
