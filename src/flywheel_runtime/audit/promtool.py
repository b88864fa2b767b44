"""promtool, built from the Go module proxy, to check the rendered alert rules.

``github.com/prometheus/prometheus`` has no replace directives, so a plain
``go install .../cmd/promtool@VERSION`` works (Prometheus 3.x tags its Go
module as v0.3xx.y).  The binary is cached under
``$FLYWHEEL_CACHE_DIR/promtool/VERSION/bin`` with a stamp written last, as
the harness does for the Kubernetes binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.errors import BuildError

PROMETHEUS_MODULE_VERSION = "v0.316.0"


def _root(root: Path | None) -> Path:
    from flywheel_runtime.harness.build import cache_root

    return (root or cache_root()) / "promtool" / PROMETHEUS_MODULE_VERSION


def cached(root: Path | None = None) -> Path | None:
    """The built promtool, or None when it has not been built (no build attempted)."""
    d = _root(root)
    binary = d / "bin" / "promtool"
    return binary if (d / ".complete").is_file() and binary.is_file() else None


def ensure_promtool(root: Path | None = None) -> Path:
    """Build (or reuse) promtool; raises BuildError with the log's last line."""
    if (hit := cached(root)) is not None:
        return hit
    d = _root(root)
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is not on PATH; install Go >= 1.25 to build promtool")
    (d / "bin").mkdir(parents=True, exist_ok=True)
    log = d / "build.log"
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(d / "bin")}
    with log.open("ab") as fh:
        proc = subprocess.run([go, "install", f"github.com/prometheus/prometheus/cmd/promtool@"
                               f"{PROMETHEUS_MODULE_VERSION}"], env=env, stdout=fh, stderr=subprocess.STDOUT,
                              cwd=tempfile.gettempdir())
    if proc.returncode != 0 or not (d / "bin" / "promtool").is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"building promtool failed (exit {proc.returncode}): {tail[0][:300]} (log: {log})")
    (d / ".complete").write_text(PROMETHEUS_MODULE_VERSION + "\n")
    return d / "bin" / "promtool"


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
