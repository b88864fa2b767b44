"""The Actions-service conformance program (conformance/actions, Go), built once per
machine by the toolchain (:func:`flywheel_runtime.toolchain.build.build_module`: progress
lines, one-line BuildError with the log, cached on its sources)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "conformance" / "actions"
NAME = "actions-conformance"


def build_conformance(source: Path = SOURCE, root: Path | None = None) -> Path:
    """Build (or reuse) the conformance binary; return its path.  Raises BuildError."""
    from flywheel_runtime.toolchain.build import build_module

    return build_module(source, NAME, root)
