"""ARC on kind, without a cluster: the controller image's resolution (exit 21),
the double's objects, the values the charts get, the CronJobs as rendered."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.errors import ArcControllerImageError, ClusterError, ExitCode
from flywheel_runtime.harness.kind import arc
from flywheel_runtime.topology import load, render

TOPO = load()


def test_no_controller_image_is_exit_21_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(arc.CONTROLLER_IMAGE_ENV, raising=False)
    with pytest.raises(ArcControllerImageError) as err:
        arc.controller_image_spec(None)
    assert err.value.exit_code == ExitCode.ARC_CONTROLLER_IMAGE == 21
    msg = str(err.value)
    assert "\n" not in msg and arc.UPSTREAM_IMAGE in msg and arc.CONTROLLER_IMAGE_ENV in msg


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(arc.CONTROLLER_IMAGE_ENV, "/from/env.tar")
    assert arc.controller_image_spec("given:1") == "given:1"
    assert arc.controller_image_spec(None) == "/from/env.tar"


def test_cluster_up_arc_without_an_image_exits_21_before_anything_starts(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FLYWHEEL_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(Path(arc.__file__).parents[3])}
    proc = subprocess.run([sys.executable, "-m", "flywheel_runtime", "cluster", "up", "--backend", "kind",
                           "--name", "arc-unit", "--arc"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 21, proc.stderr
    assert proc.stderr.count("\n") == 1 and arc.UPSTREAM_IMAGE in proc.stderr
    assert not (tmp_path / "clusters").exists()


def test_cluster_up_arc_on_the_sim_is_a_usage_error(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FLYWHEEL_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(Path(arc.__file__).parents[3])}
    proc = subprocess.run([sys.executable, "-m", "flywheel_runtime", "cluster", "up", "--backend", "sim",
                           "--name", "arc-unit", "--arc", "--arc-controller-image", "x:1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "kind" in proc.stderr


class _Eng:
    env: dict[str, str] = {}

    def docker(self, *args: str, check: bool = True) -> Any:
        return subprocess.CompletedProcess(args, 1, b"", b"")


class _Backend:
    name = "arc-unit"
    _kind_bin = Path("/nonexistent/kind")


def test_an_image_neither_file_nor_in_the_engine_is_exit_21() -> None:
    with pytest.raises(ArcControllerImageError, match="neither a file nor an image"):
        arc.load_controller_image(_Eng(), _Backend(), "example.org/nothing:1")  # type: ignore[arg-type]


def test_a_file_that_is_no_docker_archive_is_exit_21(tmp_path: Path) -> None:
    bogus = tmp_path / "controller.tar"
    with tarfile.open(bogus, "w"):
        pass
    with pytest.raises(ArcControllerImageError, match="controller image archive"):
        arc.load_controller_image(_Eng(), _Backend(), str(bogus))  # type: ignore[arg-type]


def test_the_double_runs_in_a_runner_image_beside_the_controller_with_cluster_urls() -> None:
    ns, dep, svc, *policies = arc.double_objects(TOPO)
    assert ns["metadata"]["name"] == arc.DOUBLE_NAMESPACE
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["image"] == TOPO.images["nix"]
    url = arc.double_cluster_url()
    assert url == f"http://{svc['metadata']['name']}.{arc.DOUBLE_NAMESPACE}.svc.cluster.local:{arc.DOUBLE_PORT}"
    assert c["command"][1:3] == ["actions", "serve"] and c["command"][c["command"].index("--public-url") + 1] == url
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": TOPO.arc.controller.node}
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    # every runner namespace may reach the double (GitHub's stand-in, inside the cluster) and nothing more
    assert {p["metadata"]["namespace"] for p in policies} == {ss.namespace for ss in TOPO.scale_sets}
    for p in policies:
        (rule,) = p["spec"]["egress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": arc.DOUBLE_PORT}]
        assert rule["to"][0]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_the_controller_values_are_the_rendered_ones_with_the_given_image_never_pulled() -> None:
    values = arc.controller_values(TOPO, "localhost/arc/controller:dev")
    rendered = render.controller_values(TOPO)
    assert values["image"] == {"repository": "localhost/arc/controller", "tag": "dev", "pullPolicy": "IfNotPresent"}
    assert {k: v for k, v in values.items() if k != "image"} == {k: v for k, v in rendered.items() if k != "image"}


def test_each_overlay_gets_its_config_secret_with_a_github_token() -> None:
    secrets = arc.config_secrets(TOPO)
    wanted = {(ss.namespace, TOPO.overlay(ss.overlay).github_config_secret) for ss in TOPO.scale_sets}
    assert {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in secrets} == wanted
    assert all(set(s["stringData"]) == {"github_token"} for s in secrets)


def test_org_of_config_urls() -> None:
    assert arc.org_of("https://github.com/tinyland-inc") == "tinyland-inc"
    assert arc.org_of("https://github.com/o/r/") == "o/r"


class _Kube:
    """Live allocatable of kind nodes: this machine's 2 CPUs and 24 GiB per node."""

    def __init__(self) -> None:
        from types import SimpleNamespace as NS

        nodes = [NS(metadata=NS(name=n.name), status=NS(allocatable={"cpu": "2", "memory": "24Gi",
                                                                     "ephemeral-storage": "100Gi"}))
                 for n in TOPO.nodes]
        self.core = NS(list_node=lambda: NS(items=nodes))


