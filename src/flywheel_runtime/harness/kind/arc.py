"""ARC in motion on kind: the real controller and scale-set charts, driven by
the Actions service double running in the cluster.

``cluster up --backend kind --arc`` calls :func:`install` once the nodes are up
and the runner images loaded (ARC's CRDs are already in: the bootstrap
installs them server-side).  In order:

1. the controller image, given as a reference in the harness's engine or a
   docker archive (``--arc-controller-image``, ``$FLYWHEEL_ARC_CONTROLLER_IMAGE``),
   loaded into every node; CI cannot build it (the module proxy refuses ARC
   0.14.0) and users with a registry pull :data:`UPSTREAM_IMAGE`;
2. the double (:mod:`flywheel_runtime.actions`) as a Deployment and Service in
   :data:`DOUBLE_NAMESPACE`, in the nix runner image (which bakes the library
   in), handing out URLs under the Service's name; a NodePort makes it
   reachable from the host, and its URL is recorded for the ``actions``
   commands (:func:`flywheel_runtime.actions.write_state`);
3. the controller chart with ``helm install --skip-crds`` from the rendered
   controller values, the image overridden and never pulled;
4. per overlay, its githubConfigSecret (a ``github_token`` the double
   accepts); per scale set, the scale-set chart from the rendered values with
   ``githubConfigUrl`` at the double (``<double>/<org>``) and every envelope
   scaled to kind's nodes (:mod:`flywheel_runtime.harness.fit`: this machine's
   2 CPUs, not honey's 32), optionally changed by the caller (the e2e mounts
   its runner stand-in this way);
5. the operator's RBAC and the rendered warm-pool and cleanup CronJobs, as
   the platform runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flywheel_runtime import toolchain
from flywheel_runtime.errors import ArcControllerImageError, ClusterError, DeadlineError, SourceMissingError

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.harness.kind import KindBackend
    from flywheel_runtime.harness.kind.engine import Engine
    from flywheel_runtime.kube import Client
    from flywheel_runtime.topology import Topology

CONTROLLER_IMAGE_ENV = "FLYWHEEL_ARC_CONTROLLER_IMAGE"
UPSTREAM_IMAGE = "ghcr.io/actions/gha-runner-scale-set-controller:0.14.0"
DOUBLE_NAMESPACE = "flywheel-actions"
DOUBLE_NAME = "actions"
DOUBLE_PORT = 8080
# The double takes any PAT; the secret only has to hold the key ARC reads.
GITHUB_TOKEN = "flywheel-kind-double"
CONTROLLER_RELEASE = "arc"
FIELD_MANAGER = "flywheel-runtime"

#: ``(scale set name, its chart values) -> values``: a caller's change to what is installed.
ValuesHook = Callable[[str, dict[str, Any]], dict[str, Any]]


def mount_over_run_sh(configmap: str, key: str) -> ValuesHook:
    """A values change putting ``key`` of ConfigMap ``configmap`` (same namespace) over the
    runner container's /home/runner/run.sh: how tests and benchmarks run a runner
    stand-in in each lane's own image (the real GitHub runner cannot be had offline)."""
    import copy

    def hook(name: str, values: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(values)
        spec = out["template"]["spec"]
        runner = next(c for c in spec["containers"] if c["name"] == "runner")
        spec.setdefault("volumes", []).append({"name": "run-sh", "configMap": {"name": configmap, "defaultMode": 0o755}})
        runner.setdefault("volumeMounts", []).append(
            {"name": "run-sh", "mountPath": "/home/runner/run.sh", "subPath": key})
        return out

    return hook


def missing_image_message() -> str:
    return (f"--arc needs the ARC controller image: pass --arc-controller-image REF|ARCHIVE or set "
            f"${CONTROLLER_IMAGE_ENV} (with a registry: docker pull {UPSTREAM_IMAGE}, or docker save it to an archive)")


def controller_image_spec(given: str | None = None) -> str:
    """``--arc-controller-image``, else ``$FLYWHEEL_ARC_CONTROLLER_IMAGE``; exit 21 without either."""
    spec = given or os.environ.get(CONTROLLER_IMAGE_ENV) or ""
    if not spec.strip():
        raise ArcControllerImageError(missing_image_message())
    return spec.strip()


def load_controller_image(eng: Engine, backend: KindBackend, spec: str) -> str:
    """Load ``spec`` (a docker archive's path, or an image in the harness's engine) into every node;
    return the image reference the chart names."""
    from flywheel_runtime.harness.kind import nodeimage

    path = Path(spec)
    env = {**os.environ, **eng.env}
    if path.is_file():
        try:
            tags = nodeimage.archive_tags(path)
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one line for the user
            raise ArcControllerImageError(f"ARC controller image archive {path}: {exc}") from None
        if not tags:
            raise ArcControllerImageError(f"ARC controller image archive {path} carries no tag")
        cmd = [str(backend._kind_bin), "load", "image-archive", "--name", backend.name, str(path)]
        ref = next((t for t in tags if "gha-runner-scale-set-controller" in t), tags[0])
    else:
        if "/" not in spec and spec.endswith(".tar"):
            raise ArcControllerImageError(f"ARC controller image archive {spec} does not exist")
        if eng.docker("image", "inspect", spec, check=False).returncode != 0:
            raise ArcControllerImageError(
                f"ARC controller image {spec} is neither a file nor an image in the harness's Docker engine "
                f"({env.get('DOCKER_HOST') or 'the host engine'}); docker load it there, or pass the archive")
        cmd = [str(backend._kind_bin), "load", "docker-image", "--name", backend.name, spec]
        ref = spec
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ArcControllerImageError(f"loading the ARC controller image {spec} failed: {proc.stderr.strip()[-300:]}")
    return ref


# -- the double in the cluster ----------------------------------------------


def double_cluster_url() -> str:
    """The double's base URL inside the cluster (every URL it hands out starts so)."""
    return f"http://{DOUBLE_NAME}.{DOUBLE_NAMESPACE}.svc.cluster.local:{DOUBLE_PORT}"


def double_objects(topo: Topology) -> list[dict[str, Any]]:
    """Namespace, Deployment and NodePort Service of the double, beside the controller (honey)."""
    from flywheel_runtime.topology.render._common import _placement_spec

    assert topo.arc is not None
    labels = {"app.kubernetes.io/name": "flywheel-actions-double"}
    container = {
        "name": "double", "image": topo.images["nix"], "imagePullPolicy": "IfNotPresent",
        # The runner images bake the library in; the image's entrypoint is the runner's.
        "command": ["/opt/flywheel/venv/bin/flywheel-runtime", "actions", "serve", "--host", "0.0.0.0",
                    "--port", str(DOUBLE_PORT), "--public-url", double_cluster_url(), "--long-poll", "1"],
        "ports": [{"name": "http", "containerPort": DOUBLE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/_flywheel/health", "port": DOUBLE_PORT},
                           "periodSeconds": 1, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DOUBLE_NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": DOUBLE_NAME, "namespace": DOUBLE_NAMESPACE, "labels": labels},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {**_placement_spec(topo.arc.controller.placement),
                                        "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": DOUBLE_NAME, "namespace": DOUBLE_NAMESPACE, "labels": labels},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"name": "http", "port": DOUBLE_PORT, "targetPort": DOUBLE_PORT}]}},
        # The rendered NetworkPolicies let runners out of the cluster (to GitHub) but not to
        # in-cluster addresses: here GitHub is the double, in the cluster, so the runners'
        # namespaces get one more egress rule, to it alone (policies add up).
        *({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "runners-to-actions-double", "namespace": ns},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                                            "kubernetes.io/metadata.name": DOUBLE_NAMESPACE}},
                                        "podSelector": {"matchLabels": labels}}],
                                "ports": [{"protocol": "TCP", "port": DOUBLE_PORT}]}]}}
          for ns in sorted({ss.namespace for ss in topo.scale_sets})),
    ]


