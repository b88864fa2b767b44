"""Go command-line tools built once from the Go module proxy and cached.

A tool lands in ``$FLYWHEEL_CACHE_DIR/<name>/<version>/bin`` with a
``.complete`` stamp written last (as the harness does for the Kubernetes
binaries), so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

from pathlib import Path


def tool_dir(name: str, version: str, root: Path | None = None) -> Path:
    from flywheel_runtime.harness.build import cache_root

    return (root or cache_root()) / name / version


def cached(name: str, version: str, root: Path | None = None) -> Path | None:
    """The built binary, or None when it has not been built (no build attempted)."""
    d = tool_dir(name, version, root)
    binary = d / "bin" / name
    return binary if (d / ".complete").is_file() and binary.is_file() else None


def ensure(name: str, package: str, version: str, root: Path | None = None) -> Path:
    """Build (or reuse) ``go install package@version``; raises BuildError with the log's last line.

    One build path for every Go tool: the harness's :func:`~flywheel_runtime.harness.build.build_tool`
    (progress lines, stamp written last)."""
    from flywheel_runtime.harness.build import GoTool, build_tool

    return build_tool(GoTool(name, version, (package,), (name,)), root=root) / name
