"""actionlint (built from the Go module proxy) with the label config rendered from the topology."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime import toolchain
from flywheel_runtime.audit import actionlint
from flywheel_runtime.topology import load

WORKFLOWS = sorted((Path(__file__).parents[3] / "canaries" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def binary() -> Path:
    if toolchain.cached_binary("actionlint") is None and shutil.which("go") is None:
        pytest.fail("actionlint is not built and Go is missing: install Go (./dev setup builds it)")
    return toolchain.binary("actionlint")


@pytest.fixture(scope="module")
def topo() -> Any:
    return load()


def _workflow(tmp_path: Path, runs_on: str, run: str = "echo ok") -> Path:
    wf = tmp_path / "wf.yml"
    wf.write_text(yaml.safe_dump({"name": "t", "on": {"push": {}}, "permissions": {},
                                  "jobs": {"j": {"runs-on": runs_on, "steps": [{"run": run}]}}}, sort_keys=False))
    return wf


def test_config_is_every_published_label(topo: Any) -> None:
    cfg = actionlint.config(topo)
    assert cfg["self-hosted-runner"]["labels"] == sorted({lbl for ss in topo.scale_sets for lbl in ss.labels})
    assert {"tinyland-nix-gpu", "tinyland-nix-kvm", "tinyland-nix", "self-hosted"} <= set(actionlint.labels(topo))


def test_render_target_prints_the_config() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "render", "actionlint"],
                         capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(out) == actionlint.config(load())


def test_canary_workflows_pass_actionlint(binary: Path, topo: Any) -> None:
    assert WORKFLOWS, "no canary workflows found"
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing (Debian package `shellcheck`; ./dev setup installs it)")
    res = actionlint.lint(WORKFLOWS, topo, binary)
    assert res.ok, res.output
    assert res.shellcheck


def test_without_the_config_actionlint_rejects_the_lane_labels(binary: Path) -> None:
    """The failure the config exists for (and proof the lint can fail)."""
    proc = subprocess.run([str(binary), "-no-color", "-shellcheck=", *map(str, WORKFLOWS)], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert 'label "tinyland-nix-gpu" is unknown' in proc.stdout and 'label "tinyland-nix-kvm" is unknown' in proc.stdout


def test_a_label_the_platform_does_not_serve_fails(binary: Path, topo: Any, tmp_path: Path) -> None:
    res = actionlint.lint([_workflow(tmp_path, "tinyland-nix-cuda")], topo, binary)
    assert not res.ok and 'label "tinyland-nix-cuda" is unknown' in res.output
    assert actionlint.lint([_workflow(tmp_path, "tinyland-nix-heavy")], topo, binary).ok


def test_run_scripts_go_through_shellcheck(binary: Path, topo: Any, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing (Debian package `shellcheck`; ./dev setup installs it)")
    res = actionlint.lint([_workflow(tmp_path, "tinyland-nix", run="cd $(mktemp -d)\nls\n")], topo, binary)
    assert not res.ok and "shellcheck" in res.output
