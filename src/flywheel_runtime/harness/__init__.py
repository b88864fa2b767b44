"""The cluster harness: a three-node cluster with the platform's real taints
and capacities, on which the real kube-scheduler places each runner class.

Laid out as kind lays out its providers: one contract (:class:`Backend`), one
shared bootstrap (:mod:`.bootstrap`), one folder per backend:

* :mod:`.sim` -- upstream etcd, kube-apiserver, kube-scheduler and
  kube-controller-manager from the toolchain, with KWOK-simulated nodes, its
  PKI and its volume provisioner;
* :mod:`.kind` -- real kubelets in containers: its Docker engine, its offline
  node image and the runner images it loads.

Both take the topology from their caller (``up(topo)``: the CLI's
``--topology`` or the pytest plugin, each resolving it once) and report through
one injected logger (:data:`Log`).  Cluster helpers beside them: :mod:`.arc`
(ARC's CRDs), :mod:`.placement`, :mod:`.fit`, :mod:`.benchmarks`; consumers:
:mod:`.pytest_plugin` and the ``cluster`` command (:mod:`._cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flywheel_runtime.topology import Topology

BACKENDS = ("sim", "kind")

#: The one logger type every backend, the engine and the image builders take:
#: one line of progress, no trailing newline.
Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    """The default :data:`Log`: ``cluster: <msg>`` on stderr."""
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


def quiet_log(msg: str) -> None:
    """A :data:`Log` that says nothing."""


@dataclass(frozen=True)
class ClusterStatus:
    """What ``status()`` knows about one cluster (``cluster status --json`` prints :meth:`as_dict`)."""

    backend: str  # "sim" or "kind"
    name: str
    running: bool
    components: dict[str, str] = field(default_factory=dict)  # component -> "running", "stopped", ...
    kubeconfig: Path | None = None
    server: str | None = None  # sim: the API server's URL
    ports: dict[str, int] | None = None  # sim: component -> loopback port
    image: str | None = None  # kind: the node image the cluster was created from

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"backend": self.backend, "name": self.name, "running": self.running,
                                  "components": dict(self.components)}
        extra = {"kubeconfig": str(self.kubeconfig) if self.kubeconfig else None, "server": self.server,
                 "ports": self.ports, "image": self.image}
        out.update({k: v for k, v in extra.items() if v is not None})
        return out


class Backend(Protocol):
    """One way to run the three-node cluster."""

    name: str

    @property
    def kubeconfig(self) -> Path: ...

    def up(self, topo: Topology) -> Path:
        """Bring the cluster up for ``topo`` (or reuse a running one); return the kubeconfig path."""
        ...

    def down(self, *, quiet: bool = False) -> bool:
        """Stop it and leave nothing behind; True if anything ran."""
        ...

    def status(self) -> ClusterStatus: ...


def default_backend() -> str:
    from flywheel_runtime.harness import kind

    return "kind" if kind.available() else "sim"


def get_backend(name: str | None = None, cluster_name: str = "flywheel", arc_crds: Path | str | None = None,
                *, log: Log = stderr_log) -> Backend:
    """A backend by name; ``arc_crds`` is ARC's CRD directory (see :mod:`.arc`)."""
    name = name or default_backend()
    crds = Path(arc_crds) if arc_crds else None
    if name == "sim":
        from flywheel_runtime.harness.sim import SimCluster

        return SimCluster(name=cluster_name, arc_crds=crds, log=log)
    if name == "kind":
        from flywheel_runtime.harness.kind import KindBackend

        return KindBackend(name=cluster_name, arc_crds=crds, log=log)
    raise ValueError(f"unknown cluster backend {name!r} (expected one of {', '.join(BACKENDS)})")