def double_host_url(kube: Client, node: str | None) -> str:
    """The double from this host: ``node``'s address (any node's: a NodePort answers on each)
    and the Service's NodePort."""
    svc = kube.core.read_namespaced_service(DOUBLE_NAME, DOUBLE_NAMESPACE)
    port = next(p.node_port for p in svc.spec.ports if p.name == "http")
    n = kube.core.read_node(node) if node else kube.core.list_node().items[0]
    ip = next(a.address for a in n.status.addresses if a.type == "InternalIP")
    return f"http://{ip}:{port}"


def deploy_double(kube: Client, topo: Topology, *, log: Log, timeout: float = 180) -> str:
    """Apply the double, wait until it answers from the host; record and return its host URL."""
    from flywheel_runtime.actions import ActionsClient, write_state
    from flywheel_runtime.errors import FlywheelError
    from flywheel_runtime.kube import wait_for

    assert topo.arc is not None
    for obj in double_objects(topo):
        kube.apply(obj)
    url = double_host_url(kube, topo.arc.controller.node)

    def answers() -> bool:
        try:
            ActionsClient(url, timeout=3).health()
        except FlywheelError:
            return False
        return True

    wait_for(answers, timeout, f"the actions double at {url}", interval=1)
    write_state(url)
    log(f"actions double running in {DOUBLE_NAMESPACE} ({double_cluster_url()}; from this host {url}, recorded "
        f"for the actions commands)")
    return url


