"""fit.py: rendered lanes scaled to smaller nodes keep their share and order."""

from __future__ import annotations

from fractions import Fraction

from flywheel_runtime.harness import fit
from flywheel_runtime.topology import load, render
from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu

KIND_NODE = {"cpu": "2", "memory": "24Gi", "ephemeral-storage": "250Gi", "pods": "110"}


def test_factors_are_the_smallest_live_share_over_runner_nodes() -> None:
    topo = load()
    f = fit.factors(topo, {n.name: KIND_NODE for n in topo.nodes})
    honey, sting = topo.node("honey"), topo.node("sting")
    assert f["cpu"] == min(Fraction(2000, honey.allocatable.cpu), Fraction(2000, sting.allocatable.cpu))
    assert f["memory"] == min(Fraction(24 << 30, honey.allocatable.memory), Fraction(24 << 30, sting.allocatable.memory))
    # a node the size of the platform's (the sim's) is left alone
    same = {n.name: {"cpu": str(n.allocatable.cpu) + "m", "memory": str(n.allocatable.memory),
                     "ephemeral-storage": str(n.allocatable.ephemeral_storage)} for n in topo.nodes}
    assert set(fit.factors(topo, same).values()) == {Fraction(1)}


def test_every_lane_fits_a_kind_node_and_keeps_its_order() -> None:
    topo = load()
    f = fit.factors(topo, {n.name: KIND_NODE for n in topo.nodes})
    sizes = []
    for ss in topo.scale_sets:
        pod = fit.scale(render.pod(topo, ss.name), f)
        orig = render.pod(topo, ss.name)
        total = sum(parse_cpu(c["resources"].get("requests", {}).get("cpu", "0")) for c in pod["spec"]["containers"])
        assert total <= 2000, ss.name
        before = sum(parse_cpu(c["resources"].get("requests", {}).get("cpu", "0")) for c in orig["spec"]["containers"])
        sizes.append((before, total))
        # placement is untouched
        assert pod["spec"].get("nodeSelector") == orig["spec"].get("nodeSelector")
        assert pod["spec"].get("tolerations") == orig["spec"].get("tolerations")
        for c in pod["spec"]["containers"]:
            lim, req = c["resources"].get("limits", {}), c["resources"].get("requests", {})
            if "memory" in lim and "memory" in req:
                assert parse_bytes(req["memory"]) <= parse_bytes(lim["memory"])
    ordered = sorted(sizes)
    assert [t for _, t in ordered] == sorted(t for _, t in ordered)
