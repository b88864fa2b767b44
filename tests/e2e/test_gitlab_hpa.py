"""GitLab runners from the real gitlab-runner chart, scaled by their live HPA (kind).

``cluster up`` installs metrics-server (built from the module proxy); each
GitLab runner is ``helm install``ed from ``../shared/gitlab-runner/
gitlab-runner-0.86.0`` with ``topology render gitlab-values`` and a test-only
override: the scale-down window shortened to :data:`WINDOW_S` (the rendered
default stays 300 s, tests/unit/topology/test_gitlab_chart.py), a smaller
envelope (kind's nodes are this machine's few cores) and a short readiness
delay.  The runner manager is a stand-in under the topology's tag
(gitlab_standin/: one of our runner images with a ``gitlab-runner`` that idles
and loads on demand); the real image cannot be had here.

Under load the HPA scales the Deployment up, on CPU and on memory, never past
its max; after the load the replicas stay for the window, then return to 1;
never below 1.
"""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.topology import load, render


def _chart_missing() -> str | None:
    """Why the real gitlab-runner chart cannot be found, as the installer resolves it (None: found)."""
    from flywheel_runtime.errors import SourceMissingError
    from flywheel_runtime.harness import gitlab

    try:
        gitlab.chart_dir()
    except SourceMissingError as exc:
        return str(exc)
    return None


# Like the ARC chart tests: without the shared tree (a clone outside its checkout) they skip with the reason.
CHART_MISSING = _chart_missing()
pytestmark = [pytest.mark.e2e,
              pytest.mark.backend("kind", reason="the sim has no kubelets and no metrics: an HPA needs both"),
              pytest.mark.skipif(CHART_MISSING is not None, reason=CHART_MISSING or "")]

STANDIN = Path(__file__).with_name("gitlab_standin")
WINDOW_S = 60  # test-only; the topology's window is 300 s
RUNNER = "docker"  # the one the tests load; all three are installed
TOPO = load()
# kind's nodes are this machine's (a few cores): a small envelope, so percentages still mean something.
ENVELOPE = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
CPU_LOAD_M = 300  # 300% of the request (target 70%)
MEMORY_LOAD_MIB = 320  # 125% of the request (target 80%)


def test_values(name: str) -> dict[str, Any]:
    """The rendered values with the test-only override."""
    v = copy.deepcopy(render.gitlab_values(TOPO, name))
    v["resources"] = copy.deepcopy(ENVELOPE)
    v["readinessProbe"] = {"initialDelaySeconds": 5, "periodSeconds": 5}
    v["unregisterRunners"] = False  # no GitLab to unregister from
    v["terminationGracePeriodSeconds"] = 5
    (hpa,) = v["extraObjects"]
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = WINDOW_S
    return v


test_values.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def standin(flywheel_cluster: Any) -> str:
    """The runner-manager stand-in under the topology's gitlab-runner tag, loaded into the nodes."""
    from flywheel_runtime import toolchain
    from flywheel_runtime.harness.kind import engine, runner_images

    eng = engine.start(toolchain.cache_root())
    (base,) = runner_images.Builder(eng, TOPO).build_all(["docker"])
    tag = TOPO.images["gitlab-runner"]
    proc = subprocess.run(["docker", "build", "--network", "none", "--build-arg", f"BASE={base.tag}", "-t", tag,
                           str(STANDIN)], env={**eng.env, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    runner_images.load_into_kind(eng, flywheel_cluster._impl, [tag])
    return tag


@pytest.fixture(scope="module")
def runners(flywheel_cluster: Any, standin: str) -> dict[str, str]:
    """Every GitLab runner installed from the real chart; the Deployment name by runner."""
    from flywheel_runtime.harness import gitlab

    c = flywheel_cluster
    out = {}
    for g in TOPO.gitlab_runners:
        release = render.gitlab_release(g)
        c.kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{release}-token",
                                                                           "namespace": g.namespace},
                      "stringData": {"runner-token": "glrt-standin", "runner-registration-token": ""}})
        gitlab.install(release, g.namespace, test_values(g.name), c.kubeconfig)
        out[g.name] = release
    yield out
    from flywheel_runtime import toolchain

    for g in TOPO.gitlab_runners:
        subprocess.run([str(toolchain.binary("helm")), "uninstall", render.gitlab_release(g), "-n", g.namespace,
                        "--kubeconfig", str(c.kubeconfig), "--wait"], capture_output=True, text=True)


