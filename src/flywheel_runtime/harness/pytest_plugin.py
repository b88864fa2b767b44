"""pytest plugin: a session-scoped ``flywheel_cluster`` fixture.

Registered as the ``flywheel_cluster`` pytest11 entry point, so any repository
that installs flywheel-runtime can write ``pytest -m e2e`` tests against the
three-node cluster.  Imports nothing heavy until the fixture is used.

``--cluster-backend`` picks ``sim``, ``kind`` or ``both``; by default both
where kind can run, else sim.  With both, every test that uses the fixture runs
once per backend (ids ``[sim]`` / ``[kind]``; pytest groups them, so one
cluster runs at a time).  A test that only one backend can answer says so:
``@pytest.mark.backend("sim", reason="needs honey's 110 pod slots")``.

The handle carries pytest-kind's surface (``kubeconfig_path``,
``kubectl(*args)``, ``load_docker_image(name)``) beside its own.  The topology
is resolved once, here (``--flywheel-topology FILE``, else ``$FLYWHEEL_TOPOLOGY``,
else the shipped one), and handed to the backend's ``up``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flywheel_runtime.harness import Backend
    from flywheel_runtime.kube import Client
    from flywheel_runtime.topology import Topology

MARKERS = (
    "e2e: runs against the three-node cluster harness (real kube-scheduler)",
    "backend(*names, reason): run only on these cluster backends (sim, kind); skipped elsewhere with the reason",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flywheel", "flywheel-runtime cluster harness")
    group.addoption("--cluster-backend", choices=("sim", "kind", "both"), default=None,
                    help="cluster backend(s) for the flywheel_cluster fixture (default: both where kind can run, "
                         "else sim)")
    group.addoption("--flywheel-cluster-name", default="flywheel-test",
                    help="name of the test cluster (default: flywheel-test)")
    group.addoption("--flywheel-keep-cluster", action="store_true",
                    help="leave the test cluster running after the session")
    group.addoption("--flywheel-topology", metavar="FILE", default=None,
                    help="topology file the cluster is built from (default: $FLYWHEEL_TOPOLOGY or the shipped one)")


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def selected_backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--cluster-backend")
    if choice in ("sim", "kind"):
        return [choice]
    from flywheel_runtime.harness import kind

    if choice == "both" or kind.available():
        return ["sim", "kind"]
    return ["sim"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flywheel_cluster" not in metafunc.fixturenames:
        return
    backends = selected_backends(metafunc.config)
    marks = [m for m in metafunc.definition.iter_markers("backend")]
    params = []
    for b in backends:
        allowed = next((m for m in marks if b not in m.args), None)
        skip = [pytest.mark.skip(reason=f"{b} backend: {allowed.kwargs.get('reason', 'not for this backend')}")] \
            if allowed else []
        params.append(pytest.param(b, id=b, marks=skip))
    metafunc.parametrize("flywheel_cluster", params, indirect=True, scope="session")


@dataclass
class FlywheelCluster:
    """Handle the fixture yields: kubeconfig, client layer, topology, helpers."""

    backend: str  # "sim" or "kind"
    kubeconfig: Path
    kube: Client
    topology: Topology
    started_here: bool
    _impl: Backend
    _namespaces: list[str] = field(default_factory=list)

    # -- pytest-kind's surface ---------------------------------------------

    @property
    def kubeconfig_path(self) -> Path:
        return self.kubeconfig

    def kubectl(self, *args: str, **kwargs: Any) -> str:
        """Run the harness's own kubectl against the cluster; return its stdout."""
        from flywheel_runtime import toolchain

        return subprocess.check_output([str(toolchain.kubectl()), *args], env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                                       encoding="utf-8", **kwargs)

    def load_docker_image(self, name: str) -> None:
        """Load a local image into every node (kind only: the sim has no kubelets to run it)."""
        from flywheel_runtime.harness.kind import KindBackend

        if not isinstance(self._impl, KindBackend):
            pytest.skip("the sim backend has no kubelets: images are not run there")
        self._impl.load_image(name)

    # -- ours --------------------------------------------------------------

    def render_pod(self, scale_set: str) -> dict[str, Any]:
        """The lane's pod as rendered; on kind scaled to its nodes (see :mod:`.fit`)."""
        from flywheel_runtime.topology import render

        return self.fit(render.pod(self.topology, scale_set))

    def fit(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with its envelopes scaled to this cluster's nodes (kind's are this machine's)."""
        if self.backend != "kind":
            return obj
        from flywheel_runtime.harness.fit import scale_to_cluster

        return scale_to_cluster(obj, self.topology, self.kube)

    def kubelet_accepted(self, namespace: str, name: str, timeout: float = 60) -> Any:  # a V1Pod
        """Wait until the node's kubelet has taken the pod on (status.hostIP and startTime set)."""
        from flywheel_runtime.kube import wait_for

        def seen() -> Any:
            p = self.kube.core.read_namespaced_pod(name, namespace)
            return p if p.status.host_ip and p.status.start_time else None

        return wait_for(seen, timeout, f"the kubelet to take {namespace}/{name}", interval=0.2)

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
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load

    backend_name = getattr(request, "param", None) or selected_backends(request.config)[0]
    backend = get_backend(backend_name, request.config.getoption("--flywheel-cluster-name"))
    topo = load(request.config.getoption("--flywheel-topology"))
    was_running = backend.status().running
    before = None
    if backend_name == "kind" and not was_running:
        from flywheel_runtime import toolchain
        from flywheel_runtime.harness.kind import engine

        # Only a quiet host compares whole: with another kind cluster on the same
        # engine, its engine, rules and rewritten sysctls rightly stay after our down.
        if not (engine.engine_root(toolchain.cache_root()) / "engine.json").exists():
            before = engine.host_snapshot()
    kubeconfig = backend.up(topo)
    handle = FlywheelCluster(backend=backend_name, kubeconfig=kubeconfig, kube=connect(kubeconfig, check=False),
                             topology=topo, started_here=not was_running, _impl=backend)
    try:
        yield handle
    finally:
        if handle.started_here and not request.config.getoption("--flywheel-keep-cluster"):
            backend.down(quiet=True)
            from flywheel_runtime import toolchain
            from flywheel_runtime.harness.kind import engine

            if before is not None and not (engine.engine_root(toolchain.cache_root()) / "engine.json").exists():
                left = engine.snapshot_diff(before, engine.host_snapshot())
                if left:
                    pytest.fail("kind cluster down left the host changed: " + "; ".join(left), pytrace=False)
