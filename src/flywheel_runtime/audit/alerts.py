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

The series are matched as ARC 0.14.0 really labels them, which differs per
exporter:

* controller runner counts: ``name`` is the AutoscalingRunnerSet,
  ``namespace`` its namespace (arc-runners);
* ``gha_controller_running_listeners``: ``name`` is the AutoscalingListener
  (``<set>-<hash>-listener``), ``namespace`` the controller's (arc-systems);
* listener gauges: ``name`` is the EphemeralRunnerSet (``<set>-<5 random>``),
  ``namespace`` the scale set's.

and either ServiceMonitor/PodMonitor ``honorLabels`` setting: with ``true``
ARC's ``namespace`` survives; with ``false`` (the default) it arrives as
``exported_namespace`` and ``namespace`` is the scraped pod's.  Each rule first
reduces every series to ``{name=<scale set>, namespace=<its namespace>}``, so
the comparisons join across exporters under either setting.
"""

from __future__ import annotations

from typing import Any

from flywheel_runtime.topology.model import Topology

CONTROLLER_NAMESPACE = "arc-systems"
RULE_NAME = "arc-controller"

# Kubernetes' generateName suffix and ARC's hashSuffix both come from
# apimachinery's rand alphabet (no vowels, no 0/1/3): 5 characters, and at most 8.
_RAND = "[bcdfghjklmnpqrstvwxz2456789]"
RUNNER_SET_SUFFIX = f"-{_RAND}{{5}}"
LISTENER_SUFFIX = f"-{_RAND}{{1,8}}-listener"


def _per_scale_set(metric: str, names: list[str], namespaces: list[str], suffix: str = "") -> str:
    """``metric`` as one series per scale set, labelled exactly ``{name, namespace}``.

    ``suffix``: what ARC appends to the scale set's name in this exporter's
    ``name`` label.  The scale set goes into a new label first and is aggregated
    on, so two runner sets of one scale set (a rollover) never collide.
    """
    name_re = f"({'|'.join(names)}){suffix}"
    ns = "|".join(namespaces)

    def tagged(matchers: str) -> str:
        return f'label_replace({metric}{{{matchers},name=~"{name_re}"}}, "scale_set", "$1", "name", "{name_re}")'

    by_exported = tagged(f'exported_namespace=~"{ns}"')
    by_namespace = tagged(f'exported_namespace="",namespace=~"{ns}"')
    exported = (f'label_replace(max by (scale_set, exported_namespace) ({by_exported}), '
                f'"namespace", "$1", "exported_namespace", "(.+)")')
    honored = f"max by (scale_set, namespace) ({by_namespace})"
    return f'max by (name, namespace) (label_replace({exported} or {honored}, "name", "$1", "scale_set", "(.+)"))'


def rules(topo: Topology, *, pending_for: str = "15m", at_cap_for: str = "30m") -> list[dict[str, Any]]:
    namespaces = sorted({ss.namespace for ss in topo.scale_sets})
    names = sorted(ss.name for ss in topo.scale_sets)

    def controller(metric: str) -> str:
        return _per_scale_set(metric, names, namespaces)

    def listener(metric: str) -> str:
        return _per_scale_set(metric, names, namespaces, RUNNER_SET_SUFFIX)

    listener_re = f"({'|'.join(names)}){LISTENER_SUFFIX}"
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
            # One series per AutoscalingListener (two overlays' sets of one name
            # stay apart); no namespace matcher: the listener's is the controller's
            # under either honorLabels setting.
            "expr": (f'min by (name, listener) (label_replace(label_replace('
                     f'gha_controller_running_listeners{{name=~"{listener_re}"}}, '
                     f'"listener", "$1", "name", "(.+)"), "name", "$1", "name", "{listener_re}")) < 1'),
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "ARC listener {{ $labels.listener }} of scale set {{ $labels.name }} is not running",
                "description": "The scale set's AutoscalingListener has not been running for 5 minutes: "
                               "jobs for its label queue in GitHub and never reach the cluster.",
            },
        },
        {
            "alert": "ARCRunnersStuckPending",
            # Pending counts idle warm-pool runners too; only pending beyond
            # minRunners is runners that cannot start (scheduling, image pull).
            "expr": (f"{controller('gha_controller_pending_ephemeral_runners')} "
                     f"> {listener('gha_min_runners')}"),
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
            "expr": f"{listener('gha_desired_runners')} >= {listener('gha_max_runners')}",
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
            "expr": f"{controller('gha_controller_failed_ephemeral_runners')} > 0",
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
