"""celcheck (``celcheck/``): the rendered ValidatingAdmissionPolicies evaluated
by kube-apiserver's own CEL compiler and validator (k8s.io/apiserver, the
Kubernetes version the harness builds), offline.  Built once from the Go module
proxy into the tool cache, keyed on its sources (``toolchain.build.build_module``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("celcheck")


def ensure() -> Path:
    """The celcheck binary (built by the toolchain when its sources changed)."""
    from flywheel_runtime.toolchain.build import build_module

    return build_module(SOURCE, "celcheck")


def evaluate(binary: Path, policy: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Case name -> {"denied", "errors", "messages"} as the API server's validator decides."""
    proc = subprocess.run([str(binary)], input=json.dumps({"policy": policy, "cases": cases}),
                          capture_output=True, text=True, check=True)
    return {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
