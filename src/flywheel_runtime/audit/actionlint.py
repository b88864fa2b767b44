"""actionlint against the platform's real runner labels.

actionlint rejects any ``runs-on`` label it does not know; self-hosted labels
come from an ``actionlint.yaml``.  :func:`config` renders that file from the
topology (every label an ARC scale set publishes), so a repository on the
platform lints ``runs-on: tinyland-nix-gpu`` against the live taxonomy and a
label the platform does not serve fails its lint.  ``topology render
actionlint`` prints it.

actionlint itself is built from the Go module proxy by the toolchain
(``toolchain.binary("actionlint")``); it runs
shellcheck over ``run:`` scripts when shellcheck is on PATH (Debian's package).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flywheel_runtime.topology.model import Topology


def labels(topo: Topology) -> list[str]:
    """Every label a scale set publishes (class label and tags), sorted, once each."""
    return sorted({lbl for ss in topo.scale_sets for lbl in ss.labels})


def config(topo: Topology) -> dict[str, Any]:
    """An ``actionlint.yaml`` (``.github/actionlint.yaml`` in a repository)."""
    return {"self-hosted-runner": {"labels": labels(topo)}}


@dataclass(frozen=True)
class LintResult:
    ok: bool
    output: str
    shellcheck: str | None  # the shellcheck actionlint ran, or None when none was on PATH


def lint(workflows: list[Path], topo: Topology, binary: Path) -> LintResult:
    """actionlint over ``workflows`` with the topology's label config."""
    shellcheck = shutil.which("shellcheck")
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "actionlint.yaml"
        cfg.write_text(yaml.safe_dump(config(topo), sort_keys=False))
        proc = subprocess.run([str(binary), "-no-color", "-config-file", str(cfg), f"-shellcheck={shellcheck or ''}",
                               *map(str, workflows)], capture_output=True, text=True)
    return LintResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip(), shellcheck)
