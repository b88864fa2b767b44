"""build.py: cached binaries are reused without Go; a missing toolchain is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel_runtime.errors import BuildError
from flywheel_runtime import toolchain


def test_missing_go_is_one_clear_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError) as err:
        toolchain.build_kubernetes(root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "Go toolchain" in msg
    assert err.value.exit_code == 9


def test_cached_binaries_are_reused_without_a_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub, names, version in (("kubernetes", toolchain.KUBE_COMMANDS, toolchain.KUBERNETES_VERSION),
                                ("etcd", ("etcd",), toolchain.ETCD_VERSION), ("kwok", ("kwok",), toolchain.KWOK_VERSION)):
        base = tmp_path / sub / version
        (base / "bin").mkdir(parents=True)
        for n in names:
            (base / "bin" / n).write_text("#!/bin/sh\n")
        (base / ".complete").write_text(version)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bins = toolchain.ensure_binaries(root=tmp_path)
    assert bins.kube_apiserver == tmp_path / "kubernetes" / toolchain.KUBERNETES_VERSION / "bin" / "kube-apiserver"
    assert bins.kwok.parent.parent.name == toolchain.KWOK_VERSION
    assert set(bins.as_dict()) == {"kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl",
                                   "etcd", "kwok"}


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path))
    assert toolchain.cache_root() == tmp_path
    monkeypatch.delenv("FLYWHEEL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert toolchain.cache_root() == tmp_path / "xdg" / "flywheel-runtime"


# -- kube-network-policies' patch -------------------------------------------------

_UPSTREAM_SHAPE = '''import (
\t"github.com/google/nftables/binaryutil"
\t"github.com/google/nftables/expr"
)

func a() {
\tqueue := &expr.Queue{Num: uint16(c.config.QueueID)}
\tif c.config.FailOpen {
\t\tqueue.Flag = expr.QueueFlagBypass
\t}
\tuse(queue)
}

func b() {
\tqueue := &expr.Queue{Num: uint16(c.config.QueueID)}
\tif c.config.FailOpen {
\t\tqueue.Flag = expr.QueueFlagBypass
\t}
\tuse(queue)
}
'''


def test_network_policies_patch_swaps_both_nft_queues_for_the_xt_target() -> None:
    from flywheel_runtime.toolchain.build import patch_network_policies

    out = patch_network_policies(_UPSTREAM_SHAPE)
    assert "expr.Queue" not in out and "QueueFlagBypass" not in out
    assert out.count('&expr.Target{Name: "NFQUEUE", Rev: 3') == 2
    assert out.count('"github.com/google/nftables/xt"') == 1
    # same queue number, total 1, the bypass flag only when failing open: the upstream semantics
    assert out.count("uint16(c.config.QueueID)") == 2 and out.count("nfqFlags = 1") == 2
    assert out.count("use(queue)") == 2  # the rules that use the verdict are untouched


@pytest.mark.parametrize("source", [_UPSTREAM_SHAPE.split("func b()")[0],
                                    _UPSTREAM_SHAPE.replace('\t"github.com/google/nftables/expr"\n', "")])
def test_network_policies_patch_refuses_code_that_moved(source: str) -> None:
    from flywheel_runtime.toolchain.build import patch_network_policies

    with pytest.raises(BuildError) as err:
        patch_network_policies(source)
    assert "\n" not in str(err.value) and err.value.exit_code == 9


def test_network_policies_patch_fits_the_pinned_upstream() -> None:
    """Against the module proxy's copy of the pinned version, where this machine has it."""
    from flywheel_runtime.toolchain.build import patch_network_policies
    from flywheel_runtime.toolchain.pins import NETWORK_POLICIES_MODULE, NETWORK_POLICIES_VERSION

    try:
        src = toolchain.module_dir(NETWORK_POLICIES_MODULE, NETWORK_POLICIES_VERSION)
    except BuildError as exc:
        pytest.skip(f"no module proxy copy here: {exc}")
    out = patch_network_policies((src / "pkg/networkpolicy/controller.go").read_text())
    assert "expr.Queue{" not in out
