"""The runner images in the lanes' own pods on real kubelets (kind).

The images are built offline (harness.kind.runner_images) and loaded into every
node under the topology's tags; each lane's rendered pod runs its real image
with a test-only stand-in for the GitHub runner's run.sh (runner_standin/run.sh,
from a ConfigMap) that runs the job hooks around a scripted job.  Figures
(pod create to running and to entrypoint ready, /nix seed time, image build
and load times) go to $FLYWHEEL_CACHE_DIR/bench/runner-images-e2e.json.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.topology import load

pytestmark = [pytest.mark.e2e,
              pytest.mark.backend("kind", reason="the sim has no kubelets: images run only on kind")]

STANDIN = Path(__file__).with_name("runner_standin") / "run.sh"
TOPO = load()
LANES = [ss.name for ss in TOPO.scale_sets]
FIGURES: dict[str, Any] = {"lanes": {}}
RESULT = re.compile(r"^standin: result (\{.*\})$", re.MULTILINE)


def _figures_file() -> Path:
    from flywheel_runtime import toolchain

    return toolchain.cache_root() / "bench" / "runner-images-e2e.json"


@pytest.fixture(scope="module")
def kind_cluster(flywheel_cluster: Any) -> Any:
    yield flywheel_cluster
    out = _figures_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def images(kind_cluster: Any) -> dict[str, Any]:
    """Every runner image and the DinD daemon, built (or cached) and loaded into the nodes."""
    from flywheel_runtime import toolchain
    from flywheel_runtime.harness.kind import engine, runner_images

    eng = engine.start(toolchain.cache_root())  # the engine the kind nodes run on
    t0 = time.monotonic()
    built = runner_images.Builder(eng, kind_cluster.topology).build_all()
    FIGURES["images"] = {b.target: {"tag": b.tag, "build_s": round(b.seconds, 1), "cached": b.cached}
                         for b in built}
    FIGURES["images_build_total_s"] = round(time.monotonic() - t0, 1)
    FIGURES["images_load_all_s"] = round(runner_images.load_into_kind(eng, kind_cluster._impl,
                                                                      [b.tag for b in built]), 1)
    return {b.target: b.tag for b in built}


# What a test created outside its own namespace (a device lane's pods and canary
# Jobs run in the lane's namespace: the device admission policy admits them nowhere
# else), removed when the test ends.
OUTSIDE: list[tuple[str, str, str]] = []  # (kind, namespace, name)


def _standin_config(kube: Any, namespace: str) -> None:
    from kubernetes.client.rest import ApiException

    try:
        kube.core.create_namespaced_config_map(namespace, {
            "metadata": {"name": "flywheel-standin"}, "data": {"run.sh": STANDIN.read_text()}})
    except ApiException as exc:
        if exc.status != 409:
            raise
        kube.core.replace_namespaced_config_map("flywheel-standin", namespace, {
            "metadata": {"name": "flywheel-standin"}, "data": {"run.sh": STANDIN.read_text()}})


@pytest.fixture()
def ns(kind_cluster: Any, images: dict[str, Any]) -> Any:
    with kind_cluster.namespace("img") as name:
        _standin_config(kind_cluster.kube, name)
        try:
            yield name
        finally:
            while OUTSIDE:
                kind, where, obj = OUTSIDE.pop()
                kind_cluster.kubectl("delete", kind, obj, "-n", where, "--ignore-not-found", "--wait=false")


def lane_namespace(c: Any, lane: str, ns: str) -> str:
    """Where the lane's pod runs: ``ns``, or a device lane's own namespace (with the
    stand-in's ConfigMap), where its account lets the device class in."""
    from flywheel_runtime.topology import devices

    ss = TOPO.scale_set(lane)
    if devices.of_scale_set(ss) is None:
        return ns
    _standin_config(c.kube, ss.namespace)
    OUTSIDE.append(("configmap", ss.namespace, "flywheel-standin"))
    return ss.namespace


@dataclass
class Run:
    name: str
    node: str
    phase: str
    logs: str
    running_s: float
    ready_s: float
    result: dict[str, int]
    pod: Any


def _log(c: Any, ns: str, name: str, container: str = "runner") -> str:
    from kubernetes.client.rest import ApiException

    try:
        return str(c.kube.core.read_namespaced_pod_log(name, ns, container=container))
    except ApiException:
        return ""  # not started yet


def standin_pod(c: Any, lane: str, job: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The lane's rendered pod (scaled to kind's nodes) with the stand-in run.sh mounted;
    a device lane's under ARC's account for it (see :func:`lane_namespace`)."""
    from flywheel_runtime.topology import devices, render

    pod = copy.deepcopy(c.render_pod(lane))
    spec = pod["spec"]
    ss = TOPO.scale_set(lane)
    if devices.of_scale_set(ss) is not None:
        spec["serviceAccountName"] = render.no_permission_service_account(ss)
    runner = next(x for x in spec["containers"] if x["name"] == "runner")
    runner["env"] = [*runner["env"], {"name": "FLYWHEEL_STANDIN_JOB", "value": job},
                     *({"name": k, "value": v} for k, v in (env or {}).items())]
    spec.setdefault("volumes", []).append(
        {"name": "standin", "configMap": {"name": "flywheel-standin", "defaultMode": 0o755}})
    runner.setdefault("volumeMounts", []).append(
        {"name": "standin", "mountPath": "/home/runner/run.sh", "subPath": "run.sh"})
    return pod


def run_pod(c: Any, ns: str, pod: dict[str, Any], *, timeout: float = 300, while_running: Any = None) -> Run:
    """Create the pod, time it to running and to the stand-in's first line, wait for the end."""
    from flywheel_runtime.kube import wait_for

    t0 = time.monotonic()
    name = c.kube.create_pod(pod, namespace=ns)
    if not ns.startswith("img-"):
        OUTSIDE.append(("pod", ns, name))

    def runner_state() -> Any:
        p = c.kube.core.read_namespaced_pod(name, ns)
        if p.status.phase in ("Succeeded", "Failed"):
            return p
        for s in p.status.container_statuses or []:
            if s.name == "runner" and (s.state.running or s.state.terminated):
                return p
        return None

    def diagnose() -> str:
        p = c.kube.core.read_namespaced_pod(name, ns)
        states = [(s.name, s.state.to_dict()) for s in
                  [*(p.status.init_container_statuses or []), *(p.status.container_statuses or [])]]
        return f"phase {p.status.phase}, {states}"

    try:
        wait_for(runner_state, timeout, f"pod {ns}/{name}'s runner to start", interval=0.2)
    except Exception as exc:
        raise AssertionError(f"{exc}: {diagnose()}") from None
    running = time.monotonic() - t0
    wait_for(lambda: "standin: start" in _log(c, ns, name), 60, "the stand-in's first line", interval=0.2)
    ready = time.monotonic() - t0
    if while_running is not None:
        while_running(name)
    p = wait_for(lambda: (q := c.kube.core.read_namespaced_pod(name, ns)).status.phase in ("Succeeded", "Failed")
                 and q, timeout, f"pod {ns}/{name} to finish", interval=0.5)
    logs = _log(c, ns, name)
    m = RESULT.search(logs)
    assert m, f"no stand-in result in the runner's log:\n{logs[-3000:]}"
    return Run(name, p.spec.node_name, p.status.phase, logs, running, ready, json.loads(m.group(1)), p)


# What every lane's job checks: the hook published the hints into the job's
# environment (GITHUB_ENV), the entrypoint wrote its file before anything ran.
JOB = r"""
echo "job: hints schema ${FLYWHEEL_HINTS_SCHEMA:?the job-started hook did not publish the hints}"
echo "job: kvm=$FLYWHEEL_KVM dri=$FLYWHEEL_DRI lane=$FLYWHEEL_SCALE_SET uid=$(id -u)"
"""


def _expect_node(lane: str) -> str:
    return TOPO.scale_set(lane).node


@pytest.mark.parametrize("lane", LANES)
def test_lane_pod_runs_its_image_on_its_node(kind_cluster: Any, ns: str, images: dict[str, str],
                                             lane: str) -> None:
    ss = TOPO.scale_set(lane)
    pod = standin_pod(kind_cluster, lane, JOB)
    runner = pod["spec"]["containers"][0]
    assert runner["image"] == ss.image and ss.image in images.values()
    r = run_pod(kind_cluster, lane_namespace(kind_cluster, lane, ns), pod)
    FIGURES["lanes"][lane] = {"node": r.node, "create_to_running_s": round(r.running_s, 2),
                              "create_to_entrypoint_ready_s": round(r.ready_s, 2)}
    assert r.node == _expect_node(lane)
    # the entrypoint wrote the hints file before exec'ing run.sh
    m = re.search(r"^standin: entrypoint hints (\S+) (\d+)$", r.logs, re.MULTILINE)
    assert m and m.group(1) == "/run/flywheel/hints.json" and int(m.group(2)) > 100, r.logs[-2000:]
    if "dri" in ss.devices:
        # this machine has no GPU: the job-started hook refuses the GPU lane's job, in one line
        assert r.result == {"started": 6, "job": -1, "completed": 0}, r.logs[-2000:]
        assert f"lane {lane} declares dri but this pod lacks dri (" in r.logs and "refusing the job" in r.logs
        assert r.phase == "Failed"
        return
    assert r.result == {"started": 0, "job": 0, "completed": 0}, r.logs[-3000:]
    assert r.phase == "Succeeded"
    assert "job: hints schema flywheel.tinyland.dev/hints/v1" in r.logs
    assert f"lane={lane} uid=0" in r.logs
    if "kvm" in ss.devices:
        assert "job: kvm=1 " in r.logs  # the RuntimeClass handed /dev/kvm in
    assert "flywheel: hints published (" in r.logs  # job-started ran ...
    assert re.search(r"^flywheel: job ran \d+\.\ds, workspace cleaned", r.logs, re.MULTILINE)  # ... and completed


def test_kvm_lane_without_its_device_is_refused(kind_cluster: Any, ns: str) -> None:
    pod = standin_pod(kind_cluster, "tinyland-nix-kvm", JOB)
    del pod["spec"]["runtimeClassName"]  # what the lane rendered before: no way in for /dev/kvm
    # in the lane's namespace under its account, as ARC would run it
    r = run_pod(kind_cluster, lane_namespace(kind_cluster, "tinyland-nix-kvm", ns), pod)
    assert r.result == {"started": 6, "job": -1, "completed": 0}, r.logs[-2000:]
    assert "lane tinyland-nix-kvm declares kvm but this pod lacks kvm (" in r.logs
    assert "job: hints schema" not in r.logs  # no step ran


def test_nix_overflow_lane_seeds_a_real_volume(kind_cluster: Any, ns: str, tmp_path: Path) -> None:
    lane = "tinyland-nix-compute-expansion"
    job = r"""
findmnt -no SOURCE,FSTYPE /nix | sed 's/^/job: nix mount /'
nix-store --verify --check-contents
path=$(cat /opt/flywheel/nix-content-path)
test -x "$path/bin/flywheel-runtime"
echo "job: verified $path"
"""
    r = run_pod(kind_cluster, ns, standin_pod(kind_cluster, lane, job))
    assert r.node == "sting" and r.result == {"started": 0, "job": 0, "completed": 0}, r.logs[-3000:]
    assert "job: verified /nix/store/" in r.logs
    # /nix is the claim on sting's local-path volume, not the image's layer
    assert re.search(r"^job: nix mount \S+ (ext4|xfs|btrfs)$", r.logs, re.MULTILINE), r.logs
    claims = kind_cluster.kube.core.list_namespaced_persistent_volume_claim(ns).items
    nix = next(pvc for pvc in claims if pvc.metadata.name.endswith("-nix"))
    assert nix.status.phase == "Bound" and nix.spec.storage_class_name == "local-path-sting-fast-ephemeral"
    seed_log = _log(kind_cluster, ns, r.name, container="seed-nix")
    m = re.search(r"seed-nix: /seed/nix: .* in (\d+\.\d+)s", seed_log)
    assert m, seed_log
    FIGURES["nix_seed_pod_s"] = float(m.group(1))
    FIGURES["nix_seed_host_s"] = _seed_on_host(tmp_path)


def _seed_on_host(tmp_path: Path) -> float:
    """The same store (the nix image's /nix) seeded on the host, for the side-by-side figure."""
    import subprocess
    import sys

    from flywheel_runtime import toolchain
    from flywheel_runtime.harness.kind import engine

    eng = engine.start(toolchain.cache_root())
    tag = TOPO.images["nix"]
    cid = eng.docker("create", tag, "true").stdout.decode().strip()
    try:
        export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE, env=eng.env)
        subprocess.run(["tar", "-x", "-C", str(tmp_path), "nix"], stdin=export.stdout, check=True)
        export.wait()
    finally:
        eng.docker("rm", cid, check=False)
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "seed-nix", "--json", "--source",
                          str(tmp_path / "nix"), "--target", str(tmp_path / "seeded")],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["seconds"])


