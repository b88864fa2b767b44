"""Least privilege on the cluster, as ``cluster up`` leaves it (issue 21).

The harness's bootstrap applies the rendered posture (harness/bootstrap.py):
the device and warm-pool admission policies, each utility job's account and
Role, the NetworkPolicies.  Admission and RBAC are the API server's, so the sim
answers for them; only kind has a data path and the NetworkPolicy engine
(harness/kind/netpol.py), so traffic is checked there.  The kvm lane's canary
passing under the policy is tests/e2e/test_runner_images.py's
test_kvm_canary_job_passes_in_the_kvm_lane (it needs the runner images).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from typing import Any

import pytest

from flywheel_runtime.topology import devices, load, render

pytestmark = pytest.mark.e2e

TOPO = load()
KVM = TOPO.scale_set("tinyland-nix-kvm")
DEVICE_LANES = [ss for ss in TOPO.scale_sets if devices.of_scale_set(ss) is not None]
REFUSAL = "hands out host devices"


def _account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _kubectl(c: Any, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    from flywheel_runtime import toolchain

    cmd = [str(toolchain.kubectl()), *(["--as", user] if user else []), *args]
    return subprocess.run(cmd, env={**os.environ, "KUBECONFIG": str(c.kubeconfig)}, capture_output=True, text=True)


def _create_refusal(c: Any, body: dict[str, Any], namespace: str) -> str | None:
    """Create the pod (server-side dry run: admission runs in full, nothing is stored);
    return the API server's refusal, or None if admitted."""
    from kubernetes.client.rest import ApiException

    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    try:
        c.kube.core.create_namespaced_pod(namespace, body, dry_run="All")
    except ApiException as exc:
        return f"{exc.status} {exc.body}"
    return None


# -- device classes ------------------------------------------------------------


@pytest.mark.parametrize("lane", [ss.name for ss in DEVICE_LANES])
def test_device_class_only_for_the_lane_that_declares_it(flywheel_cluster: Any, lane: str) -> None:
    c = flywheel_cluster
    ss = TOPO.scale_set(lane)
    rc = devices.of_scale_set(ss).runtime_class
    own = render.pod(TOPO, lane)
    own["spec"]["serviceAccountName"] = render.no_permission_service_account(ss)
    assert own["spec"]["runtimeClassName"] == rc
    # The lane's own pod, as ARC creates it: admitted (its account exists: the bootstrap made it).
    assert c.kube.service_account_exists(ss.namespace, render.no_permission_service_account(ss))
    assert _create_refusal(c, own, ss.namespace) is None
    with c.namespace("posture") as ns:
        # The same pod in another namespace, under an account of the same name there
        # and under the namespace's default one: refused at admission.
        c.kube.core.create_namespaced_service_account(ns, {"metadata": {"name": own["spec"]["serviceAccountName"]}})
        refused = _create_refusal(c, own, ns)
        assert refused is not None and REFUSAL in refused and refused.startswith("403"), refused
        plain = copy.deepcopy(own)
        del plain["spec"]["serviceAccountName"]
        refused = _create_refusal(c, plain, ns)
        assert refused is not None and REFUSAL in refused, refused
    # In the lane's namespace without the lane's account (the namespace's default one).
    bare = copy.deepcopy(own)
    del bare["spec"]["serviceAccountName"]
    refused = _create_refusal(c, bare, ss.namespace)
    assert refused is not None and REFUSAL in refused, refused
    # Another lane's pod (its account, its scale-set label) naming the class.
    other = next(s for s in TOPO.scale_sets if devices.of_scale_set(s) is None and s.namespace == ss.namespace)
    theirs = render.pod(TOPO, other.name)
    theirs["spec"]["runtimeClassName"] = rc
    theirs["spec"]["serviceAccountName"] = render.no_permission_service_account(other)
    refused = _create_refusal(c, theirs, ss.namespace)
    assert refused is not None and REFUSAL in refused, refused


