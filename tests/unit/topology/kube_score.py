"""kube-score, the manifest linter: a toolchain component built from the Go module
proxy (``flywheel-runtime toolchain ensure kube-score``)."""

from __future__ import annotations

from pathlib import Path

from flywheel_runtime.toolchain import pins

KUBE_SCORE_VERSION = pins.GO_TOOLS["kube-score"].version


def ensure() -> Path:
    """The kube-score binary, built once into the tool cache."""
    from flywheel_runtime import toolchain

    return toolchain.binary("kube-score")


def cached() -> Path | None:
    from flywheel_runtime import toolchain

    return toolchain.cached_binary("kube-score")
