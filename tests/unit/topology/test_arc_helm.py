"""The real charts, when you have them: every scale set's values through
gha-runner-scale-set 0.14.0 and the controller values through its controller
chart, with ``helm template``.  The project ships neither helm nor the charts;
point ``$FLYWHEEL_HELM`` at a helm binary and ``$FLYWHEEL_ARC_CHARTS`` at the
``charts/`` directory of actions/actions-runner-controller at tag
``gha-runner-scale-set-0.14.0`` to run these (skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime.topology import load, render

HELM, CHARTS = os.environ.get("FLYWHEEL_HELM"), os.environ.get("FLYWHEEL_ARC_CHARTS")
pytestmark = pytest.mark.skipif(not (HELM and CHARTS), reason="set FLYWHEEL_HELM and FLYWHEEL_ARC_CHARTS")


def helm_template(chart: str, release: str, namespace: str, values: dict[str, Any], tmp: Path) -> list[dict]:
    f = tmp / f"{release}.values.yaml"
    f.write_text(yaml.safe_dump(values, sort_keys=False))
    out = subprocess.run([str(HELM), "template", release, str(Path(str(CHARTS)) / chart), "-n", namespace,
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
