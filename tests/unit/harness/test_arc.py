"""ARC's real CRDs: where they come from, and how they are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.errors import ExitCode, SourceMissingError
from flywheel_runtime.harness import arc

REAL = arc.SHARED_CRDS
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/arc CRDs not present")


class FakeKube:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []
        self.waited: list[str] | None = None

    def server_side_apply(self, obj: dict[str, Any], *, field_manager: str) -> dict[str, Any]:
        self.applied.append((obj["metadata"]["name"], field_manager))
        return obj

    def wait_crds_established(self, timeout: float = 60, names: list[str] | None = None) -> None:
        self.waited = names


@needs_real
def test_default_is_the_shared_real_crds(monkeypatch) -> None:
    monkeypatch.delenv(arc.ENV_VAR, raising=False)
    src = arc.crd_source()
    assert (src.directory, src.real, src.origin) == (REAL, True, "shared")
    names = sorted(c["metadata"]["name"] for c in arc.load_crds(src))
    assert names == ["autoscalinglisteners.actions.github.com", "autoscalingrunnersets.actions.github.com",
                     "ephemeralrunners.actions.github.com", "ephemeralrunnersets.actions.github.com"]


@needs_real
def test_install_server_side_applies_every_crd(monkeypatch) -> None:
    monkeypatch.delenv(arc.ENV_VAR, raising=False)
    kube, said = FakeKube(), []
    src = arc.install_crds(kube, REAL, log=said.append)  # type: ignore[arg-type]
    assert src.origin == "--arc-crds"
    assert sorted(n for n, _ in kube.applied) == sorted(kube.waited or [])
    assert {m for _, m in kube.applied} == {"flywheel-runtime"} and len(kube.applied) == 4
    assert said == [f"ARC CRDs: 4 installed by server-side apply from {REAL} (--arc-crds)"]


def test_env_var_is_used_and_must_exist(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
                                     "metadata: {name: things.example.com}\n")
    monkeypatch.setenv(arc.ENV_VAR, str(tmp_path))
    src = arc.crd_source()
    assert (src.directory, src.origin) == (tmp_path, "$FLYWHEEL_ARC_CRDS")
    monkeypatch.setenv(arc.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(SourceMissingError) as err:
        arc.crd_source()
    assert str(err.value).startswith(f"ARC CRD directory {tmp_path / 'nope'} (from $FLYWHEEL_ARC_CRDS) does not "
                                     "exist or holds no *.yaml")
    assert err.value.exit_code == ExitCode.SOURCE_MISSING


def test_fallback_says_so(monkeypatch) -> None:
    monkeypatch.delenv(arc.ENV_VAR, raising=False)
    monkeypatch.setattr(arc, "SHARED_CRDS", Path("/nonexistent/crds"))
    kube, said = FakeKube(), []
    src = arc.install_crds(kube, log=said.append)  # type: ignore[arg-type]
    assert (src.real, src.origin) == (False, "fallback")
    assert "hand-written FALLBACK subset, which is not ARC's schema" in said[0]
    assert len(kube.applied) == 4


def test_cluster_up_rejects_a_missing_crd_directory(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "cluster", "up", "--backend", "sim",
                          "--name", "arc-crd-test", "--arc-crds", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == ExitCode.SOURCE_MISSING, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"flywheel-runtime: ARC CRD directory {tmp_path / 'missing'} (from --arc-crds) does not exist")