def test_the_kvm_canary_job_is_admitted_in_its_lane(flywheel_cluster: Any) -> None:
    """The canary Job's pod passes the device policy (created by the job controller,
    so a refusal would show as the Job's FailedCreate, never as a pod)."""
    from flywheel_runtime.canary.jobs import job_manifest
    from flywheel_runtime.kube import wait_for

    c = flywheel_cluster
    job = c.fit(job_manifest(TOPO, "kvm"))
    job["metadata"]["name"] += "-" + uuid.uuid4().hex[:6]
    ns = job["metadata"]["namespace"]
    assert ns == KVM.namespace
    c.kube.batch.create_namespaced_job(ns, job)
    try:
        pods = wait_for(lambda: c.kube.core.list_namespaced_pod(
            ns, label_selector=f"job-name={job['metadata']['name']}").items, 60, "the canary Job's pod")
        assert pods[0].spec.runtime_class_name == "flywheel-kvm"
    finally:
        c.kube.batch.delete_namespaced_job(job["metadata"]["name"], ns, propagation_policy="Background")


# -- the utility jobs' accounts --------------------------------------------------


def _can(c: Any, user: str, verb: str, resource: str, namespace: str) -> bool:
    r = _kubectl(c, "auth", "can-i", verb, resource, "-n", namespace, user=user)
    assert r.stdout.strip() in ("yes", "no"), r.stderr
    return r.stdout.strip() == "yes"


