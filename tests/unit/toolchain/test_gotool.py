"""Go tools from the module proxy: a progress line on a build, the stamp written last, reuse by stamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel_runtime import toolchain
from flywheel_runtime.errors import BuildError
from flywheel_runtime.toolchain import GoTool, build_tool, cache


def ensure(name: str, package: str, version: str, root: Path) -> Path:
    return build_tool(GoTool(name, version, (package,), (name,)), root=root) / name


def cached(name: str, version: str, root: Path) -> Path | None:
    base = cache.component_dir(name, version, root)
    return base / "bin" / name if cache.stamp_ok(base, [name]) else None


def test_build_once_then_reuse(fake_go: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cache"
    assert cached("sometool", "v1.2.3", root) is None
    binary = ensure("sometool", "example.com/x/cmd/sometool", "v1.2.3", root)
    assert binary == root / "sometool" / "v1.2.3" / "bin" / "sometool" and binary.is_file()
    assert (root / "sometool" / "v1.2.3" / ".complete").read_text() == "v1.2.3\n"
    err = capsys.readouterr().err
    assert "build: sometool v1.2.3 ..." in err and "build: sometool v1.2.3 built in" in err
    assert ensure("sometool", "example.com/x/cmd/sometool", "v1.2.3", root) == binary
    assert capsys.readouterr().err == ""  # cached: no build, no line
    assert fake_go.read_text().count("built") == 1


def test_a_binary_without_its_stamp_is_rebuilt(fake_go: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    d = root / "sometool" / "v1"
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "sometool").write_text("half-written")  # an interrupted build
    assert cached("sometool", "v1", root) is None
    ensure("sometool", "example.com/cmd/sometool", "v1", root)
    assert fake_go.read_text().count("built") == 1 and (d / ".complete").is_file()


def test_failed_build_is_one_line_with_the_log(fake_go: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIL", "no such module")
    with pytest.raises(BuildError, match=r"building sometool v1 failed \(exit 1\): build failed: no such module"):
        ensure("sometool", "example.com/cmd/sometool", "v1", tmp_path / "cache")
    assert not (tmp_path / "cache" / "sometool" / "v1" / ".complete").exists()


def test_no_go_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="Go toolchain is not on PATH"):
        ensure("sometool", "example.com/cmd/sometool", "v1", tmp_path / "cache")


def test_the_operator_tools_are_components_that_build_by_name(fake_go: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    assert {"promtool", "actionlint", "helm"} <= set(toolchain.GO_TOOLS)
    assert toolchain.cached_binary("helm", root) is None
    built = toolchain.ensure(["helm"], root=root)
    helm = toolchain.GO_TOOLS["helm"]
    assert built == {"helm": root / "helm" / helm.version / "bin"}
    assert toolchain.cached_binary("helm", root) == root / "helm" / helm.version / "bin" / "helm"
    assert toolchain.binary("helm", root) == toolchain.cached_binary("helm", root)
    assert fake_go.read_text().count("built") == 1  # the second ask only checked the stamp
    with pytest.raises(ValueError, match="unknown toolchain component"):
        toolchain.ensure(["no-such-tool"], root=root)


def test_every_component_has_one_group_and_a_pinned_version() -> None:
    groups = {c.group for c in toolchain.COMPONENTS.values()}
    assert groups == set(toolchain.GROUPS)
    assert all(c.version for c in toolchain.COMPONENTS.values())
    # the sim's three come first: `toolchain ensure` builds in registry order
    assert list(toolchain.COMPONENTS)[:3] == ["kubernetes", "etcd", "kwok"]
