"""``flywheel-runtime toolchain ensure``: NAME<TAB>PATH per component, built once, unknown names refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime import toolchain


def _ensure(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLYWHEEL_CACHE_DIR": str(cache), "FLYWHEEL_KIND": "0"}
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", "toolchain", "ensure", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_ensure_builds_the_named_components_once(fake_go: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _ensure("helm", "actionlint", cache=cache)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    # registry order, whatever the order asked
    bindir = {n: toolchain.component_dir(n, toolchain.GO_TOOLS[n].version, cache) / "bin" for n in ("actionlint", "helm")}
    assert lines == [f"actionlint\t{bindir['actionlint']}", f"helm\t{bindir['helm']}"]
    assert "build: helm v3.17.3 ..." in first.stderr
    again = _ensure("helm", "actionlint", cache=cache)
    assert again.returncode == 0 and again.stdout == first.stdout and again.stderr == ""  # stamps only
    assert fake_go.read_text().count("built") == 2


def test_kind_builds_are_skipped_where_kind_cannot_run(fake_go: Path, tmp_path: Path) -> None:
    out = _ensure("promtool", "node-image", "runner-images", cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    assert [ln.split("\t")[0] for ln in out.stdout.splitlines()] == ["promtool"]
    assert "skipping node-image: the kind backend cannot run here" in out.stderr


def test_an_unknown_component_is_a_usage_error(tmp_path: Path) -> None:
    out = _ensure("no-such-thing", cache=tmp_path / "cache")
    assert out.returncode == 2 and "unknown component 'no-such-thing'" in out.stderr
    assert not (tmp_path / "cache").exists()


def test_a_failed_build_is_one_line_and_exit_9(fake_go: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIL", "module refused")
    out = _ensure("helm", cache=tmp_path / "cache")
    assert out.returncode == 9
    assert out.stderr.strip().splitlines()[-1].startswith("flywheel-runtime: building helm v3.17.3 failed")


def test_the_cli_lists_exactly_the_registry() -> None:
    from flywheel_runtime.toolchain import COMPONENTS
    from flywheel_runtime.toolchain.pins import COMPONENT_NAMES

    assert tuple(COMPONENTS) == COMPONENT_NAMES


def test_a_runtime_command_does_not_load_the_build_path() -> None:
    # `hints` and the hooks run before every job: registering `toolchain` must stay cheap.
    import subprocess
    import sys

    code = ("import sys; from flywheel_runtime import cli; cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('flywheel_runtime.toolchain')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flywheel_runtime.toolchain.build" not in out and "flywheel_runtime.toolchain._registry" not in out
