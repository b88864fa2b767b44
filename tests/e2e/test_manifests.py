"""Every rendered manifest passes server-side dry-run; the warm pool's
CronJobs are accepted and its patch logic follows the schedule."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from flywheel_runtime.topology import render

pytestmark = pytest.mark.e2e


def test_every_rendered_manifest_passes_server_side_dry_run(flywheel_cluster) -> None:
    c = flywheel_cluster
    topo = c.topology
    objs = list(render.cluster_objects(topo))
    # Runner pods under the account ARC gives them (the chart's no-permission one, which
    # the bootstrap made): the device admission policy admits a device lane's only so.
    account = {s.name: render.arc_additions(topo, s.name)["serviceAccountName"] for s in topo.scale_sets}
    for s in topo.scale_sets:
        pod = render.pod(topo, s.name)
        pod["spec"]["serviceAccountName"] = account[s.name]
        objs.append(pod)
    objs += [render.autoscaling_runner_set(topo, s.name) for s in topo.scale_sets]
    for s in topo.scale_sets:  # Helm values' pod template, as a pod
        tmpl = render.helm_values(topo, s.name)["template"]
        objs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {**tmpl["metadata"], "generateName": f"{s.name}-helm-", "namespace": s.namespace},
                     "spec": {**tmpl["spec"], "serviceAccountName": account[s.name]}})
    for n in render.node_objects(topo):  # Nodes exist already: dry-run a renamed copy
        n = copy.deepcopy(n)
        n["metadata"]["name"] += "-dry-run"
        objs.append(n)
    assert len(objs) > 40
    for obj in objs:
        c.kube.create(obj, dry_run=True) if obj["kind"] in ("Pod", "Node") else c.kube.apply(obj, dry_run=True)


@pytest.mark.parametrize("now,expected", [
    ("2026-11-30T13:00:00+00:00", 1),  # Monday 13:00: business hours start
    ("2026-11-30T20:00:00+00:00", 1),
    ("2026-12-01T01:00:00+00:00", 0),  # Tuesday 01:00: business hours end
    ("2026-12-05T13:30:00+00:00", 0),  # Saturday: no warm pool
    ("2026-12-07T00:59:00+00:00", 0),  # Monday before 01:00: Sunday's 01:00 fired last
])
def test_warm_pool_reconcile_patches_min_runners(flywheel_cluster, now, expected) -> None:
    from flywheel_runtime.audit import warmpool

    c = flywheel_cluster
    topo = c.topology
    for cj in render.warm_pool_cronjobs(topo):
        c.kube.apply(cj)  # accepted by the apiserver
    ars = render.autoscaling_runner_set(topo, "tinyland-nix")
    ars["spec"]["minRunners"] = 1 - expected  # start from the opposite value
    c.kube.apply(ars)
    changes = warmpool.reconcile(c.kube.custom, topo, dt.datetime.fromisoformat(now))
    assert [(ch["scale_set"], ch["to"], ch["applied"]) for ch in changes] == [("tinyland-nix", expected, True)]
    live = c.kube.custom.get_namespaced_custom_object("actions.github.com", "v1alpha1", "arc-runners",
                                                       "autoscalingrunnersets", "tinyland-nix")
    assert live["spec"]["minRunners"] == expected
    # A second reconcile at the same instant changes nothing.
    again = warmpool.reconcile(c.kube.custom, topo, dt.datetime.fromisoformat(now))
    assert [ch["applied"] for ch in again] == [False]
