"""Go command-line tools built once from the Go module proxy and cached.

A tool lands in ``$FLYWHEEL_CACHE_DIR/<name>/<version>/bin`` with a
``.complete`` stamp written last (as the harness does for the Kubernetes
binaries), so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from flywheel_runtime.errors import BuildError


def tool_dir(name: str, version: str, root: Path | None = None) -> Path:
    from flywheel_runtime.harness.build import cache_root

    return (root or cache_root()) / name / version


def cached(name: str, version: str, root: Path | None = None) -> Path | None:
    """The built binary, or None when it has not been built (no build attempted)."""
    d = tool_dir(name, version, root)
    binary = d / "bin" / name
    return binary if (d / ".complete").is_file() and binary.is_file() else None


def ensure(name: str, package: str, version: str, root: Path | None = None) -> Path:
    """Build (or reuse) ``go install package@version``; raises BuildError with the log's last line."""
    if (hit := cached(name, version, root)) is not None:
        return hit
    d = tool_dir(name, version, root)
    go = shutil.which("go")
    if go is None:
        raise BuildError(f"the Go toolchain is not on PATH; install Go >= 1.25 to build {name}")
    (d / "bin").mkdir(parents=True, exist_ok=True)
    log = d / "build.log"
    # A first build takes minutes: say so, on stderr, before it starts.
    print(f"building {name} {version} from the Go module proxy (once; cached in {d}; log {log})",
          file=sys.stderr, flush=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(d / "bin")}
    with log.open("ab") as fh:
        proc = subprocess.run([go, "install", f"{package}@{version}"], env=env, stdout=fh,
                              stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    if proc.returncode != 0 or not (d / "bin" / name).is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"building {name} failed (exit {proc.returncode}): {tail[0][:300]} (log: {log})")
    (d / ".complete").write_text(version + "\n")
    return d / "bin" / name
