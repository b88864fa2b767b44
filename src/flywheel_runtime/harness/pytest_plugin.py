"""pytest plugin: a session-scoped ``flywheel_cluster`` fixture.

Registered as the ``flywheel_cluster`` pytest11 entry point, so any repository
that installs flywheel-runtime can write ``pytest -m e2e`` tests against the
three-node cluster.  Imports nothing heavy until the fixture is used.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flywheel_runtime.harness.kube import Kube
    from flywheel_runtime.topology import Topology


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flywheel", "flywheel-runtime cluster harness")
    group.addoption("--cluster-backend", choices=("sim", "kind"), default=None,
                    help="cluster backend for the flywheel_cluster fixture (default: kind with Docker, else sim)")
    group.addoption("--flywheel-cluster-name", default="flywheel-test",
                    help="name of the test cluster (default: flywheel-test)")
    group.addoption("--arc-crds", metavar="DIR", default=None,
                    help="ARC's CRD directory for the test cluster (default: $FLYWHEEL_ARC_CRDS or ../shared)")
    group.addoption("--flywheel-keep-cluster", action="store_true",
                    help="leave the test cluster running after the session")


@dataclass
class FlywheelCluster:
    """Handle the fixture yields: kubeconfig, client layer, topology, helpers."""

    backend: str
    kubeconfig: Path
    kube: Kube
    topology: Topology
    started_here: bool
    _namespaces: list[str] = field(default_factory=list)

    def render_pod(self, scale_set: str) -> dict[str, Any]:
        from flywheel_runtime.topology import render

        return render.pod(self.topology, scale_set)

    @contextlib.contextmanager
    def namespace(self, prefix: str = "e2e") -> Iterator[str]:
        """A fresh namespace, deleted (pods force-deleted) on exit."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kube.ensure_namespace(name)
        try:
            yield name
        finally:
            self.kube.delete_namespace(name, wait=True)


@pytest.fixture(scope="session")
def flywheel_cluster(request: pytest.FixtureRequest) -> Iterator[FlywheelCluster]:
    from flywheel_runtime.harness import get_backend
    from flywheel_runtime.harness.kube import Kube
    from flywheel_runtime.topology import load

    backend_name = request.config.getoption("--cluster-backend")
    backend = get_backend(backend_name, request.config.getoption("--flywheel-cluster-name"),
                          request.config.getoption("--arc-crds"))
    was_running = bool(backend.status()["running"])
    kubeconfig = Path(backend.up())
    handle = FlywheelCluster(backend=type(backend).__name__, kubeconfig=kubeconfig, kube=Kube(kubeconfig),
                             topology=load(), started_here=not was_running)
    try:
        yield handle
    finally:
        if handle.started_here and not request.config.getoption("--flywheel-keep-cluster"):
            backend.down(quiet=True)