@pytest.mark.parametrize("lane", [ss.name for ss in TOPO.scale_sets if ss.has_dind])
def test_dind_lane_reaches_the_daemon_and_shares_the_workspace(kind_cluster: Any, ns: str, lane: str) -> None:
    token = uuid.uuid4().hex
    job = f"""
docker info --format 'job: daemon {{{{.ServerVersion}}}} {{{{.Driver}}}}'
echo {token} > "$GITHUB_WORKSPACE/from-runner"
echo "job: workspace $GITHUB_WORKSPACE"
for _ in $(seq 600); do [ -f "$GITHUB_WORKSPACE/from-daemon" ] && break; sleep 0.2; done
grep -qx daemon-{token} "$GITHUB_WORKSPACE/from-daemon"
echo "job: saw the daemon's file"
"""
    seen: dict[str, str] = {}

    def from_the_daemon_side(name: str) -> None:
        from flywheel_runtime.kube import wait_for

        wait_for(lambda: "job: workspace" in _log(kind_cluster, ns, name), 120, "the job's workspace line",
                 interval=0.3)
        ws = re.search(r"^job: workspace (\S+)$", _log(kind_cluster, ns, name), re.MULTILINE).group(1)
        seen["runner"] = kind_cluster.kubectl("exec", "-n", ns, name, "-c", "dind", "--",
                                              "cat", f"{ws}/from-runner").strip()
        kind_cluster.kubectl("exec", "-n", ns, name, "-c", "dind", "--", "sh", "-c",
                             f"echo daemon-{token} > {ws}/from-daemon")

    r = run_pod(kind_cluster, ns, standin_pod(kind_cluster, lane, job), while_running=from_the_daemon_side)
    assert r.result == {"started": 0, "job": 0, "completed": 0}, r.logs[-3000:]
    assert seen["runner"] == token  # the daemon's container sees the runner's file ...
    assert "job: saw the daemon's file" in r.logs  # ... and the runner the daemon's
    assert re.search(r"^job: daemon \S+ \S+$", r.logs, re.MULTILINE)
    assert r.node == _expect_node(lane)


