"""promtool, built from the Go module proxy, to check the rendered alert rules.

``github.com/prometheus/prometheus`` has no replace directives, so a plain
``go install .../cmd/promtool@VERSION`` works (Prometheus 3.x tags its Go
module as v0.3xx.y).  The binary is cached under
``$FLYWHEEL_CACHE_DIR/promtool/VERSION/bin`` with a stamp written last
(:mod:`.gotool`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.audit import gotool

PROMETHEUS_MODULE_VERSION = "v0.316.0"


def cached(root: Path | None = None) -> Path | None:
    """The built promtool, or None when it has not been built (no build attempted)."""
    return gotool.cached("promtool", PROMETHEUS_MODULE_VERSION, root)


def ensure_promtool(root: Path | None = None) -> Path:
    """Build (or reuse) promtool; raises BuildError with the log's last line."""
    return gotool.ensure("promtool", "github.com/prometheus/prometheus/cmd/promtool", PROMETHEUS_MODULE_VERSION, root)


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
