"""sting's fast-local scratch pool (2026-05-24): the claims every overflow lane
makes at its cap, counted against the pool's stated size (hand-computed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flywheel_runtime.errors import TopologyError
from flywheel_runtime.topology import capacity
from flywheel_runtime.topology.check import check

GiB = 2**30
POOL = "local-path-sting-fast-ephemeral"
# Per runner: nix-ce 64Gi /nix + 32Gi work + 32Gi cache = 128Gi (cap 8: 1024Gi);
# dind-ce 32Gi work + 48Gi /var/lib/docker = 80Gi (cap 16: 1280Gi).  2304Gi at caps.
NIX_CE, DIND_CE = "tinyland-nix-compute-expansion", "tinyland-dind-compute-expansion"


def sized(size):
    def mutate(d):
        d["storage_classes"][POOL]["capacity"] = size
        d["storage_classes"][POOL]["capacity_source"] = "a test figure"
    return mutate


def test_shipped_pool_is_explicitly_unstated(topo) -> None:
    sc = topo.storage_class(POOL)
    assert sc.fast_local and sc.node == "sting"
    assert sc.capacity is None and "stated nowhere" in sc.capacity_source
    (pool,) = capacity.pools(topo)
    assert (pool.capacity, pool.short, pool.at_caps) == (None, None, 2304 * GiB)
    assert [(lane.scale_set, lane.per_runner, lane.at_cap) for lane in pool.lanes] == [
        (NIX_CE, 128 * GiB, 1024 * GiB), (DIND_CE, 80 * GiB, 1280 * GiB)]
    # Nothing shows the unstated pool backs a claim: both caps are named.
    assert pool.unbacked == [NIX_CE, DIND_CE]
    assert all(lane.backs_alone is None and not lane.backed for lane in pool.lanes)


def test_a_pool_short_of_the_caps_names_both_lanes(variant) -> None:
    (pool,) = capacity.pools(variant(sized("2Ti")))
    assert (pool.capacity, pool.short) == (2048 * GiB, 256 * GiB)
    lanes = {lane.scale_set: lane for lane in pool.lanes}
    # nix-ce alone 2048 // 128 = 16; beside dind-ce at cap (2048 - 1280) // 128 = 6 < 8.
    assert (lanes[NIX_CE].backs_alone, lanes[NIX_CE].backs_at_peak, lanes[NIX_CE].backed) == (16, 6, False)
    # dind-ce alone 2048 // 80 = 25; beside nix-ce at cap (2048 - 1024) // 80 = 12 < 16.
    assert (lanes[DIND_CE].backs_alone, lanes[DIND_CE].backs_at_peak, lanes[DIND_CE].backed) == (25, 12, False)
    assert pool.unbacked == [NIX_CE, DIND_CE]


@pytest.mark.parametrize("size,unbacked", [("2304Gi", []), ("2303Gi", [NIX_CE, DIND_CE]), ("4Ti", [])])
def test_the_boundary_is_the_summed_claims_at_caps(variant, size, unbacked) -> None:
    (pool,) = capacity.pools(variant(sized(size)))
    assert pool.unbacked == unbacked
    assert (pool.short == 0) == (not unbacked)


def test_per_runner_claims_follow_the_volumes(variant) -> None:
    # Without its cache claim nix-ce holds 96Gi a runner; a lane with no claims is none of the pool's.
    def move_cache(d):
        sized("1Ti")(d)
        ss = next(s for s in d["scale_sets"] if s["name"] == NIX_CE)
        ss["volumes"] = [v for v in ss["volumes"] if v["name"] != "cache"]
        d["scale_sets"] = [s for s in d["scale_sets"] if s["name"] != DIND_CE]

    (pool,) = capacity.pools(variant(move_cache))
    assert [(lane.scale_set, lane.per_runner) for lane in pool.lanes] == [(NIX_CE, 96 * GiB)]
    # 1024 // 96 = 10 >= 8: backed.
    assert (pool.lanes[0].backs_alone, pool.unbacked) == (10, [])


def test_the_check_flags_a_cap_the_stated_pool_cannot_back(variant, topo) -> None:
    assert [str(v) for v in check(topo) if v.rule == "fast-local-pool"] == []  # unstated: capacity says it
    got = [str(v) for v in check(variant(sized("2Ti"))) if v.rule == "fast-local-pool"]
    assert got == [
        "check: fast-local-pool: scale set tinyland-nix-compute-expansion: cap 8 claims 1024.00Gi of "
        "local-path-sting-fast-ephemeral on sting; its 2048.00Gi backs 6 beside the other lanes at their caps "
        "(16 alone)",
        "check: fast-local-pool: scale set tinyland-dind-compute-expansion: cap 16 claims 1280.00Gi of "
        "local-path-sting-fast-ephemeral on sting; its 2048.00Gi backs 12 beside the other lanes at their caps "
        "(25 alone)"]
    assert [v for v in check(variant(sized("2304Gi"))) if v.rule == "fast-local-pool"] == []


def test_check_cli_exits_1_on_an_unbacked_cap(write_variant) -> None:
    path = write_variant(sized("1Ti"))
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert [line.split(":")[1].strip() for line in out.stdout.splitlines()] == ["fast-local-pool"] * 2


def test_a_node_local_class_must_state_its_pool(variant) -> None:
    def drop(key):
        def mutate(d):
            del d["storage_classes"][POOL][key]
        return mutate

    with pytest.raises(TopologyError, match=r"storage_classes\.local-path-sting-fast-ephemeral\.capacity: expected "
                                            r"a value for a class bound to one node"):
        variant(drop("capacity"))
    with pytest.raises(TopologyError, match=r"storage_classes\.local-path-sting-fast-ephemeral\.capacity_source: "
                                            r"expected a value"):
        variant(drop("capacity_source"))


def test_a_class_with_no_node_needs_no_pool(variant) -> None:
    def shared(d):
        d["storage_classes"]["shared"] = {"provisioner": "example.com/nfs", "binding_mode": "Immediate",
                                          "reclaim_policy": "Delete"}

    topo = variant(shared)
    assert not topo.storage_class("shared").fast_local
    assert [p.storage_class for p in capacity.pools(topo)] == [POOL]


def test_the_pool_size_is_a_quantity_or_unstated(variant) -> None:
    assert variant(sized("3Ti")).storage_class(POOL).capacity == 3 * 2**40
    with pytest.raises(TopologyError, match=r"capacity: expected a Kubernetes byte quantity like \"8Gi\" or "
                                            r"'unstated', got 'lots'"):
        variant(sized("lots"))


def test_scenario_says_which_admitted_runners_the_pool_holds(variant, topo) -> None:
    asked = {NIX_CE: 8, DIND_CE: 16}
    # 1Ti: nix-ce's 8 x 128Gi fill it; the 11 dind-ce runners sting's memory admits hold nothing.
    sc = capacity.scenario(variant(sized("1Ti")), asked)
    assert sc.admitted == {NIX_CE: 8, DIND_CE: 11}
    assert sc.pools[POOL] == {"node": "sting", "capacity": 1024 * GiB, "claimed": (1024 + 11 * 80) * GiB,
                              "backed": {NIX_CE: 8, DIND_CE: 0}, "unbacked": {NIX_CE: 0, DIND_CE: 11}}
    # 2Ti holds every runner the scheduler admits (1904Gi), though not every cap.
    assert capacity.scenario(variant(sized("2Ti")), asked).pools[POOL]["unbacked"] == {NIX_CE: 0, DIND_CE: 0}
    # Unstated: nothing shown held.
    assert capacity.scenario(topo, asked).pools[POOL]["backed"] == {NIX_CE: 0, DIND_CE: 0}
    # Lanes with no claims leave the pools out.
    assert capacity.scenario(topo, {"tinyland-nix": 2}).pools == {}


def test_capacity_cli_names_the_lanes(write_variant) -> None:
    text = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity"],
                          capture_output=True, text=True, check=True).stdout
    assert ("fast-local pool local-path-sting-fast-ephemeral on sting: capacity UNSTATED" in text
            and "claims at caps 2304.00Gi" in text)
    row = next(line for line in text.splitlines() if line.strip().startswith(NIX_CE) and "cap" in line)
    assert row.split()[:7] == [NIX_CE, "cap", "8", "x", "128Gi", "=", "1024.00Gi"]
    assert row.endswith("not shown backed (pool size unstated)")
    path = write_variant(sized("2Ti"))
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity", "--topology", str(path),
                          "--json"], capture_output=True, text=True, check=True).stdout
    import json

    (pool,) = json.loads(out)["pools"]
    assert (pool["capacity"], pool["short"], pool["unbacked"]) == (2048 * GiB, 256 * GiB, [NIX_CE, DIND_CE])


def test_check_cli_notes_an_unstated_pool_on_stderr(write_variant) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.splitlines()[-1].endswith(
        "note: fast-local pool local-path-sting-fast-ephemeral states no size (storage_classes."
        "local-path-sting-fast-ephemeral.capacity: unstated): the caps of tinyland-nix-compute-expansion, "
        "tinyland-dind-compute-expansion are not shown backed (topology capacity)")
    stated = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check",
                             str(write_variant(sized("4Ti")))], capture_output=True, text=True)
    assert stated.returncode == 0 and "note: fast-local pool" not in stated.stderr
