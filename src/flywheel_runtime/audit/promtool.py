"""promtool over the rendered alert rules.

promtool itself is built from the Go module proxy by the toolchain
(``toolchain.binary("promtool")``, pinned in :mod:`flywheel_runtime.toolchain.pins`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    output: str


def check_rules(rule_file_text: str, promtool: Path) -> CheckResult:
    """``promtool check rules`` over a rule file's text."""
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml", delete=False) as fh:
        fh.write(rule_file_text)
        path = fh.name
    try:
        proc = subprocess.run([str(promtool), "check", "rules", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    return CheckResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def test_rules(rule_file_text: str, test_file_text: str, promtool: Path) -> CheckResult:
    """``promtool test rules``: evaluate the rules over synthetic series.

    The test file must name the rule file as ``rules.yaml`` in ``rule_files``.
    """
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "rules.yaml").write_text(rule_file_text)
        (Path(d) / "test.yaml").write_text(test_file_text)
        proc = subprocess.run([str(promtool), "test", "rules", "test.yaml"], capture_output=True, text=True, cwd=d)
    return CheckResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())
