"""audit labels, live: envelopes and placement held against the topology, not only caps."""

from __future__ import annotations

import copy

from flywheel_runtime.audit import labels
from flywheel_runtime.topology import load, render


def _live() -> list[dict]:
    topo = load()
    return [render.autoscaling_runner_set(topo, s.name) for s in topo.scale_sets]


def _flags(report: dict, label: str) -> list[str]:
    return next(lbl for lbl in report["labels"] if lbl["label"] == label)["flags"]


def test_live_as_rendered_has_no_drift() -> None:
    report = labels.audit(load(), _live())
    assert [f for lbl in report["labels"] for f in lbl["flags"]] == []


def test_envelope_and_placement_drift_are_flagged() -> None:
    topo = load()
    live = copy.deepcopy(_live())
    dind = next(a for a in live if a["metadata"]["name"] == "tinyland-dind")
    daemon = next(c for c in dind["spec"]["template"]["spec"]["initContainers"] if c["name"] == "dind")
    daemon["resources"] = {"requests": {"ephemeral-storage": "24Gi"}, "limits": {"ephemeral-storage": "40Gi"}}
    docker = next(a for a in live if a["metadata"]["name"] == "tinyland-docker")
    docker["spec"]["listenerTemplate"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "honey"}
    nix = next(a for a in live if a["metadata"]["name"] == "tinyland-nix")
    nix["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "sting"}
    report = labels.audit(topo, live)
    assert _flags(report, "tinyland-dind") == [
        'envelope drift: arc-runners/tinyland-dind container dind: live {"limits":{"ephemeral-storage":"40Gi"},'
        '"requests":{"ephemeral-storage":"24Gi"}} != topology {"limits":{"cpu":"4","ephemeral-storage":"40Gi",'
        '"memory":"8Gi"},"requests":{"cpu":"500m","ephemeral-storage":"24Gi","memory":"1Gi"}}']
    assert _flags(report, "tinyland-docker") == [
        'placement drift: arc-runners/tinyland-docker listener: live nodeSelector {"kubernetes.io/hostname":"honey"} '
        '!= topology {"kubernetes.io/hostname":"sting"}']
    assert _flags(report, "tinyland-nix") == [
        'placement drift: arc-runners/tinyland-nix runner pods: live nodeSelector {"kubernetes.io/hostname":"sting"} '
        '!= topology {"kubernetes.io/hostname":"honey"}']
    row = next(r for lbl in report["labels"] for r in lbl["scale_sets"] if r["scale_set"] == "tinyland-nix")
    assert row["drift"] == _flags(report, "tinyland-nix")
