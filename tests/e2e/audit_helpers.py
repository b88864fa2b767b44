"""Shared helpers for the audit e2e tests: run the CLI against the sim
cluster, build ARC objects with real owner references, write a topology copy
whose scale sets live in a test namespace (so tests never share objects)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

GROUP, VERSION = "actions.github.com", "v1alpha1"
# What ARC's real CRDs require of every EphemeralRunner spec (and a set's ephemeralRunnerSpec).
RUNNER_SPEC = {"githubConfigUrl": "https://github.com/tinyland-inc", "githubConfigSecret": "arc-github-app",
               "runnerScaleSetId": 1}


def cli(*argv: str, timeout: float = 120) -> tuple[int, Any, str]:
    """Run ``flywheel-runtime`` in a subprocess; parse stdout as JSON when it is."""
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", *argv], capture_output=True, text=True,
                         timeout=timeout)
    try:
        data: Any = json.loads(out.stdout) if out.stdout.strip() else None
    except json.JSONDecodeError:
        data = out.stdout
    return out.returncode, data, out.stderr


def topology_in(topo: Any, namespace: str, tmp_path: Path) -> Path:
    """The shipped topology with every scale set moved into ``namespace``."""
    raw = copy.deepcopy(topo.raw)
    for s in raw["scale_sets"]:
        s["namespace"] = namespace
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def create(kube: Any, plural: str, namespace: str, body: dict[str, Any], status: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body.setdefault("apiVersion", f"{GROUP}/{VERSION}")
    body["metadata"]["namespace"] = namespace
    obj = kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    if status is not None:
        obj = kube.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural,
                                                                obj["metadata"]["name"], {"status": status})
    return obj


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def ars(name: str, min_runners: int = 0, max_runners: int = 5, labels: list[str] | None = None) -> dict[str, Any]:
    return {"kind": "AutoscalingRunnerSet", "metadata": {"name": name},
            "spec": {"githubConfigUrl": "https://github.com/tinyland-inc", "githubConfigSecret": "arc-github-app",
                     "runnerScaleSetName": name, "runnerScaleSetLabels": labels or [name],
                     "minRunners": min_runners, "maxRunners": max_runners}}


def names(kube: Any, plural: str, namespace: str) -> set[str]:
    items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
    return {i["metadata"]["name"] for i in items}
