"""ARC's real CRDs on the cluster, the chart-shaped objects they accept, and the
ARC control plane's pods placed where the topology says."""

from __future__ import annotations

import pytest

from flywheel_runtime.harness import arc
from flywheel_runtime.topology import capacity, load, render

from .helpers import gitlab_pods, listener_pod

pytestmark = pytest.mark.e2e


def test_the_cluster_runs_arcs_real_crds(flywheel_cluster) -> None:
    c = flywheel_cluster
    src = arc.crd_source()
    if not src.real:
        pytest.skip("no real ARC CRD directory here")
    crd = c.kube.ext.read_custom_resource_definition("autoscalingrunnersets.actions.github.com")
    spec_props = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
    # The hand-written fallback leaves the templates opaque; ARC's own declares every PodSpec field.
    assert spec_props["listenerTemplate"].properties["spec"].properties["containers"] is not None
    assert {m.manager for m in crd.metadata.managed_fields if m.operation == "Apply"} == {"flywheel-runtime"}


@pytest.mark.parametrize("name", [s.name for s in load().scale_sets])
def test_rendered_scale_sets_pass_the_real_crds_unpruned(flywheel_cluster, name) -> None:
    c = flywheel_cluster
    ars = render.autoscaling_runner_set(c.topology, name)
    back = c.kube.server_side_apply(ars, dry_run=True)
    # Server-side apply prunes what the structural schema does not declare: nothing may go.
    assert back["spec"]["template"] == ars["spec"]["template"]
    assert back["spec"]["listenerTemplate"] == ars["spec"]["listenerTemplate"]
    assert back["spec"]["runnerScaleSetLabels"] == ars["spec"]["runnerScaleSetLabels"]


def test_listeners_and_controller_land_where_the_topology_places_them(flywheel_cluster) -> None:
    c = flywheel_cluster
    topo = c.topology
    with c.namespace("arc-plane") as ns:
        pods = {"controller": (c.kube.create_pod(render.controller_pod(topo), namespace=ns),
                               topo.arc.controller.node)}
        for s in topo.scale_sets:
            pods[s.name] = (c.kube.create_pod(listener_pod(topo, s.name), namespace=ns), s.listener.node)
        landed = {k: c.kube.wait_scheduled(ns, name, timeout=60).node for k, (name, _) in pods.items()}
        assert landed == {k: node for k, (_, node) in pods.items()}
        assert landed["tinyland-docker"] == "sting" and landed["jess-nix-heavy"] == "honey"


@pytest.mark.backend("sim", reason="the burst's figures are the platform's capacities; kind's nodes have this "
                                    "machine's")
def test_burst_scenario_is_what_the_scheduler_admits(flywheel_cluster) -> None:
    """The document's "3 GitLab + 4-6 ARC: exceeds cluster, queue builds" against
    the real scheduler: by requests, every pod is admitted (see the capacity test)."""
    c = flywheel_cluster
    topo = c.topology
    expected = capacity.scenario(topo, {"tinyland-nix": 6})
    assert expected.queued == {"tinyland-nix": 0}
    with c.namespace("burst") as ns:
        names = [c.kube.create_pod(body, namespace=ns) for body in gitlab_pods(c, ns)]
        names += [c.kube.create_pod(c.render_pod("tinyland-nix"), namespace=ns) for _ in range(6)]
        nodes = [c.kube.wait_scheduled(ns, n, timeout=60).node for n in names]
        assert nodes == ["honey"] * 9
