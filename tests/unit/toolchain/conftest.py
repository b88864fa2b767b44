"""A ``go`` on PATH that stands in for ``go install``: the toolchain's build path without the proxy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

FAKE_GO = """#!/bin/sh
# stands in for `go install PKG@VERSION`: writes $GOBIN/<last path element of PKG>
for a in "$@"; do pkg=$a; done  # `go install [flags] PKG@VERSION`: the package comes last
echo "go: downloading $pkg" >&2
[ -n "$FAIL" ] && { echo "build failed: $FAIL"; exit 1; }
name=$(basename "${pkg%@*}")
printf '#!/bin/sh\\necho %s\\n' "$name" > "$GOBIN/$name" && chmod +x "$GOBIN/$name"
echo built >> "$CALLS"
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "gobin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO)
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    return tmp_path / "calls"
