"""The alert rules fire and resolve on series shaped as ARC 0.14.0 exports them, under either honorLabels.

Label shapes, read from ARC 0.14.0's source (gha-runner-scale-set-0.14.0):

* controller runner counts (``controllers/actions.github.com/metrics``):
  ``name`` = the AutoscalingRunnerSet, ``namespace`` = its namespace;
* ``gha_controller_running_listeners``: ``name`` = the AutoscalingListener
  (``<set>-<hashSuffix>-listener``), ``namespace`` = the controller's;
* listener gauges (``cmd/ghalistener/metrics``): ``name`` = the
  EphemeralRunnerSet (``<set>-`` plus a 5-character generateName suffix),
  ``namespace`` = the scale set's.

A ServiceMonitor scrape adds the target's own labels (namespace, pod, ...); with
``honorLabels: false`` a clash renames ARC's label to ``exported_<label>``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from flywheel_runtime import toolchain
from flywheel_runtime.audit import alerts, promtool
from flywheel_runtime.topology import load

RUNNERS_NS, CONTROLLER_NS = "arc-runners", alerts.CONTROLLER_NAMESPACE
HASH = {"tinyland-nix": "754b578d", "tinyland-docker": "6c9f5d4b", "tinyland-dind": "58d8b6f9"}
ERS = {"tinyland-nix": "x7k2p", "tinyland-docker": "b4c9z", "tinyland-dind": "q2wzn"}
CONTROLLER_TARGET = {"namespace": CONTROLLER_NS, "pod": "arc-gha-rs-controller-6d5f7c9b8-x2x4z",
                     "container": "manager", "endpoint": "metrics", "instance": "10.42.0.17:8080",
                     "job": "arc-gha-rs-controller", "service": "arc-gha-rs-controller"}


def _scrape(arc: dict[str, str], target: dict[str, str], honor: bool) -> dict[str, str]:
    """What Prometheus stores: ARC's labels plus the target's, clashes resolved as honorLabels says."""
    if honor:
        return {**target, **arc}
    return {**{(f"exported_{k}" if k in target else k): v for k, v in arc.items()}, **target}


def _arc(name: str, namespace: str) -> dict[str, str]:
    # repository and enterprise are empty for an org-level scale set: Prometheus drops empty labels
    return {"name": name, "namespace": namespace, "organization": "tinyland"}


def _listener_target(scale_set: str) -> dict[str, str]:
    pod = f"{scale_set}-{HASH[scale_set]}-listener"
    return {"namespace": CONTROLLER_NS, "pod": pod, "container": "listener", "endpoint": "metrics",
            "instance": "10.42.0.31:8080", "job": pod, "service": pod}


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


def controller(metric: str, scale_set: str, values: str, honor: bool, namespace: str = RUNNERS_NS) -> dict[str, str]:
    return _series(metric, _scrape(_arc(scale_set, namespace), CONTROLLER_TARGET, honor), values)


def listener_up(scale_set: str, values: str, honor: bool) -> dict[str, str]:
    arc = _arc(f"{scale_set}-{HASH[scale_set]}-listener", CONTROLLER_NS)
    return _series("gha_controller_running_listeners", _scrape(arc, CONTROLLER_TARGET, honor), values)


def listener(metric: str, scale_set: str, values: str, honor: bool) -> dict[str, str]:
    arc = _arc(f"{scale_set}-{ERS[scale_set]}", RUNNERS_NS)
    return _series(metric, _scrape(arc, _listener_target(scale_set), honor), values)


def _expected(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    ann = {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v)
           for k, v in rule["annotations"].items()}
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": ann}


def _scenario(honor: bool) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Sixty minutes at 1m: tinyland-nix healthy throughout (with a warm idle runner);
    tinyland-dind's listener down 5m-15m (its gauges gone with it); tinyland-docker stuck
    pending to 30m, at its cap to 40m, failing 10m-29m; a scale set outside the topology
    failing throughout (ignored)."""
    r = {x["alert"]: x for x in alerts.rules(load())}
    nix, docker, dind = "tinyland-nix", "tinyland-docker", "tinyland-dind"
    series = [
        listener_up(nix, "1x60", honor), listener("gha_min_runners", nix, "1x60", honor),
        listener("gha_max_runners", nix, "16x60", honor), listener("gha_desired_runners", nix, "1x60", honor),
        controller("gha_controller_pending_ephemeral_runners", nix, "1x60", honor),  # the warm idle runner
        controller("gha_controller_failed_ephemeral_runners", nix, "0x60", honor),

        listener_up(dind, "1x4 0x11 1x44", honor),
        listener("gha_min_runners", dind, "0x4 _x11 0x44", honor),
        listener("gha_max_runners", dind, "20x4 _x11 20x44", honor),
        listener("gha_desired_runners", dind, "0x4 _x11 0x44", honor),
        controller("gha_controller_pending_ephemeral_runners", dind, "0x60", honor),
        controller("gha_controller_failed_ephemeral_runners", dind, "0x60", honor),

        listener_up(docker, "1x60", honor), listener("gha_min_runners", docker, "0x60", honor),
        listener("gha_max_runners", docker, "20x60", honor),
        listener("gha_desired_runners", docker, "20x40 5x19", honor),
        controller("gha_controller_pending_ephemeral_runners", docker, "3x30 0x29", honor),
        controller("gha_controller_failed_ephemeral_runners", docker, "0x9 2x19 0x30", honor),

        controller("gha_controller_failed_ephemeral_runners", "tinyland-nix", "4x60", honor, namespace="elsewhere"),
    ]
    at = {"name": docker, "namespace": RUNNERS_NS}
    down = {"name": dind, "listener": f"{dind}-{HASH[dind]}-listener"}
    checks = [
        ("ARCListenerDown", "9m", []), ("ARCListenerDown", "11m", [_expected(r["ARCListenerDown"], down)]),
        ("ARCListenerDown", "20m", []),
        ("ARCRunnersStuckPending", "14m", []),
        ("ARCRunnersStuckPending", "16m", [_expected(r["ARCRunnersStuckPending"], at)]),
        ("ARCRunnersStuckPending", "35m", []),
        ("ARCScaleSetAtCap", "29m", []), ("ARCScaleSetAtCap", "31m", [_expected(r["ARCScaleSetAtCap"], at)]),
        ("ARCScaleSetAtCap", "45m", []),
        ("ARCRunnersFailing", "18m", []), ("ARCRunnersFailing", "21m", [_expected(r["ARCRunnersFailing"], at)]),
        ("ARCRunnersFailing", "35m", []),
        ("ARCControllerDown", "30m", []),
    ]
    return series, [{"eval_time": t, "alertname": a, "exp_alerts": e} for a, t, e in checks]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("honor", [True, False], ids=["honorLabels-true", "honorLabels-false"])
