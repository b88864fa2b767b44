"""The design document's capacity table against the real kube-scheduler: for
each row (quiet, normal, burst) the sim, at the platform's capacities, admits
exactly the runners the model's row says (``capacity.capacity_row`` with the
scheduler's count plugged in as ``admitted_by``), and a burst on a crowded
honey queues where the model says it would."""

from __future__ import annotations

import time

import pytest

from flywheel_runtime.topology import capacity, render

from .helpers import fill_pod_slots, gitlab_pods, listener_pod, node_usage

pytestmark = [pytest.mark.e2e, pytest.mark.backend(
    "sim", reason="needs the platform's capacities (honey's pod slots, CPU and memory); kind's nodes have this "
                  "machine's")]


def _settle(c, node: str) -> None:
    """Wait until no pod on ``node`` is still leaving (earlier tests' namespaces)."""
    deadline = time.monotonic() + 60
    while any(p.metadata.deletion_timestamp for p in c.kube.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}").items):
        assert time.monotonic() < deadline, f"pods on {node} still terminating after 60 s"
        time.sleep(0.5)


def _standing(c, ns: str) -> int:
    """The pods the model always counts: the controller, every listener where
    it is placed, the GitLab runners at their minimum replicas."""
    topo = c.topology
    names = [c.kube.create_pod(render.controller_pod(topo), namespace=ns)]
    names += [c.kube.create_pod(listener_pod(topo, s.name), namespace=ns) for s in topo.scale_sets if s.listener]
    names += [c.kube.create_pod(body, namespace=ns) for body in gitlab_pods(c, ns)]
    for n in names:
        c.kube.wait_scheduled(ns, n, timeout=60)
    return len(names)


def _scheduler(c, ns: str):
    """``admitted_by`` for :func:`capacity.capacity_row`: create the asked
    runners (in order, as rendered) and count what the real scheduler binds."""

    def admitted_by(topo, asked: dict[str, int]) -> dict[str, int]:
        runners = {name: [c.kube.create_pod(c.render_pod(name), namespace=ns) for _ in range(n)]
                   for name, n in asked.items()}
        verdicts = {}
        deadline = time.monotonic() + 90
        pending = [p for ps in runners.values() for p in ps]
        while len(verdicts) < len(pending):
            assert time.monotonic() < deadline, f"no verdict for {set(pending) - set(verdicts)}"
            for p in pending:
                if p not in verdicts:
                    v = c.kube.placement(ns, p)
                    if v.scheduled or (v.reason == "Unschedulable" and "waiting for" not in (v.message or "")):
                        verdicts[p] = v
            time.sleep(0.2)
        for name, ps in runners.items():
            for p in ps:
                if verdicts[p].scheduled:
                    assert verdicts[p].node == topo.scale_set(name).node
        return {name: sum(verdicts[p].scheduled for p in ps) for name, ps in runners.items()}

    return admitted_by


@pytest.mark.parametrize("row", ["quiet", "normal", "burst"])
def test_each_document_row_admits_what_the_model_says(flywheel_cluster, row) -> None:
    c = flywheel_cluster
    topo = c.topology
    sc = capacity.named_scenarios(topo)[row]
    with c.namespace(f"table-{row}") as ns:
        _settle(c, "honey")
        assert _standing(c, ns) == sum(k for n in topo.nodes for _, _, k in capacity.standing(topo, n.name))
        model = capacity.capacity_row(topo, sc)
        real = capacity.capacity_row(topo, sc, admitted_by=_scheduler(c, ns), source="sim")
        assert real.scheduler == model.admitted, real.reasons
        assert real.scheduler_source == "sim"
        assert not any(r.startswith("the scheduler (sim)") for r in real.reasons)


def test_a_burst_on_a_crowded_honey_queues_where_the_model_says(flywheel_cluster) -> None:
    """Honey's pod slots filled to three free beside the standing pods: of the
    burst row's runners pinned to honey, three are admitted and the rest queue
    on "Too many pods"; sting's runs: per node, what ``capacity_row`` says for
    the same pods outside the contract.  (Which honey runners win the three
    slots is the scheduler queue's order, so the counts are compared per node.)"""
    c = flywheel_cluster
    topo = c.topology
    sc = capacity.named_scenarios(topo)["burst"]
    free_slots = 3
    with c.namespace("table-crowded") as ns:
        _settle(c, "honey")
        _standing(c, ns)
        fill_pod_slots(c.kube, ns, "honey", topo, leave=free_slots)
        standing_honey = sum(k for _, _, k in capacity.standing(topo, "honey"))
        others = node_usage(c.kube, "honey")["pods"] - standing_honey
        crowded = topo.with_other_pods({"honey": others})
        model = capacity.capacity_row(crowded, sc)

        def per_node(counts: dict[str, int]) -> dict[str, int]:
            out: dict[str, int] = {}
            for name, n in counts.items():
                node = topo.scale_set(name).node
                out[node] = out.get(node, 0) + n
            return out

        on_honey = sum(n for name, n in sc.arc.items() if topo.scale_set(name).node == "honey")
        assert on_honey > free_slots
        assert per_node(model.admitted)["honey"] == free_slots
        assert any("queue, as the document says (refused on pods)" in r for r in model.reasons)
        real = capacity.capacity_row(crowded, sc, admitted_by=_scheduler(c, ns), source="sim")
        assert per_node(real.scheduler) == per_node(model.admitted), real.reasons
        for p in c.kube.core.list_namespaced_pod(ns).items:
            if not p.spec.node_name and (p.metadata.labels or {}).get("flywheel.tinyland.dev/scale-set") in sc.arc:
                assert "Too many pods" in (c.kube.placement(ns, p.metadata.name).message or "")
