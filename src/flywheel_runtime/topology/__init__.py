"""The topology model: the platform's placement contract as one validated file.

``load()`` reads ``topology.yaml`` (shipped beside this module, or
``$FLYWHEEL_TOPOLOGY``, or a path), validates it against
:mod:`flywheel_runtime.topology.schema` and returns a frozen
:class:`~flywheel_runtime.topology.model.Topology`.  Any problem is one
:class:`~flywheel_runtime.errors.TopologyError` line naming the file, the field
path and what was expected (exit code 3).

Attributes resolve lazily so that importing a submodule (or the CLI) does not
pay for the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel_runtime.topology.loader import DEFAULT_TOPOLOGY, default_path, load, load_data
    from flywheel_runtime.topology.model import Node, RunnerClass, ScaleSet, Topology

__all__ = ["DEFAULT_TOPOLOGY", "Topology", "ScaleSet", "Node", "RunnerClass", "load", "load_data", "default_path"]

_LOADER = {"DEFAULT_TOPOLOGY", "default_path", "load", "load_data"}


def __getattr__(name: str) -> Any:
    if name in _LOADER:
        from flywheel_runtime.topology import loader

        return getattr(loader, name)
    if name in {"Topology", "ScaleSet", "Node", "RunnerClass"}:
        from flywheel_runtime.topology import model

        return getattr(model, name)
    raise AttributeError(f"module 'flywheel_runtime.topology' has no attribute {name!r}")