def _granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(verb, resource[/name]) pairs a rendered Role grants, as `kubectl auth can-i` spells them."""
    out = set()
    for rule in role["rules"]:
        for res in rule["resources"]:
            kind = res if not rule["apiGroups"][0] else f"{res}.{rule['apiGroups'][0]}"
            for verb in rule["verbs"]:
                for name in rule.get("resourceNames") or [None]:
                    out.add((verb, f"{kind}/{name}" if name else kind))
    return out


ARS = f"{render.ARS_PLURAL}.{render.ARC_GROUP}"
# What none of the jobs needs: every one must be refused to every account.
NEVER = [("get", "secrets"), ("list", "secrets"), ("create", "pods"), ("get", "pods"), ("patch", "pods"),
         ("create", "pods/exec"), ("list", ARS), ("delete", ARS), ("create", ARS), ("update", ARS),
         ("get", "serviceaccounts"), ("create", "rolebindings.rbac.authorization.k8s.io")]


def test_each_cronjob_account_can_do_its_job_and_nothing_else(flywheel_cluster: Any) -> None:
    c = flywheel_cluster
    objs = render.operator_rbac(TOPO)
    roles = [o for o in objs if o["kind"] == "Role"]
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "ServiceAccount"}
    # One account per CronJob, each named as its job.
    jobs = [render.cleanup_cronjob(TOPO), *render.warm_pool_cronjobs(TOPO)]
    assert accounts == {(j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs}
    for j in jobs:
        assert j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == j["metadata"]["name"]
    for ns, name in sorted(accounts):
        user = _account(ns, name)
        mine = {(r["metadata"]["namespace"], pair) for r in roles
                if any(s["name"] == name and s["namespace"] == ns for s in _binding(objs, r)["subjects"])
                for pair in _granted(r)}
        assert mine, f"{name} has no Role"
        for where, (verb, res) in sorted(mine):
            assert _can(c, user, verb, res, where), f"{name} cannot {verb} {res} in {where}"
        # Everything the other accounts hold, and what no job needs, is refused.
        others = {(r["metadata"]["namespace"], pair) for r in roles for pair in _granted(r)} - mine
        for where, (verb, res) in sorted(others):
            assert not _can(c, user, verb, res, where), f"{name} can {verb} {res} in {where}"
        for where in sorted({w for w, _ in mine} | {"kube-system", "gitlab-runners"}):
            for verb, res in NEVER:
                assert not _can(c, user, verb, res, where), f"{name} can {verb} {res} in {where}"


def _binding(objs: list[dict[str, Any]], role: dict[str, Any]) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"] == role["metadata"])


def test_cronjob_accounts_real_calls_allowed_and_denied(flywheel_cluster: Any) -> None:
    """The calls themselves, made as the accounts: what the code does works, a step
    beside it is Forbidden."""
    c = flywheel_cluster
    ss = next(s for s in TOPO.scale_sets if s.warm_pool is not None)
    other = next(s for s in TOPO.scale_sets if s.warm_pool is None and s.namespace == ss.namespace)
    for name in (ss.name, other.name):
        c.kube.apply(render.autoscaling_runner_set(TOPO, name))
    try:
        _real_calls(c, ss, other)
    finally:
        for name in (ss.name, other.name):
            _kubectl(c, "delete", ARS, name, "-n", ss.namespace, "--ignore-not-found", "--wait=false")


def _real_calls(c: Any, ss: Any, other: Any) -> None:
    cj = render.cleanup_cronjob(TOPO)
    cleanup = _account(cj["metadata"]["namespace"], cj["metadata"]["name"])
    ok = _kubectl(c, "get", "pods", "-n", ss.namespace, "-o", "name", user=cleanup)
    assert ok.returncode == 0, ok.stderr
    for args in (["get", "secrets", "-n", ss.namespace], ["get", ARS, ss.name, "-n", ss.namespace],
                 ["get", "pods", "-n", "kube-system"]):
        r = _kubectl(c, *args, user=cleanup)
        assert r.returncode != 0 and "Forbidden" in r.stderr, (args, r.stdout, r.stderr)
    warm = _account(ss.namespace, render.warm_pool_job_name(ss.name, ss.warm_pool.schedules[0].min_runners))
    ok = _kubectl(c, "get", ARS, ss.name, "-n", ss.namespace, "-o", "jsonpath={.spec.minRunners}", user=warm)
    assert ok.returncode == 0 and ok.stdout.isdigit(), ok.stderr
    for args in (["get", ARS, other.name, "-n", ss.namespace], ["get", ARS, "-n", ss.namespace],
                 ["delete", "pods", "--all", "-n", ss.namespace, "--dry-run=server"],
                 ["patch", ARS, other.name, "-n", ss.namespace, "--type=merge", "-p", '{"spec":{"minRunners":0}}']):
        r = _kubectl(c, *args, user=warm)
        assert r.returncode != 0 and "Forbidden" in r.stderr, (args, r.stdout, r.stderr)


# -- the warm-pool admission policy ---------------------------------------------


@pytest.mark.parametrize("patch, why", [
    ({"spec": {"maxRunners": 99}}, "may change nothing in spec but minRunners"),
    ({"spec": {"template": {"spec": {"containers": [{"name": "runner", "image": "evil", "securityContext": {
        "privileged": True}}]}}}}, "may change nothing in spec but minRunners"),
    ({"spec": {"runnerGroup": "other"}}, "may change nothing in spec but minRunners"),
    ({"metadata": {"labels": {"flywheel.tinyland.dev/extra": "x"}}}, "may not change labels"),
    ({"spec": {"minRunners": 7}}, "only to a value their schedules set"),
], ids=["maxRunners", "template", "new-field", "labels", "unlisted-minRunners"])
def test_warm_pool_patch_touching_anything_but_min_runners_is_refused(flywheel_cluster: Any,
                                                                      patch: dict[str, Any], why: str) -> None:
    c = flywheel_cluster
    ss = next(s for s in TOPO.scale_sets if s.warm_pool is not None)
    c.kube.apply(render.autoscaling_runner_set(TOPO, ss.name))
    try:
        _patches(c, ss, patch, why)
    finally:
        _kubectl(c, "delete", ARS, ss.name, "-n", ss.namespace, "--ignore-not-found", "--wait=false")


def _patches(c: Any, ss: Any, patch: dict[str, Any], why: str) -> None:
    allowed = sorted({ss.min_runners, *(s.min_runners for s in ss.warm_pool.schedules)})
    assert 7 not in allowed
    user = _account(ss.namespace, render.warm_pool_job_name(ss.name, ss.warm_pool.schedules[0].min_runners))
    base = ["patch", ARS, ss.name, "-n", ss.namespace, "--type=merge", "--dry-run=server"]
    r = _kubectl(c, *base, "-p", json.dumps(patch), user=user)
    assert r.returncode != 0 and why in r.stderr and "flywheel-warm-pool-min-runners" in r.stderr, r.stderr
    # The job's own patch, to each value its schedules set, passes the same policy.
    for value in allowed:
        r = _kubectl(c, *base, "-p", json.dumps({"spec": {"minRunners": value}}), user=user)
        assert r.returncode == 0, r.stderr


# -- NetworkPolicy on the data path (kind) ---------------------------------------


def _standin(name: str, labels: dict[str, str], port: int, image: str) -> dict[str, Any]:
    """A tiny HTTP server (the runner image's python) standing in for a cache service."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": {
        "automountServiceAccountToken": False,
        "containers": [{"name": "server", "image": image, "imagePullPolicy": "Never",
                        "command": ["python3", "-m", "http.server", str(port)], "workingDir": "/tmp",
                        "ports": [{"containerPort": port}],
                        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}]}}


