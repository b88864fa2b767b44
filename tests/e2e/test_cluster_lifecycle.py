"""`cluster up --topology FILE|status|down` on a throwaway cluster of its own,
built from the file it is given (on both backends): the second ``up`` reuses,
``down`` leaves no process or port behind, and a crashed component makes
``status`` say so."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flywheel_runtime._files import pid_alive
from flywheel_runtime.harness.sim import COMPONENTS, SimCluster

pytestmark = pytest.mark.e2e
FROM_FILE = "e2e.tinyland.dev/topology-file"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", "cluster", *args],
                          capture_output=True, text=True, timeout=180)


def _port_free(port: int) -> bool:
    """Nothing listens on it (SO_REUSEADDR: TIME_WAIT leftovers of closed connections do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _topology_file(tmp_path: Path, mark: str) -> Path:
    """The shipped topology with one more label on honey, so the cluster shows which file it was built from."""
    import yaml

    import flywheel_runtime.topology as topology

    doc = yaml.safe_load(Path(topology.__file__).with_name("topology.yaml").read_text())
    doc["nodes"]["honey"].setdefault("labels", {})[FROM_FILE] = mark
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _honey_label(kubeconfig: Path) -> str | None:
    from flywheel_runtime.kube import connect

    return (connect(kubeconfig).core.read_node("honey").metadata.labels or {}).get(FROM_FILE)


def test_up_reuse_status_down_leaves_nothing_behind(tmp_path: Path) -> None:
    name = f"life-{uuid.uuid4().hex[:6]}"
    cluster = SimCluster(name=name)
    try:
        first = _cli("up", "--backend", "sim", "--name", name, "--topology", str(_topology_file(tmp_path, name)))
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip().splitlines() == [str(cluster.kubeconfig)]  # alone on stdout
        assert "up in" in first.stderr
        assert _honey_label(cluster.kubeconfig) == name  # built from --topology, not the shipped file
        state = json.loads((cluster.state_dir / "state.json").read_text())
        assert set(state["pids"]) == set(COMPONENTS)

        second = _cli("up", "--backend", "sim", "--name", name)
        assert second.returncode == 0 and second.stdout == first.stdout
        assert "reusing" in second.stderr
        assert json.loads((cluster.state_dir / "state.json").read_text())["pids"] == state["pids"]

        st = _cli("status", "--backend", "sim", "--name", name, "--json")
        assert st.returncode == 0
        assert json.loads(st.stdout)["components"] == {c: "running" for c in COMPONENTS}

        # A crashed scheduler: status reports it, exit 1.
        os.kill(state["pids"]["kube-scheduler"], signal.SIGKILL)
        st = _cli("status", "--backend", "sim", "--name", name)
        assert st.returncode == 1
        assert "kube-scheduler            stopped" in st.stdout
    finally:
        down = _cli("down", "--backend", "sim", "--name", name)
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in state["pids"].values())
    assert all(_port_free(p) for p in state["ports"].values())
    assert not cluster.state_dir.exists()
    assert _cli("status", "--backend", "sim", "--name", name).returncode == 1


def test_kind_up_reuse_status_down_leaves_the_host_as_found(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A throwaway kind cluster of its own through the CLI: kubeconfig alone on
    stdout (last), reuse, status, down; then no node container, bridge, rule or
    dockerd is left and the sysctls the kubelets rewrite are as they were."""
    from flywheel_runtime.harness.kind import KindBackend, engine
    from flywheel_runtime.harness.pytest_plugin import selected_backends

    if "kind" not in selected_backends(request.config):
        pytest.skip("kind backend not selected or cannot run here")
    name = f"life-{uuid.uuid4().hex[:6]}"
    cluster = KindBackend(name=name)
    # With another cluster up the engine and its rules stay: only a quiet host compares whole.
    quiet = not (engine.engine_root(cluster.cache) / "engine.json").exists()
    before = engine.host_snapshot()
    try:
        first = subprocess.run([sys.executable, "-m", "flywheel_runtime", "cluster", "up", "--backend", "kind",
                                "--name", name, "--topology", str(_topology_file(tmp_path, name))],
                               capture_output=True, text=True, timeout=900)
        assert first.returncode == 0, first.stderr[-2000:]
        assert first.stdout.strip().splitlines() == [str(cluster.kubeconfig)]
        assert "up in" in first.stderr
        assert _honey_label(cluster.kubeconfig) == name  # built from --topology, not the shipped file
        second = _cli("up", "--backend", "kind", "--name", name)
        assert second.returncode == 0 and second.stdout == first.stdout
        assert "reusing" in second.stderr
        st = _cli("status", "--backend", "kind", "--name", name, "--json")
        assert st.returncode == 0 and json.loads(st.stdout)["running"] is True
    finally:
        down = _cli("down", "--backend", "kind", "--name", name)
    assert down.returncode == 0, down.stderr
    assert _cli("status", "--backend", "kind", "--name", name).returncode == 1
    assert not cluster.state_dir.exists()
    if quiet:
        assert engine.snapshot_diff(before, engine.host_snapshot()) == []
        assert not (engine.engine_root(cluster.cache) / "engine.json").exists()