# -- canary Jobs in the lanes' pods -------------------------------------------


def _run_job(c: Any, ns: str | None, job: dict[str, Any], timeout: float = 300) -> tuple[str, str, int | None]:
    """Create a batch/v1 Job in ``ns`` (None: the namespace it names, and it is deleted
    when the test ends); return its pod's phase, log and exit code."""
    from kubernetes import client

    from flywheel_runtime.kube import wait_for

    job = copy.deepcopy(job)
    if ns is None:
        ns = job["metadata"]["namespace"]
        job["metadata"]["name"] += "-" + uuid.uuid4().hex[:6]
        OUTSIDE.append(("job", ns, job["metadata"]["name"]))
    job["metadata"]["namespace"] = ns
    client.BatchV1Api(c.kube.core.api_client).create_namespaced_job(ns, job)
    name = job["metadata"]["name"]

    def finished() -> Any:
        pods = c.kube.core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
        return next((p for p in pods if p.status.phase in ("Succeeded", "Failed")), None)

    p = wait_for(finished, timeout, f"job {ns}/{name} to finish", interval=0.5)
    container = p.spec.containers[0].name
    code = next((s.state.terminated.exit_code for s in p.status.container_statuses or []
                 if s.name == container and s.state.terminated), None)
    return p.status.phase, _log(c, ns, p.metadata.name, container=container), code


