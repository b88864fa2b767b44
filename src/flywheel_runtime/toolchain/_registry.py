"""The toolchain's registry: every component, ``ensure``, ``binary`` (re-exported, lazily, by the package)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.toolchain.build import (
    Binaries,
    KindToolchain,
    build_etcd,
    build_kubernetes,
    build_kwok,
    build_network_policies,
    build_pause,
    build_tool,
    ensure_binaries,
    ensure_kind_toolchain,
    module_dir,
)
from flywheel_runtime.toolchain.cache import cache_root, component_dir, progress, stamp_ok
from flywheel_runtime.toolchain.pins import (
    ETCD_VERSION,
    GO_TOOLS,
    KIND_TOOLS,
    KUBE_COMMANDS,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    NETWORK_POLICIES_VERSION,
    PAUSE_VERSION,
    GoTool,
)

__all__ = ["COMPONENTS", "ETCD_VERSION", "GO_TOOLS", "GROUPS", "KIND_TOOLS", "KUBERNETES_VERSION", "KUBE_COMMANDS",
           "KWOK_VERSION", "NETWORK_POLICIES_VERSION", "PAUSE_VERSION", "Binaries", "Component", "GoTool", "KindToolchain", "binary",
           "build_tool", "cache_root", "cached_binary", "component_dir", "ensure", "ensure_binaries",
           "ensure_kind_toolchain", "kubectl", "module_dir", "progress"]

GROUPS = ("sim", "tools", "kind")


@dataclass(frozen=True)
class Component:
    """One cached build: its name, pinned version, group and how to build it (returns its bin dir)."""

    name: str
    version: str
    group: str  # one of GROUPS
    build: Callable[[Path | None], Path]


def _tool(t: GoTool, group: str) -> Component:
    return Component(t.name, t.version, group, lambda root: build_tool(t, root=root))


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("kubernetes", KUBERNETES_VERSION, "sim", lambda root: build_kubernetes(root=root)),
    Component("etcd", ETCD_VERSION, "sim", lambda root: build_etcd(root=root)),
    Component("kwok", KWOK_VERSION, "sim", lambda root: build_kwok(root=root)),
    *(_tool(t, "tools") for t in GO_TOOLS.values()),
    Component("pause", PAUSE_VERSION, "kind", lambda root: build_pause(root=root)),
    *(_tool(t, "kind") for t in KIND_TOOLS.values()),
    Component("kube-network-policies", NETWORK_POLICIES_VERSION, "kind",
              lambda root: build_network_policies(root=root)),
)}


def ensure(names: list[str] | None = None, *, groups: tuple[str, ...] = GROUPS,
           root: Path | None = None) -> dict[str, Path]:
    """Build (or check the stamps of) ``names`` (default: every component in ``groups``), in
    registry order; return each one's bin dir.  A build prints a start line and one with its
    elapsed time; a cached one prints nothing.  Raises BuildError (exit 9) on the first failure."""
    wanted = list(names) if names else [n for n, c in COMPONENTS.items() if c.group in groups]
    unknown = [n for n in wanted if n not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown toolchain component(s) {', '.join(unknown)} "
                         f"(known: {', '.join(COMPONENTS)})")
    return {n: COMPONENTS[n].build(root) for n in COMPONENTS if n in wanted}


def binary(name: str, root: Path | None = None) -> Path:
    """Build (or reuse) one of the operator tools (:data:`GO_TOOLS`); return its binary."""
    return build_tool(GO_TOOLS[name], root=root) / name


def cached_binary(name: str, root: Path | None = None) -> Path | None:
    """The operator tool's binary when its build finished, else None (no build attempted)."""
    t = GO_TOOLS[name]
    base = component_dir(t.name, t.version, root)
    return base / "bin" / name if stamp_ok(base, t.outputs) else None


def kubectl(root: Path | None = None) -> Path:
    """Where the pinned kubectl lives once ``kubernetes`` is built (no build attempted)."""
    return component_dir("kubernetes", KUBERNETES_VERSION, root) / "bin" / "kubectl"
