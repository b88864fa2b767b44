"""The real charts, when you have them: every scale set's values through
gha-runner-scale-set 0.14.0 and the controller values through its controller
chart, with ``helm template``.  helm is ``$FLYWHEEL_HELM``, else the
toolchain's, built here from the module proxy when missing (``flywheel-runtime
toolchain ensure helm``, which ``./dev`` runs).  The project does not ship the
charts: ``$FLYWHEEL_ARC_CHARTS`` (the ``charts/`` directory of
actions/actions-runner-controller at tag ``gha-runner-scale-set-0.14.0``),
else ``../shared/arc/gha-runner-scale-set-0.14.0/charts`` beside the
repository (CI has it); skipped only when neither exists."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime import toolchain
from flywheel_runtime.topology import load, render

from flywheel_runtime.harness.arc import SHARED_CHARTS, charts_dir

CHARTS = charts_dir()
pytestmark = pytest.mark.skipif(CHARTS is None, reason=f"ARC's charts are not here: set FLYWHEEL_ARC_CHARTS or "
                                f"put them at {SHARED_CHARTS}")
_HELM: list[str] = []


def helm() -> str:
    """``$FLYWHEEL_HELM``, else the toolchain's helm (a stamp check once built)."""
    if not _HELM:
        _HELM.append(os.environ.get("FLYWHEEL_HELM") or str(toolchain.binary("helm")))
    return _HELM[0]


def helm_template(chart: str, release: str, namespace: str, values: dict[str, Any], tmp: Path) -> list[dict]:
    f = tmp / f"{release}.values.yaml"
    f.write_text(yaml.safe_dump(values, sort_keys=False))
    out = subprocess.run([helm(), "template", release, str(Path(str(CHARTS)) / chart), "-n", namespace,
                          "--kube-version", load().kubernetes_version, "-f", str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("name", [s.name for s in load().scale_sets])
def test_the_chart_creates_exactly_the_rendered_autoscaling_runner_set(topo, name, tmp_path) -> None:
    ss = topo.scale_set(name)
    docs = helm_template("gha-runner-scale-set", name, ss.namespace, render.helm_values(topo, name), tmp_path)
    ars = next(d for d in docs if d["kind"] == "AutoscalingRunnerSet")
    ours = render.autoscaling_runner_set(topo, name)
    assert ars["spec"] == ours["spec"]
    assert ars["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": topo.arc.controller.name,
                                    "namespace": topo.arc.namespace}]


def test_the_controller_chart_places_the_controller(topo, tmp_path) -> None:
    docs = helm_template("gha-runner-scale-set-controller", "arc", topo.arc.namespace,
                         render.controller_values(topo), tmp_path)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["name"] == spec["serviceAccountName"] == topo.arc.controller.name
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": topo.arc.controller.node}
    (c,) = spec["containers"]
    assert c["image"] == topo.arc.controller.image
    assert {"--metrics-addr=:8080", "--listener-metrics-addr=:8080"} <= set(c["args"])
