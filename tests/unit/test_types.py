"""The type checker holds the packages ``[tool.mypy]`` in pyproject.toml names
(the error contract, toolchain, client layer, model, harness, audits, canaries
and CLI): ``mypy`` with the project's own configuration finds nothing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_configured_packages_include_the_floors_below_the_cli() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert {"flywheel_runtime.errors", "flywheel_runtime.toolchain", "flywheel_runtime.kube",
            "flywheel_runtime.topology", "flywheel_runtime.harness"} <= set(cfg["packages"])
    assert cfg["disallow_untyped_defs"] is True


@pytest.mark.timeout(600)
def test_mypy_finds_nothing() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is in the test extra (pip install -e '.[test]'; ./dev does it)")
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
