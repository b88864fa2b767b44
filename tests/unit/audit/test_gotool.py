"""Go tools from the module proxy: a progress line on a build, the stamp written last, reuse by stamp."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flywheel_runtime.audit import gotool
from flywheel_runtime.errors import BuildError

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


def test_build_once_then_reuse(fake_go: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cache"
    assert gotool.cached("sometool", "v1.2.3", root) is None
    binary = gotool.ensure("sometool", "example.com/x/cmd/sometool", "v1.2.3", root)
    assert binary == root / "sometool" / "v1.2.3" / "bin" / "sometool" and binary.is_file()
    assert (root / "sometool" / "v1.2.3" / ".complete").read_text() == "v1.2.3\n"
    err = capsys.readouterr().err
    assert "build: sometool v1.2.3 ..." in err and "build: sometool v1.2.3 built in" in err
    assert gotool.ensure("sometool", "example.com/x/cmd/sometool", "v1.2.3", root) == binary
    assert capsys.readouterr().err == ""  # cached: no build, no line
    assert fake_go.read_text().count("built") == 1


def test_a_binary_without_its_stamp_is_rebuilt(fake_go: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    d = root / "sometool" / "v1"
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "sometool").write_text("half-written")  # an interrupted build
    assert gotool.cached("sometool", "v1", root) is None
    gotool.ensure("sometool", "example.com/cmd/sometool", "v1", root)
    assert fake_go.read_text().count("built") == 1 and (d / ".complete").is_file()


def test_failed_build_is_one_line_with_the_log(fake_go: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIL", "no such module")
    with pytest.raises(BuildError, match=r"building sometool v1 failed \(exit 1\): build failed: no such module"):
        gotool.ensure("sometool", "example.com/cmd/sometool", "v1", tmp_path / "cache")
    assert not (tmp_path / "cache" / "sometool" / "v1" / ".complete").exists()


def test_no_go_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="Go toolchain is not on PATH"):
        gotool.ensure("sometool", "example.com/cmd/sometool", "v1", tmp_path / "cache")
