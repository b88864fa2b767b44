"""Backend structure that needs no running cluster: kind config, sim state
handling, the CLI surface, the pytest plugin's weight, scenario shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel_runtime.errors import ClusterError
from flywheel_runtime.harness import ClusterStatus, get_backend
from flywheel_runtime.harness.kind import KindBackend, available, cluster_config
from flywheel_runtime.harness.sim import SimCluster
from flywheel_runtime.topology import load, render


def test_kind_config_carries_the_topology_nodes() -> None:
    topo = load()
    cfg = cluster_config(topo, "t", kvm=True)
    assert cfg["name"] == "t" and cfg["kind"] == "Cluster"
    rendered = render.kind_config(topo)["nodes"]
    assert [{k: v for k, v in n.items() if k != "extraMounts"} for n in cfg["nodes"]] == rendered
    # this host's needs, on top of the topology: no kindnetd, cgroup v1, /dev/kvm on honey only
    assert cfg["networking"]["disableDefaultCNI"] is True and cfg["networking"]["ipFamily"] == "ipv4"
    assert any("failCgroupV1: false" in p for p in cfg["kubeadmConfigPatches"])
    mounts = {n["labels"]["flywheel.tinyland.dev/node"]: n.get("extraMounts") for n in cfg["nodes"]}
    assert mounts == {"honey": [{"hostPath": "/dev/kvm", "containerPath": "/dev/kvm"}], "sting": None,
                      "bumble": None}
    assert all("extraMounts" not in n for n in cluster_config(topo, "t", kvm=False)["nodes"])


def test_kind_config_installs_the_device_lanes_handlers(tmp_path: Path) -> None:
    import json

    from flywheel_runtime import toolchain

    ctr = toolchain.component_dir("containerd", toolchain.KIND_TOOLS["containerd"].version) / "bin" / "ctr"
    if not ctr.exists():
        pytest.skip(f"containerd's ctr is not built yet ({ctr})")
    cfg = cluster_config(load(), "t", kvm=False, device_specs=(tmp_path, ctr))
    handlers = [p for p in cfg["containerdConfigPatches"] if "base_runtime_spec" in p]
    assert len(handlers) == 2 and all("SystemdCgroup = true" in h for h in handlers)
    for node in cfg["nodes"]:  # every node: containerd reads the base specs at start
        paths = {m["containerPath"]: m["hostPath"] for m in node["extraMounts"]}
        assert set(paths) == {"/etc/containerd/flywheel-kvm-spec.json", "/etc/containerd/flywheel-dri-spec.json"}
    kvm = json.loads((tmp_path / "flywheel-kvm-spec.json").read_text())
    assert {"allow": True, "type": "c", "major": 10, "minor": 232, "access": "rwm"} in kvm["linux"]["resources"]["devices"]
    assert any(d["path"] == "/dev/kvm" and d["fileMode"] == 0o666 for d in kvm["linux"]["devices"])
    assert "CAP_SYS_ADMIN" not in kvm["process"]["capabilities"]["bounding"]  # containerd's default set, no more


def test_kind_backend_refuses_clearly_without_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, dockerd or debootstrap
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert available() is False
    backend = KindBackend(name="t", root=tmp_path)
    with pytest.raises(ClusterError, match="Docker engine"):
        backend.up(load())
    assert backend.status().running is False
    assert get_backend().__class__ is SimCluster  # the default where kind cannot run


def test_shipped_kind_config_is_the_rendered_one() -> None:
    shipped = Path(__file__).parents[3] / "kind" / "cluster.yaml"
    assert yaml.safe_load(shipped.read_text()) == cluster_config(load(), "flywheel", kvm=True, restrict_oom=False), \
        "kind/cluster.yaml is stale: run `python -m flywheel_runtime.harness.kind > kind/cluster.yaml`"


def test_sim_status_and_down_handle_a_stale_state(tmp_path: Path) -> None:
    cluster = SimCluster(name="stale", root=tmp_path)
    assert cluster.status() == ClusterStatus("sim", "stale", False)
    assert cluster.status().as_dict() == {"backend": "sim", "name": "stale", "running": False, "components": {}}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cluster.state_dir.mkdir(parents=True)
    (cluster.state_dir / "state.json").write_text(json.dumps(
        {"server": "https://127.0.0.1:1", "ports": {}, "pids": {"etcd": dead.pid}}))
    st = cluster.status()
    assert st.running is False and st.components == {"etcd": "stopped"}
    assert st.as_dict()["server"] == "https://127.0.0.1:1" and st.kubeconfig == cluster.kubeconfig
    assert cluster.down(quiet=True) is False
    assert not cluster.state_dir.exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_cli_on_a_stopped_cluster(tmp_path: Path) -> None:
    env = {"FLYWHEEL_CACHE_DIR": str(tmp_path)}
    st = _cli("cluster", "status", "--backend", "sim", "--name", "nope", env=env)
    assert st.returncode == 1 and "stopped" in st.stdout
    pl = _cli("cluster", "placement", "--backend", "sim", "--name", "nope", env=env)
    assert pl.returncode == 4
    assert pl.stderr.strip().splitlines() == [
        "flywheel-runtime: sim cluster 'nope' is not running; run `flywheel-runtime cluster up --name nope` first"]
    down = _cli("cluster", "down", "--backend", "sim", "--name", "nope", env=env)
    assert down.returncode == 0 and "was not running" in down.stderr


def test_cli_up_without_go_or_cache_is_one_build_error(tmp_path: Path) -> None:
    env = {"FLYWHEEL_CACHE_DIR": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    up = _cli("cluster", "up", "--backend", "sim", "--name", "nogo", env=env)
    assert up.returncode == 9
    assert len(up.stderr.strip().splitlines()) == 1 and "Go toolchain" in up.stderr
    assert up.stdout == ""


@pytest.mark.parametrize("backend", ["sim", "kind"])
def test_cli_up_reads_the_topology_it_is_given_before_anything_starts(tmp_path: Path, backend: str) -> None:
    """``--topology FILE`` is resolved once by the CLI, on both backends: a bad one is exit 3, nothing built."""
    bad = tmp_path / "topology.yaml"
    bad.write_text("nodes: [")
    env = {"FLYWHEEL_CACHE_DIR": str(tmp_path / "cache"), "FLYWHEEL_TOPOLOGY": str(tmp_path / "absent.yaml")}
    up = _cli("cluster", "up", "--backend", backend, "--name", "t", "--topology", str(bad), env=env)
    assert up.returncode == 3, up.stderr
    assert len(up.stderr.strip().splitlines()) == 1 and str(bad) in up.stderr
    assert not (tmp_path / "cache").exists()  # failed before the toolchain or any cluster state


def test_the_backends_read_no_topology_themselves() -> None:
    """The topology is passed in (``up(topo)``): no backend module calls ``load()`` outside a
    script's ``main`` (``python -m ...``, which resolves it once, as the CLI does)."""
    import ast

    import flywheel_runtime.harness as harness

    root = Path(harness.__file__).parent
    offenders = []
    for path in [*(root / "sim").rglob("*.py"), *(root / "kind").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        in_main = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main"
                   for n in ast.walk(f)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or id(node) in in_main:
                continue
            f = node.func  # load(...) as imported from flywheel_runtime.topology, or topology.load(...)
            if (isinstance(f, ast.Name) and f.id == "load") or (
                    isinstance(f, ast.Attribute) and f.attr == "load" and getattr(f.value, "id", "") == "topology"):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_sim_builds_into_the_root_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SimCluster(root=...)`` builds its binaries and keeps its state under that root, not ~/.cache."""
    from flywheel_runtime import toolchain
    from flywheel_runtime.errors import BuildError

    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path / "elsewhere"))
    asked: list[Path | None] = []

    def ensure_binaries(root: Path | None = None) -> toolchain.Binaries:
        asked.append(root)
        raise BuildError("stop here")

    monkeypatch.setattr(toolchain, "ensure_binaries", ensure_binaries)
    cluster = SimCluster(name="rooted", root=tmp_path / "root")
    assert cluster.state_dir == tmp_path / "root" / "clusters" / "rooted"
    with pytest.raises(BuildError, match="stop here"):
        cluster.up(load())
    assert asked == [tmp_path / "root"] and not (tmp_path / "elsewhere").exists()


def test_pytest_plugin_is_light_and_offers_the_option() -> None:
    code = ("import sys, flywheel_runtime.harness.pytest_plugin, flywheel_runtime.harness;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes','yaml','urllib3')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_ = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True,
                           cwd=Path(__file__).parent).stdout
    assert "--cluster-backend" in help_


def test_scenarios_follow_the_capacity_table() -> None:
    from flywheel_runtime.harness.benchmarks import scenario_pods

    topo = load()
    gitlab = sum(g.min_replicas for g in topo.gitlab_runners)
    quiet = scenario_pods(topo, "quiet")
    assert len(quiet) == gitlab and all(n.startswith("gitlab-") and ns is None for n, ns, _ in quiet)
    normal = scenario_pods(topo, "normal")
    assert [n for n, _, _ in normal[gitlab:]] == ["tinyland-nix-1", "tinyland-nix-2"]
    assert normal[gitlab][1:] == (None, render.pod(topo, "tinyland-nix"))
    burst = scenario_pods(topo, "burst")
    assert 4 <= len(burst) - gitlab <= 6
    # Both overlays' heavy scale sets take part: queueing is per node, not per label.
    assert {"tinyland-nix-heavy-1", "jess-nix-heavy-1"} <= {n for n, _, _ in burst}
    most = scenario_pods(topo, "max")
    assert len(most) == gitlab + sum(s.max_runners for s in topo.scale_sets)
    # A device lane's pods go where the device admission policy admits them: the
    # lane's namespace, under ARC's account for it.
    kvm = topo.scale_set("tinyland-nix-kvm")
    for name, ns, body in most:
        if name.startswith("tinyland-nix-kvm-"):
            assert ns == kvm.namespace and body["spec"]["serviceAccountName"] == render.no_permission_service_account(kvm)