def test_every_rule_fires_and_resolves_on_arc_series(honor: bool) -> None:
    binary = toolchain.binary("promtool")
    rules = {r["alert"]: r for r in alerts.rules(load())}
    series, checks = _scenario(honor)
    tests = [
        {"interval": "1m", "input_series": series, "alert_rule_test": checks},
        # the controller gone: nothing gha_controller_* at all
        {"interval": "1m", "input_series": [_series("up", {"job": "unrelated"}, "1x20")], "alert_rule_test": [
            {"eval_time": "4m", "alertname": "ARCControllerDown", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "ARCControllerDown",
             "exp_alerts": [_expected(rules["ARCControllerDown"], {})]}]},
    ]
    test_file = yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    res = promtool.test_rules(yaml.safe_dump(alerts.rule_file(load())), test_file, binary)
    assert res.ok, res.output
    assert "SUCCESS" in res.output


def test_scrape_shapes_are_what_each_setting_stores() -> None:
    """The fixture itself: honorLabels false moves ARC's namespace to exported_namespace."""
    kept = controller("gha_controller_failed_ephemeral_runners", "tinyland-docker", "0", True)["series"]
    moved = controller("gha_controller_failed_ephemeral_runners", "tinyland-docker", "0", False)["series"]
    assert f'namespace="{RUNNERS_NS}"' in kept and "exported_namespace" not in kept
    assert f'exported_namespace="{RUNNERS_NS}"' in moved and f',namespace="{CONTROLLER_NS}"' in moved