def _replicas(c: Any, ns: str, name: str) -> int:
    return int(c.kube.apps.read_namespaced_deployment(name, ns).spec.replicas)


def _pods(c: Any, ns: str, name: str) -> list[str]:
    pods = c.kube.core.list_namespaced_pod(ns, label_selector=f"app={name}").items
    return [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def _load(c: Any, ns: str, pod: str, *order: str) -> None:
    c.kubectl("exec", "-n", ns, pod, "--", "gitlab-runner", "load", *order)


class Watch:
    """Replica counts sampled every few seconds: the test's evidence."""

    def __init__(self, c: Any, ns: str, name: str) -> None:
        self.c, self.ns, self.name = c, ns, name
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> int:
        n = _replicas(self.c, self.ns, self.name)
        self.samples.append((time.monotonic(), n))
        return n

    def until(self, ok: Any, timeout: float, what: str) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if ok(self.sample()):
                return time.monotonic()
            time.sleep(3)
        pytest.fail(f"{what} within {timeout:.0f} s; replicas seen: {[n for _, n in self.samples][-20:]}")


def _scale_up_and_back(c: Any, runners: dict[str, str], order: tuple[str, str]) -> None:
    g = next(g for g in TOPO.gitlab_runners if g.name == RUNNER)
    ns, name = g.namespace, runners[RUNNER]
    w = Watch(c, ns, name)
    w.until(lambda n: n == 1, WINDOW_S + 240, f"{name} at its minimum before the load")
    (pod,) = _pods(c, ns, name)
    _load(c, ns, pod, *order)
    try:
        w.until(lambda n: n > 1, 300, f"the HPA to scale {name} up on {order[0]}")
    finally:
        _load(c, ns, pod, "idle")
    stopped = time.monotonic()
    w.until(lambda n: n == 1, WINDOW_S + 240, f"{name} back to its minimum after the window")
    counts = [n for _, n in w.samples]
    assert min(counts) >= 1 and max(counts) <= g.max_replicas, counts
    # the load ended at `stopped`: the recommendations of the window before still held the scale
    held = [n for t, n in w.samples if stopped <= t < stopped + WINDOW_S - 5]
    assert held and min(held) > 1, (held, counts)


def test_metrics_are_served(flywheel_cluster: Any, runners: dict[str, str]) -> None:
    """`kubectl top` works: metrics-server answers for nodes and the runner managers."""
    c = flywheel_cluster
    deadline = time.monotonic() + 120
    while True:
        try:
            out = c.kubectl("top", "pods", "-n", "gitlab-runners", "--no-headers")
            if all(r in out for r in runners.values()):
                break
        except subprocess.CalledProcessError:
            pass
        assert time.monotonic() < deadline, "no pod metrics for the GitLab runners within 120 s"
        time.sleep(5)
    assert c.kubectl("top", "nodes", "--no-headers").count("\n") >= len(TOPO.nodes) - 1


def test_the_chart_objects_are_live(flywheel_cluster: Any, runners: dict[str, str]) -> None:
    c = flywheel_cluster
    for g in TOPO.gitlab_runners:
        name = runners[g.name]
        hpa = c.kube.dynamic.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler").get(
            name=name, namespace=g.namespace).to_dict()
        assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == g.max_replicas
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
        pods = c.kube.core.list_namespaced_pod(g.namespace, label_selector=f"app={name}").items
        assert pods and {(p.spec.node_name, p.spec.service_account_name) for p in pods} == {("honey", name)}


def test_the_hpa_scales_up_on_cpu_and_back_after_the_window(flywheel_cluster: Any, runners: dict[str, str]) -> None:
    _scale_up_and_back(flywheel_cluster, runners, ("cpu", str(CPU_LOAD_M)))


def test_the_hpa_scales_up_on_memory_and_back_after_the_window(flywheel_cluster: Any,
                                                               runners: dict[str, str]) -> None:
    _scale_up_and_back(flywheel_cluster, runners, ("memory", str(MEMORY_LOAD_MIB)))
