"""The ARC controller's alert rules as a PrometheusRule, rendered from the topology.

Metric names are ARC's own (gha-runner-scale-set controller and listener
exporters):

* controller: ``gha_controller_running_listeners`` (1/0 per scale set),
  ``gha_controller_pending_ephemeral_runners``,
  ``gha_controller_running_ephemeral_runners``,
  ``gha_controller_failed_ephemeral_runners`` -- labels name, namespace,
  repository, organization, enterprise;
* listener: ``gha_desired_runners``, ``gha_max_runners``, ``gha_min_runners``,
  ``gha_assigned_jobs``, ``gha_running_jobs`` -- same label keys.

Five rules, as the design document counts them: controller down, listener
down, runners stuck pending, scale set at cap, failing runners.  Per-scale-set
thresholds come from the topology (each scale set's own cap), so a cap change
in topology.yaml changes the rules with no hand edit.
"""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import Topology

CONTROLLER_NAMESPACE = "arc-systems"
RULE_NAME = "arc-controller"


def _selector(namespaces: list[str]) -> str:
    if len(namespaces) == 1:
        return f'namespace="{namespaces[0]}"'
    return f'namespace=~"{"|".join(namespaces)}"'


def rules(topo: Topology, *, pending_for: str = "15m", at_cap_for: str = "30m") -> list[dict[str, Any]]:
    namespaces = sorted({ss.namespace for ss in topo.scale_sets})
    sel = _selector(namespaces)
    names = "|".join(sorted(ss.name for ss in topo.scale_sets))
    by = "by (name, namespace)"
    return [
        {
            "alert": "ARCControllerDown",
            # The controller exports gha_controller_running_listeners for every
            # scale set; all of them vanishing means the controller is gone.  No
            # namespace matcher: scrape relabelling may rewrite that label.
            "expr": "absent(gha_controller_running_listeners)",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "ARC controller is down",
                "description": f"No gha_controller_* metrics from the ARC controller in {CONTROLLER_NAMESPACE} "
                               "for 5 minutes: no scale set can create runners.",
            },
        },
        {
            "alert": "ARCListenerDown",
            "expr": f'max {by} (gha_controller_running_listeners{{{sel},name=~"{names}"}}) < 1',
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "ARC listener for {{ $labels.namespace }}/{{ $labels.name }} is not running",
                "description": "The scale set's AutoscalingListener has not been running for 5 minutes: "
                               "jobs for its label queue in GitHub and never reach the cluster.",
            },
        },
        {
            "alert": "ARCRunnersStuckPending",
            # Pending counts idle warm-pool runners too; only pending beyond
            # minRunners is runners that cannot start (scheduling, image pull).
            "expr": (f"max {by} (gha_controller_pending_ephemeral_runners{{{sel}}}) "
                     f"> max {by} (gha_min_runners{{{sel}}})"),
            "for": pending_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Runners of {{ $labels.namespace }}/{{ $labels.name }} stuck pending",
                "description": f"More ephemeral runners pending than minRunners for {pending_for}: the pinned "
                               "node is likely out of pod slots, memory or ephemeral-storage.",
            },
        },
        {
            "alert": "ARCScaleSetAtCap",
            "expr": (f"max {by} (gha_desired_runners{{{sel}}}) "
                     f">= max {by} (gha_max_runners{{{sel}}})"),
            "for": at_cap_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Scale set {{ $labels.namespace }}/{{ $labels.name }} at its maxRunners cap",
                "description": f"Desired runners have been at maxRunners for {at_cap_for}; jobs queue in GitHub. "
                               "Caps are per scale set: check the label's global capacity "
                               "(flywheel-runtime audit labels).",
            },
        },
        {
            "alert": "ARCRunnersFailing",
            "expr": f"max {by} (gha_controller_failed_ephemeral_runners{{{sel}}}) > 0",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Failed ephemeral runners in {{ $labels.namespace }}/{{ $labels.name }}",
                "description": "EphemeralRunners in phase Failed for 10 minutes: inspect their status.failures "
                               "and the runner pod events.",
            },
        },
    ]


def prometheus_rule(topo: Topology) -> dict[str, Any]:
    """A monitoring.coreos.com/v1 PrometheusRule for the ARC controller."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "namespace": CONTROLLER_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "flywheel-runtime"}},
        "spec": {"groups": [{"name": "arc-controller", "rules": rules(topo)}]},
    }


def rule_file(topo: Topology) -> dict[str, Any]:
    """The same rules as a plain Prometheus rule file (what ``promtool check rules`` reads)."""
    return {"groups": prometheus_rule(topo)["spec"]["groups"]}