@pytest.mark.parametrize("name", [ss.name for ss in TOPO.scale_sets])
def test_scale_set_values_point_at_the_double_and_scale_the_envelopes(name: str) -> None:
    from flywheel_runtime.harness.fit import factors, live_allocatable

    kube = _Kube()
    values = arc.scale_set_values(TOPO, name, kube)  # type: ignore[arg-type]
    rendered = render.helm_values(TOPO, name)
    ss = TOPO.scale_set(name)
    assert values["githubConfigUrl"] == f"{arc.double_cluster_url()}/{arc.org_of(TOPO.overlay(ss.overlay).github_config_url)}"
    assert values["maxRunners"] == rendered["maxRunners"] and values["scaleSetLabels"] == rendered["scaleSetLabels"]
    by = factors(TOPO, live_allocatable(kube))  # type: ignore[arg-type]
    assert by["cpu"] < 1
    runner = next(c for c in values["template"]["spec"]["containers"] if c["name"] == "runner")
    want = next(c for c in rendered["template"]["spec"]["containers"] if c["name"] == "runner")
    from flywheel_runtime.topology.quantity import parse_cpu

    got_cpu, want_cpu = (parse_cpu(c["resources"]["requests"]["cpu"]) for c in (runner, want))
    assert got_cpu == -(-want_cpu * by["cpu"].numerator // by["cpu"].denominator)
    # Everything but the envelopes is as rendered.
    a, b = (json.loads(json.dumps(v["template"]["spec"])) for v in (values, rendered))
    for spec in (a, b):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            c.pop("resources", None)
    assert a == b
    assert isinstance(by["cpu"], Fraction)


class _ListenerKube:
    """Listener objects and pods as the API gives them (client models), in turns: one per list."""

    def __init__(self, turns: list[list[Any]]) -> None:
        from types import SimpleNamespace

        self.turns = turns
        self.core = SimpleNamespace(list_namespaced_pod=self._pods)

    def _pods(self, namespace: str) -> Any:
        from types import SimpleNamespace

        pods = self.turns.pop(0) if len(self.turns) > 1 else self.turns[0]
        return SimpleNamespace(items=pods)

    def list_arc(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        assert plural == "autoscalinglisteners"
        return [{"metadata": {"name": f"{s}-9c9d9bdf-listener", "labels": {render.ARC_SCALE_SET_LABEL: s}}}
                for s in ("tinyland-nix", "tinyland-docker")]


def _pod(name: str, phase: str, **status: Any) -> Any:
    from kubernetes.client import V1ObjectMeta, V1Pod, V1PodStatus

    return V1Pod(metadata=V1ObjectMeta(name=name), status=V1PodStatus(phase=phase, **status))


def _unschedulable(name: str) -> Any:
    from kubernetes.client import V1PodCondition

    return _pod(name, "Pending", conditions=[V1PodCondition(
        type="PodScheduled", status="False", reason="Unschedulable",
        message="0/3 nodes are available: 1 Insufficient cpu.")])


def test_listener_pods_name_why_a_listener_does_not_run() -> None:
    from kubernetes.client import V1ContainerState, V1ContainerStateWaiting, V1ContainerStatus

    pulling = _pod("tinyland-nix-9c9d9bdf-listener", "Pending", container_statuses=[V1ContainerStatus(
        name="listener", image="i", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason="ErrImageNeverPull", message="never")))])
    state = arc.listener_pods(_ListenerKube([[pulling, _unschedulable("tinyland-docker-9c9d9bdf-listener")]]), "arc")
    assert state == {"tinyland-nix": "Pending: listener ErrImageNeverPull: never",
                     "tinyland-docker": "Pending: Unschedulable: 0/3 nodes are available: 1 Insufficient cpu."}
    assert arc.listener_pods(_ListenerKube([[]]), "arc") == {"tinyland-nix": "no pod yet", "tinyland-docker": "no pod yet"}


def test_install_waits_for_listener_pods_not_listener_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arc.time, "sleep", lambda s: None)
    running = [_pod("tinyland-nix-9c9d9bdf-listener", "Running"), _pod("tinyland-docker-9c9d9bdf-listener", "Running")]
    kube = _ListenerKube([[running[0], _unschedulable("tinyland-docker-9c9d9bdf-listener")], running])
    arc.wait_listeners_running(kube, "arc", ["tinyland-nix", "tinyland-docker"])  # type: ignore[arg-type]
    assert kube.turns == [running]  # it looked again after the Pending one

    stuck = _ListenerKube([[running[0], _unschedulable("tinyland-docker-9c9d9bdf-listener")]])
    with pytest.raises(ClusterError) as err:
        arc.wait_listeners_running(stuck, "arc", ["tinyland-nix", "tinyland-docker"], timeout=0)  # type: ignore[arg-type]
    assert str(err.value) == ("listener pods not running after 0 s in arc: tinyland-docker: "
                              "Pending: Unschedulable: 0/3 nodes are available: 1 Insufficient cpu.")