def _canary_job(c: Any, lane: str, command: list[str] | None = None) -> dict[str, Any]:
    """The lane's canary Job as rendered: in the lane's namespace, under its account."""
    from flywheel_runtime.canary.jobs import job_manifest

    job = c.fit(job_manifest(TOPO, lane))
    if command is not None:
        job["spec"]["template"]["spec"]["containers"][0]["command"] = command
    return job


def _report(log: str) -> dict[str, Any]:
    """The --json document in a pod log that also carries stderr lines."""
    lines = log.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("{"))
    end = max(i for i, ln in enumerate(lines) if ln.startswith("}"))
    return json.loads("\n".join(lines[start:end + 1]))


def test_kvm_canary_job_passes_in_the_kvm_lane(kind_cluster: Any, ns: str) -> None:
    job = _canary_job(kind_cluster, "kvm")
    spec = job["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "flywheel-kvm" and "privileged" not in spec["containers"][0]["securityContext"]
    phase, log, code = _run_job(kind_cluster, None, job)
    assert phase == "Succeeded" and code == 0, log[-2000:]
    doc = _report(log)
    assert doc["canary"] == "kvm" and doc["status"] == "passed" and all(c["passed"] for c in doc["checks"])


def test_gpu_canary_job_passes_on_lavapipe_and_refuses_it_as_hardware(kind_cluster: Any, ns: str) -> None:
    job = _canary_job(kind_cluster, "gpu")
    assert "--require-hardware" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    phase, log, code = _run_job(kind_cluster, None, job)
    # as designed: lavapipe is a CPU rasteriser, so the hardware lane's canary says its GPU is absent
    assert phase == "Failed" and code == 6, log[-2000:]
    assert "hardware GPU required but only a software adapter is available" in log
    soft = _canary_job(kind_cluster, "gpu", ["flywheel-runtime", "canary", "gpu", "--json"])
    soft["metadata"]["name"] += "-software"
    phase, log, code = _run_job(kind_cluster, None, soft)
    assert phase == "Succeeded" and code == 0, log[-3000:]
    doc = _report(log)
    by = {r["canary"]: r for r in doc["canaries"]}
    assert sorted(by) == ["dawn", "vulkan", "webgpu"]
    for name, rep in by.items():
        assert rep["status"] == "passed" and rep["adapter"]["kind"] == "software", (name, rep)
        assert "llvmpipe" in rep["adapter"]["device"]


# -- the CronJobs, as Jobs, with their ServiceAccount and RBAC --------------------


def _job_from_cronjob(cj: dict[str, Any], suffix: str) -> dict[str, Any]:
    """What `kubectl create job --from=cronjob/NAME` makes."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{cj['metadata']['name'][:40]}-{suffix}", "namespace": cj["metadata"]["namespace"],
                         "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
            "spec": copy.deepcopy(cj["spec"]["jobTemplate"]["spec"])}


@pytest.fixture()
def operator_namespace(kind_cluster: Any, images: dict[str, Any]) -> Any:
    """The CronJobs' accounts and RBAC, as the harness's bootstrap applied them (rendered)."""
    from flywheel_runtime.topology import render

    for o in render.operator_rbac(TOPO):
        kind_cluster.kubectl("get", "-n", o["metadata"]["namespace"], o["kind"].lower(), o["metadata"]["name"])
    yield


def test_cronjobs_run_as_jobs_with_their_rbac_and_do_their_work(kind_cluster: Any, operator_namespace: Any) -> None:
    from kubernetes import client

    from flywheel_runtime.audit import warmpool
    from flywheel_runtime.topology import render

    kube = kind_cluster.kube
    suffix = uuid.uuid4().hex[:6]
    # warm pool: an ARS whose minRunners is wrong for this instant; the Job must correct it
    ss = TOPO.scale_set("tinyland-nix")
    ars = render.autoscaling_runner_set(TOPO, ss.name)
    want = warmpool.scale_set_min_runners(ss, dt.datetime.now(dt.timezone.utc))
    ars["spec"]["minRunners"] = want + 3
    kube.apply(ars)
    custom = client.CustomObjectsApi(kube.core.api_client)
    ghost, ghost_node = None, f"flywheel-no-kubelet-{suffix}"
    try:
        for cj in render.warm_pool_cronjobs(TOPO):
            phase, log, code = _run_job(kind_cluster, cj["metadata"]["namespace"], _job_from_cronjob(cj, suffix))
            assert phase == "Succeeded" and code == 0, log[-2000:]
            assert f"{ss.namespace}/{ss.name}: minRunners " in log
        got = custom.get_namespaced_custom_object("actions.github.com", "v1alpha1", ss.namespace,
                                                  "autoscalingrunnersets", ss.name)
        assert got["spec"]["minRunners"] == want
        # cleanup: a pod that finished long ago, bound to a Node object with no kubelet behind
        # it (so its status stays as set, and the pod GC keeps it: the node exists)
        ghost = f"finished-long-ago-{suffix}"
        kube.core.create_node({"metadata": {"name": ghost_node}, "spec": {
            "unschedulable": True, "taints": [{"key": "flywheel.tinyland.dev/no-kubelet", "effect": "NoSchedule"}]}})
        kube.core.create_namespaced_pod(ss.namespace, {
            "metadata": {"name": ghost}, "spec": {"nodeName": ghost_node,
                                                  "containers": [{"name": "c", "image": TOPO.images["nix"]}]}})
        old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).isoformat()
        kube.core.patch_namespaced_pod_status(ghost, ss.namespace, {"status": {"phase": "Succeeded",
                                                                               "startTime": old}})
        cj = render.cleanup_cronjob(TOPO)
        phase, log, code = _run_job(kind_cluster, cj["metadata"]["namespace"], _job_from_cronjob(cj, suffix))
        assert phase == "Succeeded" and code == 0, log[-2000:]
        assert f"delete {ss.namespace}/{ghost}: Succeeded" in log, log
        from kubernetes.client.rest import ApiException

        with pytest.raises(ApiException) as gone:
            p = kube.core.read_namespaced_pod(ghost, ss.namespace)
            if p.metadata.deletion_timestamp is None:
                raise AssertionError("the cleanup Job did not delete the finished pod")
            raise ApiException(status=404)
        assert gone.value.status == 404
    finally:
        custom.delete_namespaced_custom_object("actions.github.com", "v1alpha1", ss.namespace,
                                               "autoscalingrunnersets", ss.name)
        if ghost:
            kube.delete_pod(ss.namespace, ghost)
            kind_cluster.kubectl("delete", "--ignore-not-found", "node", ghost_node)
        for j in client.BatchV1Api(kube.core.api_client).list_namespaced_job(ss.namespace).items:
            if j.metadata.name.endswith(suffix):
                client.BatchV1Api(kube.core.api_client).delete_namespaced_job(
                    j.metadata.name, ss.namespace, propagation_policy="Background")
