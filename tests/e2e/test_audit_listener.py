"""prove listener-caps against the sim cluster: real AutoscalingRunnerSets,
AutoscalingListeners and config secrets, real creation timestamps."""

from __future__ import annotations

import threading
import time

import pytest

from tests.e2e.audit_helpers import ars, cli, create

pytestmark = pytest.mark.e2e


def _listener(kube, ns, set_name, min_runners, max_runners):
    name = f"{set_name}-754b578d-listener"
    obj = create(kube, "autoscalinglisteners", ns, {
        "kind": "AutoscalingListener", "metadata": {"name": name},
        "spec": {"githubConfigUrl": "https://github.com/tinyland-inc", "runnerScaleSetId": 3,
                 "autoscalingRunnerSetNamespace": ns, "autoscalingRunnerSetName": set_name,
                 "ephemeralRunnerSetName": f"{set_name}-ers", "minRunners": min_runners,
                 "maxRunners": max_runners, "image": "ghcr.io/actions/gha-runner-scale-set-controller:0.14.0"}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": f"{name}-config"},
                                            "stringData": {"config.json": "{}"}})
    return obj


def _prove(c, ns, *extra):
    return cli("prove", "listener-caps", "--namespace", ns, "--listener-namespace", ns, "--kubeconfig",
               str(c.kubeconfig), "--interval", "0.5", "--json", *extra)


def test_listeners_reflecting_their_caps_prove_at_once(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("prove") as ns:
        for name, lo, hi in (("tinyland-nix", 1, 16), ("tinyland-docker", 0, 20)):
            create(c.kube, "autoscalingrunnersets", ns, ars(name, lo, hi))
            _listener(c.kube, ns, name, lo, hi)
        rc, out, err = _prove(c, ns, "--grace", "60", "--deadline", "30")
        assert rc == 0, err
        assert out["ok"] and {s["name"]: s["state"] for s in out["sets"]} == {"tinyland-nix": "ok",
                                                                               "tinyland-docker": "ok"}


def test_stable_drift_on_a_settled_listener_fails_fast(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("prove") as ns:
        create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-nix", 0, 16))
        _listener(c.kube, ns, "tinyland-nix", 0, 8)  # still carries the frozen cap
        started = time.monotonic()
        # grace 0: the listener counts as settled; a long deadline proves "fast".
        rc, out, err = _prove(c, ns, "--grace", "0", "--deadline", "120")
        assert rc == 1, err
        assert time.monotonic() - started < 60
        assert "stable drift" in err and "max 8" in err and len(err.strip().splitlines()) == 1
        assert out["failures"] and not out["timed_out"]


def test_drift_on_a_young_listener_is_transient_until_the_deadline(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("prove") as ns:
        create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-nix", 0, 16))
        _listener(c.kube, ns, "tinyland-nix", 0, 8)
        rc, out, err = _prove(c, ns, "--grace", "600", "--deadline", "3")
        assert rc == 13, err  # never stable within the grace window: unresolved at the deadline
        assert "unresolved" in err and "younger than 600s" in err
        assert out is None or not out.get("ok")


def test_missing_listener_that_appears_during_the_wait_passes(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("prove") as ns:
        create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-dind", 0, 20))
        timer = threading.Timer(2.0, _listener, args=(c.kube, ns, "tinyland-dind", 0, 20))
        timer.start()
        try:
            rc, out, err = _prove(c, ns, "--grace", "60", "--deadline", "60")
        finally:
            timer.join()
        assert rc == 0, err
        assert out["ok"]


def test_missing_listener_fails_at_the_deadline(flywheel_cluster) -> None:
    c = flywheel_cluster
    with c.namespace("prove") as ns:
        create(c.kube, "autoscalingrunnersets", ns, ars("tinyland-dind", 0, 20))
        rc, _, err = _prove(c, ns, "--grace", "60", "--deadline", "2")
        assert rc == 13 and "AutoscalingListener missing" in err