# -- helm ---------------------------------------------------------------------


def helm(kubeconfig: Path, *args: str, timeout: float = 600) -> str:
    exe = os.environ.get("FLYWHEEL_HELM") or str(toolchain.binary("helm"))
    proc = subprocess.run([exe, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise ClusterError(f"helm {' '.join(args[:2])} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def charts() -> Path:
    from flywheel_runtime.harness.arc import CHARTS_ENV, SHARED_CHARTS, charts_dir

    found = charts_dir()
    if found is None:
        raise SourceMissingError(f"ARC's charts are not here: set ${CHARTS_ENV} to the charts/ of "
                                 f"actions/actions-runner-controller at gha-runner-scale-set-0.14.0 "
                                 f"(expected beside the repository at {SHARED_CHARTS})")
    return found


def _install(kubeconfig: Path, release: str, chart: Path, namespace: str, values: dict[str, Any],
             *extra: str) -> None:
    import yaml

    with tempfile.NamedTemporaryFile("w", suffix=".values.yaml", delete=False) as fh:
        yaml.safe_dump(values, fh, sort_keys=False)
    try:
        helm(kubeconfig, "upgrade", "--install", release, str(chart), "-n", namespace, "--skip-crds",
             "-f", fh.name, *extra)
    finally:
        os.unlink(fh.name)


def controller_values(topo: Topology, image: str) -> dict[str, Any]:
    """The rendered controller values with the given image, never pulled."""
    from flywheel_runtime.topology import render

    values = render.controller_values(topo)
    repo, _, tag = image.rpartition(":")
    values["image"] = {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}
    return values


def org_of(config_url: str) -> str:
    """``https://github.com/tinyland-inc`` -> ``tinyland-inc`` (an org, org/repo or enterprises/E path)."""
    return urlparse(config_url).path.strip("/")


def kind_values(topo: Topology, kube: Client, then: ValuesHook | None = None) -> ValuesHook:
    """What kind changes in a set's rendered chart values: ``githubConfigUrl`` at the double
    (``<double>/<org>``) and every envelope scaled to kind's nodes; then ``then``."""
    from flywheel_runtime.harness.fit import factors, live_allocatable, scale

    by = factors(topo, live_allocatable(kube))

    def hook(name: str, values: dict[str, Any]) -> dict[str, Any]:
        import copy

        values = copy.deepcopy(values)
        ss = topo.scale_set(name)
        values["githubConfigUrl"] = f"{double_cluster_url()}/{org_of(topo.overlay(ss.overlay).github_config_url)}"
        values["template"]["spec"] = scale({"kind": "Pod", "spec": values["template"]["spec"]}, by)["spec"]
        if "listenerTemplate" in values:
            values["listenerTemplate"] = {"spec": scale({"kind": "Pod", "spec": values["listenerTemplate"]["spec"]},
                                                        by)["spec"]}
        return then(name, values) if then else values

    return hook


def scale_set_values(topo: Topology, name: str, kube: Client) -> dict[str, Any]:
    """The rendered chart values at the double, envelopes scaled to kind's nodes."""
    from flywheel_runtime.topology import render

    return kind_values(topo, kube)(name, render.helm_values(topo, name))


def config_secrets(topo: Topology) -> list[dict[str, Any]]:
    """Each overlay's githubConfigSecret in every namespace its scale sets use."""
    out = []
    for ns, secret in sorted({(ss.namespace, topo.overlay(ss.overlay).github_config_secret)
                              for ss in topo.scale_sets}):
        out.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns},
                    "type": "Opaque", "stringData": {"github_token": GITHUB_TOKEN}})
    return out