def _service(name: str, selector: dict[str, str], port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"port": port, "targetPort": port}]}}


def _reach_settled(url: str, tries: int = 30) -> str:
    """Echo the URL, the HTTP code and curl's exit status (28 is a timeout, what a dropped
    packet gives), retried while that status is 7 (refused): kube-proxy rejects a Service
    whose endpoints it has not programmed yet on this node, and that lag (EndpointSlice
    to iptables, per node) is not what the test is about. A drop (28) or an answer ends it."""
    probe = f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {url}; echo \" $?\""
    return (f"i=0; while :; do r=$({probe}); i=$((i+1)); "
            f"case \"$r\" in *' 7') [ $i -lt {tries} ] && sleep 1 && continue;; esac; break; done; "
            f"echo \"{url} $r\"")


@pytest.mark.backend("kind", reason="the sim's nodes have no data path: its NetworkPolicies are stored, not enforced")
def test_runner_reaches_attic_and_not_postgresql(flywheel_cluster: Any) -> None:
    from flywheel_runtime.harness.kind import netpol
    from flywheel_runtime.kube import wait_for

    c = flywheel_cluster
    core = c.kube.core
    ds = c.kube.apps.read_namespaced_daemon_set(netpol.NAME, netpol.NAMESPACE).status
    assert ds.desired_number_scheduled == ds.number_ready == len(TOPO.nodes)  # the engine on every node
    image = TOPO.images["nix"]
    c.load_docker_image(image)
    attic, pg = TOPO.services["attic"], TOPO.services["cnpg-postgresql"]
    attic_port, pg_port = attic.ports[0].port, pg.ports[0].port
    cache_ns = attic.namespace
    suffix = uuid.uuid4().hex[:6]
    made: list[tuple[str, str, str]] = []  # (kind, namespace, name)
    try:
        for name, svc, port in ((f"attic-standin-{suffix}", attic, attic_port), (f"pg-standin-{suffix}", pg, pg_port)):
            core.create_namespaced_pod(cache_ns, _standin(name, dict(svc.pods), port, image))
            made.append(("pod", cache_ns, name))
        core.create_namespaced_service(cache_ns, _service("attic", dict(attic.pods), attic_port))
        made.append(("service", cache_ns, "attic"))
        core.create_namespaced_service(cache_ns, _service(f"pg-{suffix}", dict(pg.pods), pg_port))
        made.append(("service", cache_ns, f"pg-{suffix}"))
        for _, ns, name in [m for m in made if m[0] == "pod"]:
            wait_for(lambda ns=ns, name=name: all(s.ready for s in core.read_namespaced_pod(
                name, ns).status.container_statuses or [False]) or None, 180, f"{name} ready", interval=1)
        attic_url = f"http://attic.{cache_ns}.svc.cluster.local:{attic_port}/"
        pg_url = f"http://pg-{suffix}.{cache_ns}.svc.cluster.local:{pg_port}/"
        # The control: Attic (CNPG's client) reaches the PostgreSQL stand-in, so what
        # stops the runner below is the policy, not a dead server.
        control = _kubectl(c, "exec", "-n", cache_ns, f"attic-standin-{suffix}", "--", "sh", "-c",
                           _reach_settled(pg_url))
        assert control.stdout.split() == [pg_url, "200", "0"], (control.stdout, control.stderr)
        # A runner pod: the lane's labels (what the policies select on), in the lane's namespace.
        ss = TOPO.scale_set("tinyland-nix")
        runner = f"runner-probe-{suffix}"
        core.create_namespaced_pod(ss.namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": runner, "labels": render.pod_labels(TOPO, ss)}, "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "containers": [{"name": "runner", "image": image, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", _reach_settled(attic_url) + "; " + _reach_settled(pg_url)]}]}})
        made.append(("pod", ss.namespace, runner))
        wait_for(lambda: core.read_namespaced_pod(runner, ss.namespace).status.phase in ("Succeeded", "Failed")
                 or None, 240, "the runner probe to finish", interval=1)
        lines = [ln.split() for ln in str(core.read_namespaced_pod_log(runner, ss.namespace)).splitlines()]
        assert [attic_url, "200", "0"] in lines, lines
        assert [pg_url, "000", "28"] in lines, lines  # dropped: a timeout, not a refusal
    finally:
        for kind, ns, name in reversed(made):
            _kubectl(c, "delete", kind, name, "-n", ns, "--ignore-not-found", "--wait=false")


# -- the lanes' accounts and a later chart install ---------------------------------


def _charts() -> Any:
    """ARC's charts: ``$FLYWHEEL_ARC_CHARTS``, else the shared copy beside the repository."""
    from flywheel_runtime.harness.arc import charts_dir

    return charts_dir()


def test_a_chart_install_adopts_the_lane_account_the_bootstrap_made(flywheel_cluster: Any, tmp_path: Any) -> None:
    """`helm upgrade --install <set>` (ARC's scale-set chart) over a cluster the harness
    bootstrapped takes the lane's account over instead of refusing it."""
    import yaml

    from flywheel_runtime import toolchain
    from flywheel_runtime.harness.bootstrap import ensure_accounts, lane_service_accounts
    from flywheel_runtime.kube import wait_for

    helm, charts = toolchain.cached_binary("helm"), _charts()
    if helm is None or charts is None:
        pytest.skip("ARC's charts are not here (set FLYWHEEL_ARC_CHARTS) or helm is not built "
                    "(`toolchain ensure helm`)")
    c = flywheel_cluster
    ss = next(s for s in TOPO.scale_sets if devices.of_scale_set(s) is None and s.warm_pool is None)
    account = render.no_permission_service_account(ss)
    assert c.kube.service_account_exists(ss.namespace, account)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(render.helm_values(TOPO, ss.name)))
    env = {**os.environ, "KUBECONFIG": str(c.kubeconfig)}
    helm_cmd = [str(helm), "-n", ss.namespace]
    try:
        r = subprocess.run([*helm_cmd, "upgrade", "--install", ss.name, str(charts / "gha-runner-scale-set"),
                            "--skip-crds", "-f", str(values)], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        sa = c.kube.core.read_namespaced_service_account(account, ss.namespace)
        assert "actions.github.com/cleanup-protection" in (sa.metadata.finalizers or [])  # the chart's now
    finally:
        subprocess.run([*helm_cmd, "uninstall", ss.name, "--wait=false"], env=env, capture_output=True, timeout=300)
        # No controller here removes the chart's finalizers: do it, then put the bootstrap's account back.
        for plural, name in ((render.ARS_PLURAL, ss.name), ("serviceaccounts", account)):
            _kubectl(c, "patch", plural if plural == "serviceaccounts" else ARS, name, "-n", ss.namespace,
                     "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        _kubectl(c, "delete", "serviceaccount", account, "-n", ss.namespace, "--ignore-not-found", "--wait=false")
        wait_for(lambda: not c.kube.service_account_exists(ss.namespace, account), 60, f"{account} gone")
        ensure_accounts(c.kube, [a for a in lane_service_accounts(TOPO) if a["metadata"]["name"] == account])
