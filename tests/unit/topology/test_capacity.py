"""Capacity math against hand-computed figures (requests, as the scheduler counts)."""

from __future__ import annotations

import json
import subprocess
import sys

from flywheel_runtime.topology import capacity

from .conftest import scale_set

GiB = 2**30


def test_heavy_binds_on_memory_on_honey(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-heavy"))
    # 32 cpu // 4 = 8 ; 219.81Gi // 64Gi = 3 ; 1384.60Gi // 192Gi = 7 ; 110 pods
    assert f.fits == {"cpu": 8, "memory": 3, "ephemeral-storage": 7, "pods": 110}
    assert (f.admits, f.binding, f.node, f.node_schedulable) == (3, "memory", "honey", True)


def test_compute_expansion_nix_binds_on_memory_on_sting(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-compute-expansion"))
    # 32000m // 500m = 64 ; 54.68Gi // 4Gi = 13 ; 66.32Gi // 1Gi = 66 (the /nix, work and
    # cache claims are PVCs, not root ephemeral-storage)
    assert f.fits == {"cpu": 64, "memory": 13, "ephemeral-storage": 66, "pods": 110}
    assert (f.admits, f.binding) == (13, "memory")


def test_docker_on_sting_binds_on_ephemeral_storage(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-docker"))
    # 32000m // 100m = 320 ; 54.68Gi // 256Mi = 218 ; 66.32Gi // 1Gi = 66
    assert f.fits == {"cpu": 320, "memory": 218, "ephemeral-storage": 66, "pods": 110}
    assert (f.admits, f.binding) == (66, "ephemeral-storage")


def test_dind_counts_sidecar_ephemeral_storage(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-dind"))
    # runner 4Gi + daemon 24Gi = 28Gi ; 1384.60Gi // 28Gi = 49
    assert f.fits["ephemeral-storage"] == 49 and f.binding == "ephemeral-storage"
    ce = capacity.fit(topo, topo.scale_set("tinyland-dind-compute-expansion"))
    # runner 512Mi + daemon 1Gi = 1.5Gi ; 66.32Gi // 1.5Gi = 44
    assert ce.fits["ephemeral-storage"] == 44 and ce.admits == 44


def test_pod_slots_bind_when_requests_are_tiny(variant) -> None:
    def tiny(d):
        d["nodes"]["sting"]["allocatable"]["pods"] = 30

    f = capacity.fit(variant(tiny), variant(tiny).scale_set("tinyland-docker"))
    assert (f.fits["pods"], f.admits, f.binding) == (30, 30, "pods")


def test_label_sums_caps_across_overlays(topo) -> None:
    heavy = next(lc for lc in capacity.labels(topo) if lc.label == "tinyland-nix-heavy")
    assert heavy.scale_sets == ["tinyland-nix-heavy", "jess-nix-heavy"]
    assert heavy.overlays == ["jess", "tinyland"]
    assert (heavy.summed_caps, heavy.admits, heavy.debt) == (3, 3, 0)
    # With every other honey lane at its cap (nix 16, dind 20, operator, kvm, gpu, 3 GitLab x 4):
    #   cpu  32000 - (16*500 + 20*500 + 1000 + 2000 + 1000 + 12*500) = 4000m  -> 1 heavy (4000m)
    #   eph  1384.60Gi - (16*24 + 20*28 + 8 + 64 + 12 + 12*1)Gi = 344.60Gi -> 1 heavy (192Gi)
    #   mem  219.81Gi - (16 + 20 + 4 + 8 + 4 + 12)Gi = 155.81Gi            -> 2 heavy (64Gi)
    # so one heavy runner is admitted and two of the three overlay slots queue.
    assert (heavy.admits_at_peak, heavy.debt_at_peak) == (1, 2)


def test_shared_label_across_nodes(topo) -> None:
    nix = next(lc for lc in capacity.labels(topo) if lc.label == "tinyland-nix")
    # honey 16 (cap; 57 would fit) + sting 8 (cap; 13 would fit)
    assert (nix.scale_sets, nix.summed_caps, nix.admits, nix.debt) == (
        ["tinyland-nix", "tinyland-nix-compute-expansion"], 24, 24, 0)


def test_global_capacity_debt_when_overlay_caps_exceed_the_node(variant) -> None:
    def raise_jess(d):
        scale_set(d, "jess-nix-heavy")["max_runners"] = 2

    heavy = next(lc for lc in capacity.labels(variant(raise_jess)) if lc.label == "tinyland-nix-heavy")
    # honey admits 3 heavy runners by memory; 2 + 2 caps = 4: one is honest queueing.
    assert (heavy.summed_caps, heavy.admits, heavy.debt) == (4, 3, 1)


def test_node_demand_at_caps(topo) -> None:
    honey = capacity.node_demand(topo, "honey")
    # the peak figures above plus the three heavy slots (3 x 4 cpu / 64Gi / 192Gi)
    assert honey.at_caps == {"cpu": 40_000, "memory": 256 * GiB, "ephemeral-storage": 1616 * GiB, "pods": 54}
    assert honey.overcommitted == ["cpu", "memory", "ephemeral-storage"]
    sting = capacity.node_demand(topo, "sting")
    # docker 20 x (100m, 256Mi, 1Gi) + nix-ce 8 x (500m, 4Gi, 1Gi) + dind-ce 16 x (500m, 1Gi, 1.5Gi)
    assert sting.at_caps == {"cpu": 14_000, "memory": 53 * GiB, "ephemeral-storage": 52 * GiB, "pods": 44}
    assert sting.overcommitted == []
    assert capacity.node_demand(topo, "bumble").lanes == []


def test_capacity_cli_json_and_table() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity", "--json"],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["schema"] == "flywheel.tinyland.dev/capacity/v1"
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert set(nodes) == {"honey", "sting", "bumble"}
    heavy = next(s for s in nodes["honey"]["scale_sets"] if s["scale_set"] == "tinyland-nix-heavy")
    assert (heavy["admits"], heavy["binding"], heavy["fits"]["memory"]) == (3, "memory", 3)
    label = next(lc for lc in doc["labels"] if lc["label"] == "tinyland-nix-heavy")
    assert (label["summed_caps"], label["admits"], label["admits_at_peak"]) == (3, 3, 1)
    table = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity"],
                           capture_output=True, text=True, check=True).stdout
    row = next(line for line in table.splitlines() if line.strip().startswith("jess-nix-heavy"))
    assert row.split() == ["jess-nix-heavy", "1", "8", "3", "7", "110", "3", "memory"]
    label_row = next(line for line in table.splitlines() if line.startswith("tinyland-nix-heavy "))
    assert label_row.split()[:6] == ["tinyland-nix-heavy", "3", "3", "0", "1", "2"]
    assert label_row.endswith("<- queues at peak")
