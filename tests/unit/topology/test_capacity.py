from __future__ import annotations

import json
import subprocess
import sys

from flywheel_runtime.topology import capacity

from .conftest import scale_set


def test_heavy_binds_on_memory_on_honey(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-heavy"))
    # 219.81Gi // 64Gi = 3 ; 1384.60Gi // 192Gi = 7 ; 32 cpu // 4 = 8 ; 110 pods
    assert f.fits == {"cpu": 8, "memory": 3, "ephemeral-storage": 7, "pods": 110}
    assert (f.admits, f.binding) == (3, "memory")


def test_compute_expansion_nix_binds_on_memory_on_sting(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-compute-expansion"))
    # 54.68Gi // 4Gi = 13 ; 66.32Gi // 1Gi = 66 ; 32000m // 500m = 64
    assert f.fits == {"cpu": 64, "memory": 13, "ephemeral-storage": 66, "pods": 110}
    assert f.binding == "memory"


def test_dind_counts_sidecar_ephemeral_storage(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-dind"))
    # runner 4Gi + daemon 24Gi = 28Gi ; 1384.60Gi // 28Gi = 49
    assert f.fits["ephemeral-storage"] == 49 and f.binding == "ephemeral-storage"


def test_label_sums_caps_across_overlays(topo) -> None:
    heavy = next(lc for lc in capacity.labels(topo) if lc.label == "tinyland-nix-heavy")
    assert heavy.scale_sets == ["tinyland-nix-heavy", "jess-nix-heavy"]
    assert (heavy.summed_caps, heavy.admits, heavy.debt) == (3, 3, 0)


def test_global_capacity_debt_when_overlay_caps_exceed_the_node(variant) -> None:
    def raise_jess(d):
        scale_set(d, "jess-nix-heavy")["max_runners"] = 2

    heavy = next(lc for lc in capacity.labels(variant(raise_jess)) if lc.label == "tinyland-nix-heavy")
    # honey admits 3 heavy runners by memory; 2 + 2 caps = 4: one is honest queueing.
    assert (heavy.summed_caps, heavy.admits, heavy.debt) == (4, 3, 1)


def test_capacity_cli_json_and_table() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity", "--json"],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["schema"] == "flywheel.tinyland.dev/capacity/v1"
    assert {n["node"] for n in doc["nodes"]} == {"honey", "sting", "bumble"}
    table = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity"],
                           capture_output=True, text=True, check=True).stdout
    assert "tinyland-nix-heavy" in table and "binds on" in table
