"""The cluster harness: a three-node cluster with the platform's real taints
and capacities, on which the real kube-scheduler places each runner class.

Two backends behind one interface (``up() -> kubeconfig``, ``down()``,
``status()``), both built from the topology model:

* ``sim`` — upstream etcd, kube-apiserver, kube-scheduler and
  kube-controller-manager built offline from the Go module proxy, with
  KWOK-simulated nodes (the default where Docker is absent);
* ``kind`` — a kind cluster from the rendered kind config.
"""

from __future__ import annotations

from typing import Any, Protocol

BACKENDS = ("sim", "kind")


class Backend(Protocol):
    name: str

    def up(self, *, log: Any = None) -> Any: ...

    def down(self, *, quiet: bool = False) -> bool: ...

    def status(self) -> dict[str, Any]: ...


def default_backend() -> str:
    from flywheel_runtime.harness import kind

    return "kind" if kind.available() else "sim"


def get_backend(name: str | None = None, cluster_name: str = "flywheel", arc_crds: Any = None) -> Backend:
    """A backend by name; ``arc_crds`` is ARC's CRD directory (see :mod:`.arc`)."""
    from pathlib import Path

    name = name or default_backend()
    crds = Path(arc_crds) if arc_crds else None
    if name == "sim":
        from flywheel_runtime.harness.sim import SimCluster

        return SimCluster(name=cluster_name, arc_crds=crds)
    if name == "kind":
        from flywheel_runtime.harness.kind import KindBackend

        return KindBackend(name=cluster_name, arc_crds=crds)
    raise ValueError(f"unknown cluster backend {name!r} (expected one of {', '.join(BACKENDS)})")
