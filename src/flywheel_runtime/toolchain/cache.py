"""Where the offline builds live, and how a finished one is told from an interrupted one.

Every component lands in ``<cache root>/<name>/<version>/bin`` beside a
``.complete`` stamp written last, so an interrupted build is simply redone and
a second run only checks stamps.  The cache root is ``$FLYWHEEL_CACHE_DIR``, else
``$XDG_CACHE_HOME/flywheel-runtime``, else ``~/.cache/flywheel-runtime``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

STAMP = ".complete"


def cache_root() -> Path:
    """Where built binaries live: ``$FLYWHEEL_CACHE_DIR`` or the XDG cache."""
    explicit = os.environ.get("FLYWHEEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flywheel-runtime"


def component_dir(name: str, version: str, root: Path | None = None) -> Path:
    """``<root>/<name>/<version>``: one component's build directory (``bin/``, stamp, log)."""
    return (root or cache_root()) / name / version


def stamp_ok(base: Path, outputs: list[str] | tuple[str, ...]) -> bool:
    """The build in ``base`` finished (stamp present) and every output is still there."""
    return (base / STAMP).exists() and all((base / "bin" / n).is_file() for n in outputs)


def write_stamp(base: Path, version: str) -> None:
    (base / STAMP).write_text(version + "\n")


def progress(msg: str) -> None:
    """One progress line on stderr: builds run for minutes on a fresh machine."""
    print(f"build: {msg}", file=sys.stderr, flush=True)


class Step:
    """``with Step("etcd v3.6.8"):`` prints a start line and one with the elapsed time."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> Step:
        self.t0 = time.monotonic()
        progress(f"{self.what} ...")
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        dt = time.monotonic() - self.t0
        progress(f"{self.what} {'failed' if exc_type else 'built'} in {dt:.0f} s")
