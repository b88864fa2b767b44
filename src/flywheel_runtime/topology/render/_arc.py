"""ARC objects: the scale-set and controller charts' values, listener and
controller pods, the AutoscalingRunnerSets the chart creates."""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import Topology
from flywheel_runtime.topology.render._common import (
    LABEL_OVERLAY,
    LABEL_RUNNER_CLASS,
    LABEL_SCALE_SET,
    _placement_spec,
    chart_labels,
    container_resources,
    no_permission_service_account,
    pod_labels,
)
from flywheel_runtime.topology.render._pods import pod_spec


def listener_template(topo: Topology, name: str) -> dict[str, Any]:
    """The scale set's ``listenerTemplate``: placement and the ``listener``
    container's envelope (ARC merges a container named ``listener`` into its own)."""
    lst = topo.scale_set(name).listener
    if lst is None:
        return {}
    container: dict[str, Any] = {"name": "listener"}
    if (res := container_resources(lst.envelope, "listener")):
        container["resources"] = res
    return {"spec": {**_placement_spec(lst.placement), "containers": [container]}}


def helm_values(topo: Topology, name: str, github_config_url: str | None = None) -> dict[str, Any]:
    """gha-runner-scale-set chart values for one scale set, as the real chart
    takes them (``helm template`` needs ``controllerServiceAccount`` offline).

    ``githubConfigUrl`` is the owner overlay's URL unless ``github_config_url``
    overrides it (e.g. a fork's org, or the harness's placeholder)."""
    ss = topo.scale_set(name)
    overlay = topo.overlay(ss.overlay)
    values: dict[str, Any] = {
        "githubConfigUrl": github_config_url or overlay.github_config_url,
        "githubConfigSecret": overlay.github_config_secret,
        "runnerScaleSetName": ss.name,
        "scaleSetLabels": list(ss.labels),
        "minRunners": ss.min_runners,
        "maxRunners": ss.max_runners,
        "template": {"metadata": {"labels": pod_labels(topo, ss)}, "spec": pod_spec(topo, name)},
    }
    if topo.arc is not None:
        ctl = topo.arc.controller
        values["controllerServiceAccount"] = {"namespace": ctl.namespace, "name": ctl.name}
        if (lt := listener_template(topo, name)):
            values["listenerTemplate"] = lt
    return values


def controller_values(topo: Topology) -> dict[str, Any]:
    """gha-runner-scale-set-controller chart values: the controller on its
    node, metrics on the topology's port (controller and listeners)."""
    assert topo.arc is not None
    ctl = topo.arc.controller
    repo, _, tag = ctl.image.rpartition(":")
    values: dict[str, Any] = {
        "replicaCount": ctl.replicas,
        "fullnameOverride": ctl.name,
        "image": {"repository": repo, "tag": tag},
        "serviceAccount": {"create": True, "name": ctl.name},
        "metrics": {"controllerManagerAddr": f":{ctl.metrics_port}", "listenerAddr": f":{ctl.metrics_port}",
                    "listenerEndpoint": "/metrics"},
        "resources": container_resources(ctl.envelope, "manager"),
    }
    spec = _placement_spec(ctl.placement)
    values["nodeSelector"] = spec.get("nodeSelector", {})
    values["tolerations"] = spec.get("tolerations", [])
    if "affinity" in spec:
        values["affinity"] = spec["affinity"]
    return values


def listener_pod(topo: Topology, name: str) -> dict[str, Any]:
    """The listener pod ARC creates for scale set ``name`` (placement and
    envelope from the topology; ARC adds image, args and config secret)."""
    ss = topo.scale_set(name)
    assert ss.listener is not None
    spec = listener_template(topo, name)["spec"]
    spec["containers"][0]["image"] = topo.arc.controller.image if topo.arc else ""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{ss.name}-listener-", "namespace": ss.listener.namespace,
                         "labels": {LABEL_SCALE_SET: ss.name, "app.kubernetes.io/component": "runner-scale-set-listener"}},
            "spec": {"serviceAccountName": f"{ss.name}-listener", **spec}}


def controller_pod(topo: Topology) -> dict[str, Any]:
    """One ARC controller pod as its Deployment makes it (for placement)."""
    assert topo.arc is not None
    ctl = topo.arc.controller
    container = {"name": "manager", "image": ctl.image,
                 "ports": [{"containerPort": ctl.metrics_port, "name": "metrics"}],
                 "resources": container_resources(ctl.envelope, "manager")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{ctl.name}-", "namespace": ctl.namespace,
                         "labels": {"app.kubernetes.io/name": "gha-rs-controller",
                                    "app.kubernetes.io/instance": ctl.name}},
            "spec": {**_placement_spec(ctl.placement), "containers": [container]}}


def autoscaling_runner_set(topo: Topology, name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AutoscalingRunnerSet the gha-runner-scale-set chart creates from
    :func:`helm_values` (or the ``values`` given: the rendered ones as a harness
    changed them; a pre-defined githubConfigSecret is used as named; the
    chart's values-hash and cleanup annotations are left to the chart)."""
    ss = topo.scale_set(name)
    values = values if values is not None else helm_values(topo, name)
    template = {"metadata": values["template"]["metadata"],
                "spec": {**values["template"]["spec"], "serviceAccountName": no_permission_service_account(ss)}}
    spec: dict[str, Any] = {
        "githubConfigUrl": values["githubConfigUrl"],
        "githubConfigSecret": values["githubConfigSecret"],
        "runnerScaleSetName": ss.name,
        "runnerScaleSetLabels": list(values["scaleSetLabels"]),
        "maxRunners": values["maxRunners"],
        "minRunners": values["minRunners"],
        "template": template,
    }
    if "listenerTemplate" in values:
        spec["listenerTemplate"] = values["listenerTemplate"]
    return {
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": ss.name, "namespace": ss.namespace,
                     "labels": {**chart_labels(topo, ss),
                                LABEL_SCALE_SET: ss.name, LABEL_RUNNER_CLASS: ss.label, LABEL_OVERLAY: ss.overlay}},
        "spec": spec,
    }


def autoscaling_runner_sets(topo: Topology) -> list[dict[str, Any]]:
    return [autoscaling_runner_set(topo, s.name) for s in topo.scale_sets]
