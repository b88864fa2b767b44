"""build.py: cached binaries are reused without Go; a missing toolchain is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel_runtime.errors import BuildError
from flywheel_runtime.harness import build


def test_missing_go_is_one_clear_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError) as err:
        build.build_kubernetes(root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "Go toolchain" in msg
    assert err.value.exit_code == 9


def test_cached_binaries_are_reused_without_a_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub, names, version in (("kubernetes", build.KUBE_COMMANDS, build.KUBERNETES_VERSION),
                                ("etcd", ("etcd",), build.ETCD_VERSION), ("kwok", ("kwok",), build.KWOK_VERSION)):
        base = tmp_path / sub / version
        (base / "bin").mkdir(parents=True)
        for n in names:
            (base / "bin" / n).write_text("#!/bin/sh\n")
        (base / ".complete").write_text(version)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bins = build.ensure_binaries(root=tmp_path)
    assert bins.kube_apiserver == tmp_path / "kubernetes" / build.KUBERNETES_VERSION / "bin" / "kube-apiserver"
    assert bins.kwok.parent.parent.name == build.KWOK_VERSION
    assert set(bins.as_dict()) == {"kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl",
                                   "etcd", "kwok"}


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path))
    assert build.cache_root() == tmp_path
    monkeypatch.delenv("FLYWHEEL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_root() == tmp_path / "xdg" / "flywheel-runtime"
