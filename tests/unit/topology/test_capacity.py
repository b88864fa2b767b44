"""Capacity math against hand-computed figures (requests, as the scheduler counts)."""

from __future__ import annotations

import json
import subprocess
import sys

from flywheel_runtime.topology import capacity

from .conftest import scale_set

GiB = 2**30
MiB = 2**20
# Standing pods (always there, beside any runner): on honey the ARC controller
# (100m, 128Mi), nine listeners (50m, 64Mi each) and three GitLab runners at
# min 1 (500m, 1Gi, 1Gi eph each) = 2050m, 3Gi + 704Mi, 3Gi eph, 13 pod slots;
# on sting the Docker lane's listener (50m, 64Mi, 1 slot).
HONEY_STANDING = {"cpu": 2050, "memory": 3 * GiB + 704 * MiB, "ephemeral-storage": 3 * GiB, "pods": 13}


def test_heavy_binds_on_memory_on_honey(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-heavy"))
    # (32000 - 2050)m // 4000m = 7 ; (219.81Gi - 3.69Gi) // 64Gi = 3 ; 1381.60Gi // 192Gi = 7 ; 110 - 13 pods
    assert f.fits == {"cpu": 7, "memory": 3, "ephemeral-storage": 7, "pods": 97}
    assert (f.admits, f.binding, f.node, f.node_schedulable) == (3, "memory", "honey", True)


def test_compute_expansion_nix_binds_on_memory_on_sting(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-nix-compute-expansion"))
    # (32000 - 50)m // 500m = 63 ; (54.68Gi - 64Mi) // 4Gi = 13 ; 66.32Gi // 1Gi = 66 (the /nix, work
    # and cache claims are PVCs, not root ephemeral-storage) ; 110 - 1 (Docker's listener) pods
    assert f.fits == {"cpu": 63, "memory": 13, "ephemeral-storage": 66, "pods": 109}
    assert (f.admits, f.binding) == (13, "memory")


def test_docker_on_sting_binds_on_ephemeral_storage(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-docker"))
    # 31950m // 100m = 319 ; (54.68Gi - 64Mi) // 256Mi = 218 ; 66.32Gi // 1Gi = 66
    assert f.fits == {"cpu": 319, "memory": 218, "ephemeral-storage": 66, "pods": 109}
    assert (f.admits, f.binding) == (66, "ephemeral-storage")


def test_dind_counts_the_daemon_envelope(topo) -> None:
    f = capacity.fit(topo, topo.scale_set("tinyland-dind"))
    # ephemeral: runner 4Gi + daemon 24Gi = 28Gi ; 1381.60Gi // 28Gi = 49
    # cpu: runner 500m + daemon 500m = 1000m ; 29950m // 1000m = 29 (the daemon's envelope binds)
    assert (f.fits["ephemeral-storage"], f.fits["cpu"], f.binding) == (49, 29, "cpu")
    ce = capacity.fit(topo, topo.scale_set("tinyland-dind-compute-expansion"))
    # ephemeral: runner 512Mi + daemon 1Gi = 1.5Gi ; 66.32Gi // 1.5Gi = 44
    # memory: runner 1Gi + daemon 1Gi = 2Gi ; (54.68Gi - 64Mi) // 2Gi = 27
    assert (ce.fits["ephemeral-storage"], ce.fits["memory"], ce.admits, ce.binding) == (44, 27, 27, "memory")


def test_standing_pods_take_honey_slots(topo) -> None:
    honey = capacity.node_demand(topo, "honey")
    listeners = {k for k in honey.standing if k.startswith("listener ")}
    assert len(listeners) == 9 and "listener tinyland-docker" not in listeners
    assert honey.standing["arc controller"] == 1
    assert {k: v for k, v in honey.standing.items() if k.startswith("gitlab")} == {
        "gitlab runner docker": 1, "gitlab runner dind": 1, "gitlab runner nix": 1}
    free = capacity._free(topo, "honey", capacity.standing(topo, "honey"))
    assert {r: topo.node("honey").allocatable.get(r) - v for r, v in free.items()} == HONEY_STANDING
    assert capacity.node_demand(topo, "sting").standing == {"listener tinyland-docker": 1}


def test_unplaced_listeners_fall_out_of_the_count(variant) -> None:
    # Without listener placement (no listenerTemplate) the model cannot say where
    # they go: they count nowhere, and the contract check fails (listener-placement).
    topo = variant(lambda d: d["arc"]["listeners"].pop("node"))
    assert "listener tinyland-nix" not in capacity.node_demand(topo, "honey").standing


def test_pod_slots_bind_when_requests_are_tiny(variant) -> None:
    def tiny(d):
        d["nodes"]["sting"]["allocatable"]["pods"] = 30

    f = capacity.fit(variant(tiny), variant(tiny).scale_set("tinyland-docker"))
    # 30 slots less the Docker lane's own listener
    assert (f.fits["pods"], f.admits, f.binding) == (29, 29, "pods")


def test_label_sums_caps_across_overlays(topo) -> None:
    heavy = next(lc for lc in capacity.labels(topo) if lc.label == "tinyland-nix-heavy")
    assert heavy.scale_sets == ["tinyland-nix-heavy", "jess-nix-heavy"]
    assert heavy.overlays == ["jess", "tinyland"]
    assert (heavy.summed_caps, heavy.admits, heavy.debt) == (3, 3, 0)
    # With every other honey pod at its cap (nix 16, dind 20 with the daemon's 500m, operator,
    # kvm, gpu, 3 GitLab x 4, the controller and nine listeners):
    #   cpu  32000 - (16*500 + 20*1000 + 1000 + 2000 + 1000 + 12*500 + 100 + 9*50) = -6550m -> 0 heavy
    # so no heavy runner is admitted at peak: all three overlay slots queue.
    assert (heavy.admits_at_peak, heavy.debt_at_peak) == (0, 3)


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
    # the peak figures above plus the three heavy slots (3 x 4 cpu / 64Gi / 192Gi):
    #   memory 16*1 + 20*2 + 4 + 3*64 + 8 + 4 + 12*1 = 276Gi, + 128Mi + 9*64Mi
    #   pods   16 + 20 + 1 + 3 + 1 + 1 + 12 GitLab + 1 controller + 9 listeners = 64, + 3 utility
    #          jobs (runner-cleanup and the two warm-pool runs: no selector, so honey) = 67
    assert honey.at_caps == {"cpu": 50_550, "memory": 276 * GiB + 704 * MiB, "ephemeral-storage": 1616 * GiB,
                             "pods": 67}
    assert [lane for lane in honey.lanes if lane.startswith("utility job")] == [
        "utility job runner-cleanup", "utility job tinyland-nix-warm-pool-min1",
        "utility job tinyland-nix-warm-pool-min0"]
    assert honey.overcommitted == ["cpu", "memory", "ephemeral-storage"]
    sting = capacity.node_demand(topo, "sting")
    # docker 20 x (100m, 256Mi, 1Gi) + nix-ce 8 x (500m, 4Gi, 1Gi) + dind-ce 16 x (1000m, 2Gi, 1.5Gi)
    # + Docker's listener (50m, 64Mi): the daemons' memory overcommits sting at caps.
    assert sting.at_caps == {"cpu": 22_050, "memory": 69 * GiB + 64 * MiB, "ephemeral-storage": 52 * GiB,
                             "pods": 45}
    assert sting.overcommitted == ["memory"]
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
    assert (label["summed_caps"], label["admits"], label["admits_at_peak"]) == (3, 3, 0)
    table = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "capacity"],
                           capture_output=True, text=True, check=True).stdout
    row = next(line for line in table.splitlines() if line.strip().startswith("jess-nix-heavy"))
    assert row.split() == ["jess-nix-heavy", "1", "7", "3", "7", "97", "3", "memory"]
    standing = next(line for line in table.splitlines() if "standing pods (13 of 110 slots)" in line)
    assert standing.strip() == ("standing pods (13 of 110 slots): 1 arc controller, 9 listener(s), "
                                "1 gitlab runner docker, 1 gitlab runner dind, 1 gitlab runner nix")
    label_row = next(line for line in table.splitlines() if line.startswith("tinyland-nix-heavy "))
    assert label_row.split()[:6] == ["tinyland-nix-heavy", "3", "3", "0", "0", "3"]
    assert label_row.endswith("<- queues at peak")


def test_burst_scenario_is_admitted_by_requests(topo) -> None:
    # runner-topology.txt: "Burst (multiple PRs) | 3 GitLab + 4-6 ARC | Exceeds cluster, queue builds".
    # Its figures are limits (quiet: 3 GitLab x 1 vCPU / 2Gi = "~3 vCPU / 6Gi"; normal: + 2 warm Nix
    # x 4 / 8Gi = "~11 vCPU / 22Gi").  The scheduler admits by requests: six Nix runners beside the
    # standing pods ask 3000m / 6Gi of honey's 29950m / 216Gi free, so none queues; the limits
    # (27 vCPU / 54Gi with GitLab) stay within honey too.  Burst means contention, not a queue.
    burst = capacity.scenario(topo, {"tinyland-nix": 6})
    assert (burst.admitted, burst.queued) == ({"tinyland-nix": 6}, {"tinyland-nix": 0})
    assert burst.limits["honey"] == {"cpu": 6 * 4000 + 3 * 1000, "memory": 6 * 8 * GiB + 3 * 2 * GiB}
    # Every heavy slot of both overlays beside that burst still fits by requests
    # (3 x 64Gi + 6Gi of ~216Gi free memory; 12 + 3 of ~30 free CPUs).
    heavy = capacity.scenario(topo, {"tinyland-nix-heavy": 2, "jess-nix-heavy": 1, "tinyland-nix": 6})
    assert heavy.admitted == {"tinyland-nix-heavy": 2, "jess-nix-heavy": 1, "tinyland-nix": 6}
    over = capacity.scenario(topo, {"tinyland-docker": 20, "tinyland-nix-compute-expansion": 8,
                                    "tinyland-dind-compute-expansion": 16})
    # sting at every overflow cap: the daemons' memory (16 x 2Gi) runs out after docker and nix-ce.
    assert over.admitted["tinyland-dind-compute-expansion"] < 16 and over.queued["tinyland-dind-compute-expansion"] > 0


def test_pod_ceiling_shows_offline(topo) -> None:
    # 2026-05-11: honey's pod count, not its CPU or memory, refused a honey-pinned lane.
    # Beside the 13 standing pods 97 slots are free; tinyland-nix asks its cap of 16 (57 fit by
    # ephemeral-storage), so the pod count refuses its 16th runner once 97 - 16 + 1 = 82 pods
    # outside the contract share honey; tinyland-dind (cap 20, 29 fit by cpu) at 78; the heavy
    # lane (cap 2, 3 fit by memory) at 96; a lane that fits fewer than its cap by a resource
    # ties that resource when the free slots fall to that count.
    pc = capacity.pod_ceiling(topo, "honey")
    assert (pc.slots, pc.standing, pc.at_caps, pc.other_pods, pc.spare_at_caps) == (110, 13, 67, 0, 43)
    assert pc.refused_at == {"tinyland-nix": 82, "tinyland-dind": 78, "tinyland-nix-operator": 97,
                             "tinyland-nix-heavy": 96, "jess-nix-heavy": 97, "tinyland-nix-kvm": 97,
                             "tinyland-nix-gpu": 97}
    # ... while sting has its CPU and memory to spare: not runner availability for honey's lanes.
    assert pc.elsewhere_free == {"sting": {"cpu": 31_950, "memory": topo.node("sting").allocatable.memory - 64 * MiB}}


def test_pod_ceiling_agrees_with_the_scenario(topo) -> None:
    # The ceiling figure is a formula; the scenario packs runners one resource at a time.
    # At the figure the scenario's refusal names the pod count; one pod fewer, it does not.
    for node in ("honey", "sting"):
        for name, k in capacity.pod_ceiling(topo, node).refused_at.items():
            cap = topo.scale_set(name).max_runners
            at = capacity.scenario(topo.with_other_pods({node: k}), {name: cap})
            assert "pods" in at.refused_by[name], (name, k, at)
            if k:
                below = capacity.scenario(topo.with_other_pods({node: k - 1}), {name: cap})
                assert "pods" not in below.refused_by.get(name, []), (name, k, below)


def test_other_pods_take_slots_and_can_be_set(variant) -> None:
    def crowded(d):
        d["nodes"]["honey"]["other_pods"] = 90

    topo = variant(crowded)
    assert capacity.fit(topo, topo.scale_set("tinyland-nix")).fits["pods"] == 7
    assert capacity.node_demand(topo, "honey").standing[capacity.OTHER_PODS] == 90
    burst = capacity.scenario(topo, {"tinyland-nix": 16})
    assert (burst.admitted, burst.queued, burst.refused_by) == (
        {"tinyland-nix": 7}, {"tinyland-nix": 9}, {"tinyland-nix": ["pods"]})
    assert burst.free["honey"]["pods"] == 0 and burst.free["sting"]["pods"] == 109
    pc = capacity.pod_ceiling(topo, "honey")
    assert (pc.other_pods, pc.spare_at_caps) == (90, 110 - 67 - 90)


def test_other_pods_beyond_the_node_slots_is_an_error(variant) -> None:
    import pytest

    from flywheel_runtime.errors import TopologyError

    def over(d):
        d["nodes"]["honey"]["other_pods"] = 111

    with pytest.raises(TopologyError, match=r"nodes\.honey\.other_pods: expected at most the node's 110 pod "
                                            r"slots, got 111"):
        variant(over)


def test_capacity_cli_scenario_and_other_pods() -> None:
    cmd = [sys.executable, "-m", "flywheel_runtime", "topology", "capacity", "--other-pods", "honey=90",
           "--scenario", "tinyland-nix=16"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("tinyland-nix ") and "admitted" in line)
    assert row.split() == ["tinyland-nix", "7", "admitted", "9", "queued", "(Too", "many", "pods", "on", "honey)"]
    assert "pods 0 (90 outside the contract)" in out
    ceiling = next(line for line in out.splitlines() if "pod ceiling (2026-05-11)" in line and "honey" in line)
    assert "tinyland-nix 82 (reached)," in ceiling and "tinyland-nix-heavy 96," in ceiling
    doc = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert doc["scenario"]["queued"] == {"tinyland-nix": 9}
    honey = next(n for n in doc["nodes"] if n["node"] == "honey")
    assert honey["pod_ceiling"]["other_pods"] == 90
    bad = subprocess.run(cmd[:5] + ["--other-pods", "honey=lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("got 'honey=lots'")
