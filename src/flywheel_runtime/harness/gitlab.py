"""GitLab runners through the real gitlab-runner chart: where the chart is and
``helm install`` of the topology's values (what the HPA e2e runs on kind).

The project does not ship the chart: it is ``../shared/gitlab-runner/
gitlab-runner-0.86.0`` beside the repository root (CI has it too), or
``$FLYWHEEL_GITLAB_CHART``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from flywheel_runtime.errors import SourceMissingError

GITLAB_CHART_VERSION = "0.86.0"
ENV_VAR = "FLYWHEEL_GITLAB_CHART"
REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_CHART = REPO_ROOT.parent / "shared" / "gitlab-runner" / f"gitlab-runner-{GITLAB_CHART_VERSION}"


def chart_dir() -> Path:
    """The chart: ``$FLYWHEEL_GITLAB_CHART``, else the shared tree's."""
    path = Path(os.environ.get(ENV_VAR) or SHARED_CHART)
    if not (path / "Chart.yaml").is_file():
        raise SourceMissingError(f"no gitlab-runner chart at {path} (set ${ENV_VAR})")
    return path


def _helm(args: list[str], values: dict[str, Any], timeout: float) -> subprocess.CompletedProcess[str]:
    from flywheel_runtime import toolchain

    with tempfile.NamedTemporaryFile("w", suffix=".values.yaml") as f:
        yaml.safe_dump(values, f, sort_keys=False)
        f.flush()
        return subprocess.run([str(toolchain.binary("helm")), *args, "-f", f.name],
                              capture_output=True, text=True, timeout=timeout)


def template(release: str, namespace: str, values: dict[str, Any], kube_version: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart: the objects it creates."""
    out = _helm(["template", release, str(chart_dir()), "-n", namespace, "--kube-version", kube_version,
                 "--api-versions", "autoscaling/v2"], values, 120)
    if out.returncode != 0:
        raise RuntimeError(f"helm template {release}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def install(release: str, namespace: str, values: dict[str, Any], kubeconfig: Path, timeout: float = 300) -> None:
    """``helm upgrade --install`` into the cluster ``kubeconfig`` names."""
    out = _helm(["upgrade", "--install", release, str(chart_dir()), "-n", namespace, "--create-namespace",
                 "--kubeconfig", str(kubeconfig), "--wait", "--timeout", f"{int(timeout)}s"], values, timeout + 30)
    if out.returncode != 0:
        raise RuntimeError(f"helm install {release}: {out.stderr.strip()}")