@dataclass
class ArcInstall:
    """What :func:`install` put on the cluster."""

    controller_image: str
    double_url: str  # from this host
    double_cluster_url: str
    releases: dict[str, str] = field(default_factory=dict)  # release -> namespace
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"controller_image": self.controller_image, "double_url": self.double_url,
                "double_cluster_url": self.double_cluster_url, "releases": self.releases,
                "seconds": self.seconds}


def install_scale_set(kube: Client, kubeconfig: Path, topo: Topology, name: str,
                      values_hook: ValuesHook | None = None) -> None:
    """(Re)install one scale set's chart from its rendered values (``helm upgrade --install``)."""
    from flywheel_runtime.topology import render

    values = kind_values(topo, kube, values_hook)(name, render.helm_values(topo, name))
    _install(kubeconfig, name, charts() / "gha-runner-scale-set", topo.scale_set(name).namespace, values)


def install(backend: KindBackend, eng: Engine, kube: Client, topo: Topology, image_spec: str, *,
            values_hook: ValuesHook | None = None, scale_sets: list[str] | None = None,
            log: Log) -> ArcInstall:
    """Everything ARC needs on a running kind cluster (see the module's docstring)."""
    from flywheel_runtime.topology import render

    if topo.arc is None:
        raise ClusterError("the topology declares no ARC (arc:) section")
    chart_root = charts()
    t: dict[str, float] = {}
    t0 = time.monotonic()
    image = load_controller_image(eng, backend, image_spec)
    t["controller_image_load_s"] = round(time.monotonic() - t0, 1)
    log(f"ARC controller image {image} loaded into the nodes in {t['controller_image_load_s']} s")

    t0 = time.monotonic()
    url = deploy_double(kube, topo, log=log)
    t["double_s"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    ns = topo.arc.controller.namespace
    kube.ensure_namespace(ns)
    _install(backend.kubeconfig, CONTROLLER_RELEASE, chart_root / "gha-runner-scale-set-controller", ns,
             controller_values(topo, image), "--wait", "--timeout", "5m")
    t["controller_s"] = round(time.monotonic() - t0, 1)
    log(f"ARC controller chart installed ({CONTROLLER_RELEASE} in {ns}) in {t['controller_s']} s")
    out = ArcInstall(image, url, double_cluster_url(), {CONTROLLER_RELEASE: ns}, t)

    for secret in config_secrets(topo):
        kube.apply(secret)
    t0 = time.monotonic()
    names = scale_sets if scale_sets is not None else [ss.name for ss in topo.scale_sets]
    for name in names:
        install_scale_set(kube, backend.kubeconfig, topo, name, values_hook)
        out.releases[name] = topo.scale_set(name).namespace

    wait_listeners_running(kube, ns, names)
    t["scale_sets_s"] = round(time.monotonic() - t0, 1)
    log(f"{len(names)} scale sets installed (runner envelopes scaled to kind's nodes; githubConfigUrl at "
        f"{double_cluster_url()}) in {t['scale_sets_s']} s")

    # As rendered, not scaled: the utility jobs' envelopes are small fixed budgets (a Python
    # CLI and the Kubernetes client), not a share of a node; scaled by kind's 1/16 CPU and
    # ~1/9 memory they would be OOM-killed before their first call.
    for obj in [*render.operator_rbac(topo), *render.warm_pool_cronjobs(topo), render.cleanup_cronjob(topo)]:
        kube.apply(obj)
    log("operator RBAC, warm-pool and cleanup CronJobs applied as rendered")
    return out


def listener_pods(kube: Client, namespace: str) -> dict[str, str]:
    """Per scale set with an AutoscalingListener in ``namespace``: ``"Running"``, or why its
    listener pod is not (the scheduler's verdict, a container's waiting reason, no pod yet).
    The pod carries its listener's name (ARC's resource builder)."""
    from flywheel_runtime.topology.render import ARC_SCALE_SET_LABEL

    pods = {p.metadata.name: p for p in kube.core.list_namespaced_pod(namespace).items}
    out = {}
    for listener in kube.list_arc("autoscalinglisteners", namespace):
        meta = listener["metadata"]
        name = (meta.get("labels") or {}).get(ARC_SCALE_SET_LABEL, meta["name"])
        out[name] = pod_state(pods.get(meta["name"]))
    return out


def pod_state(pod: Any) -> str:
    """``"Running"`` (or the phase it ended in), else why not: the scheduler's verdict, a
    container's waiting reason or exit; ``"no pod yet"`` for ``None``."""
    if pod is None:
        return "no pod yet"
    if pod.metadata.deletion_timestamp:
        return "Terminating"
    phase = pod.status.phase or "Unknown"
    if phase == "Running":
        return phase
    for c in pod.status.conditions or []:
        if c.type == "PodScheduled" and c.status != "True":
            return f"{phase}: {c.reason}: {(c.message or '').strip()}"
    for cs in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason:
            return f"{phase}: {cs.name} {waiting.reason}: {(waiting.message or '').strip()}"[:300]
        term = cs.state.terminated if cs.state else None
        if term:
            return f"{phase}: {cs.name} exited {term.exit_code} ({term.reason})"
    return phase


def wait_listeners_running(kube: Client, namespace: str, names: list[str], timeout: float = 300) -> None:
    """Until every named scale set's listener pod runs: a listener object alone does not
    listen (a Pending listener pod leaves its label's jobs queued). On timeout, one line per
    set that is not running, with the reason."""
    from flywheel_runtime.kube import wait_for

    behind: dict[str, str] = {}

    def running() -> bool:
        state = listener_pods(kube, namespace)
        behind.clear()
        behind.update({n: state.get(n, "no AutoscalingListener yet") for n in names if state.get(n) != "Running"})
        return not behind

    try:
        wait_for(running, timeout, f"{len(names)} listener pods running", interval=2)
    except DeadlineError as exc:
        if not behind:  # never listed: wait_for's line carries the API's last error
            raise ClusterError(str(exc)) from None
        raise ClusterError(f"listener pods not running after {timeout:.0f} s in {namespace}: "
                           + "; ".join(f"{n}: {why}" for n, why in sorted(behind.items()))) from None


def record(backend: KindBackend, result: ArcInstall) -> None:
    """Keep what was installed in the cluster's state (``down`` clears the double's URL)."""
    st = json.loads(backend._state_file.read_text()) if backend._state_file.exists() else {}
    st["arc"] = result.as_dict()
    backend._state_file.write_text(json.dumps(st))


def forget(backend: KindBackend) -> None:
    """Clear the recorded double URL when it is this cluster's."""
    from flywheel_runtime.actions import clear_state, state_file

    try:
        ours = json.loads(backend._state_file.read_text()).get("arc", {}).get("double_url")
        recorded = json.loads(state_file().read_text()).get("url")
    except (OSError, ValueError):
        return
    if ours and recorded == ours:
        clear_state()
