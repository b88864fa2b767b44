"""Each utility CronJob's Role grants exactly the calls its code makes.

The code's calls are read from the source (AST): every call of a Kubernetes
client API method in audit/cleanup.py and audit/warmpool.py, mapped to the
(API group, resource, verb) the API server authorizes.  The rendered Role of
the job's ServiceAccount must grant that set and nothing more.  A recording
fake client then runs the code and holds every call's namespace and name
against the Role's namespace and ``resourceNames``.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
from types import ModuleType
from typing import Any

import kubernetes.client
import pytest

from flywheel_runtime.audit import cleanup, warmpool
from flywheel_runtime.kube._client import Client
from flywheel_runtime.topology import load, render

UTC = dt.timezone.utc
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "delete": "delete", "patch": "patch",
         "replace": "update", "delete_collection": "deletecollection", "watch": "watch"}
# kind (the client's snake_case) -> resource, where the plural is not kind + "s"
PLURALS = {"endpoints": "endpoints", "ingress": "ingresses", "network_policy": "networkpolicies",
           "priority_class": "priorityclasses", "storage_class": "storageclasses", "runtime_class": "runtimeclasses"}
CORE_GROUPS = {"CoreV1Api": "", "AppsV1Api": "apps", "BatchV1Api": "batch", "RbacAuthorizationV1Api":
               "rbac.authorization.k8s.io", "NetworkingV1Api": "networking.k8s.io", "NodeV1Api": "node.k8s.io"}


def _api_methods() -> dict[str, str]:
    """Every public method of the kubernetes client's API classes -> the class name."""
    out: dict[str, str] = {}
    for name, cls in inspect.getmembers(kubernetes.client, inspect.isclass):
        if name.endswith("Api") and name != "ApiClient":
            for m in dir(cls):
                if not m.startswith("_") and not m.endswith("_with_http_info") and m not in ("close", "api_client"):
                    out.setdefault(m, name)
    return out


API_METHODS = _api_methods()
# Client (flywheel_runtime.kube) methods that call the API behind the test's back.
CLIENT_CALLS = {m for m in vars(Client) if not m.startswith("_") and m != "to_dict"}


def _const(node: ast.AST, module: ModuleType) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
        return getattr(module, node.id)
    return None


def code_calls(source: str, module: ModuleType) -> set[tuple[str, str, str]]:
    """(group, resource, verb) for every Kubernetes API call in ``source``."""
    calls: set[tuple[str, str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        if method in CLIENT_CALLS:
            raise AssertionError(f"{module.__name__} calls Client.{method}: the test cannot see which API calls "
                                 "that makes; call the kubernetes client directly or map it here")
        if method not in API_METHODS:
            continue
        m = re.fullmatch(r"(read|get|list|create|delete_collection|delete|patch|replace|watch)_"
                         r"(?:namespaced_|cluster_)?(.+?)(?:_for_all_namespaces)?(_status|_scale)?", method)
        assert m, f"{module.__name__}: cannot read the verb of {method}"
        verb, kind, sub = VERBS[m.group(1)], m.group(2), m.group(3) or ""
        if kind == "custom_object":
            args = [_const(a, module) for a in node.args]
            assert len(args) >= 4 and args[0] and (args[3] if "namespaced" in method else args[2]), (
                f"{module.__name__}: {method} with a group or plural the test cannot read")
            group, resource = args[0], args[3] if "namespaced" in method else args[2]
        else:
            group = CORE_GROUPS[API_METHODS[method]]
            resource = PLURALS.get(kind, kind.replace("_", "") + "s")
        calls.add((group, resource + sub.replace("_", "/"), verb))
    return calls


def role_grants(topo: Any, account: str) -> dict[str, set[tuple[str, str, str]]]:
    """namespace -> (group, resource, verb) the Roles bound to ``account`` grant."""
    objs = render.operator_rbac(topo)
    bound = {(o["metadata"]["namespace"], o["roleRef"]["name"]) for o in objs if o["kind"] == "RoleBinding"
             and any(s["name"] == account for s in o["subjects"])}
    out: dict[str, set[tuple[str, str, str]]] = {}
    for o in objs:
        if o["kind"] == "Role" and (o["metadata"]["namespace"], o["metadata"]["name"]) in bound:
            out[o["metadata"]["namespace"]] = {(g, r, v) for rule in o["rules"] for g in rule["apiGroups"]
                                               for r in rule["resources"] for v in rule["verbs"]}
    return out


def _account(cj: dict[str, Any]) -> str:
    return cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]


@pytest.fixture(scope="module")
def topo() -> Any:
    return load()


def test_the_reader_sees_the_known_calls() -> None:
    assert code_calls(inspect.getsource(cleanup), cleanup) == {("", "pods", "list"), ("", "pods", "delete")}
    assert code_calls(inspect.getsource(warmpool), warmpool) == {
        ("actions.github.com", "autoscalingrunnersets", "get"), ("actions.github.com", "autoscalingrunnersets", "patch")}


def test_a_new_call_or_a_client_shortcut_is_seen() -> None:
    """What would make the Role short: the reader must notice it."""
    src = inspect.getsource(cleanup) + "\n\ndef more(cluster):\n    cluster.core.read_namespaced_pod_status('a', 'b')\n"
    assert ("", "pods/status", "get") in code_calls(src, cleanup)
    src = inspect.getsource(warmpool) + ("\n\ndef more(api):\n    api.replace_namespaced_custom_object("
                                         "ARC_GROUP, ARC_VERSION, 'ns', ARC_PLURAL, 'x', {})\n")
    assert ("actions.github.com", "autoscalingrunnersets", "update") in code_calls(src, warmpool)
    with pytest.raises(AssertionError, match="calls Client.list_arc"):
        code_calls("def f(cluster):\n    cluster.list_arc('ephemeralrunners')\n", cleanup)


def test_cleanup_role_is_exactly_its_code(topo: Any) -> None:
    cj = render.cleanup_cronjob(topo)
    grants = role_grants(topo, _account(cj))
    assert sorted(grants) == cleanup.runner_namespaces(topo)  # every namespace it cleans, no other
    for ns, granted in grants.items():
        assert granted == code_calls(inspect.getsource(cleanup), cleanup), ns


def test_each_warm_pool_role_is_exactly_its_code_on_its_named_set(topo: Any) -> None:
    jobs = render.warm_pool_cronjobs(topo)
    assert len({_account(cj) for cj in jobs}) == len(jobs) == 2  # one account per CronJob
    for cj in jobs:
        args = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        ss = topo.scale_set(args[args.index("--scale-set") + 1])
        grants = role_grants(topo, _account(cj))
        assert list(grants) == [ss.namespace]
        assert grants[ss.namespace] == code_calls(inspect.getsource(warmpool), warmpool)
        (role,) = [o for o in render.operator_rbac(topo) if o["kind"] == "Role"
                   and o["metadata"]["name"] == _account(cj)]
        assert [r["resourceNames"] for r in role["rules"]] == [[ss.name]]


def test_no_two_jobs_share_an_account_or_a_role(topo: Any) -> None:
    jobs = [render.cleanup_cronjob(topo), *render.warm_pool_cronjobs(topo)]
    accounts = [_account(cj) for cj in jobs]
    assert accounts == [cj["metadata"]["name"] for cj in jobs]
    sas = [o for o in render.operator_rbac(topo) if o["kind"] == "ServiceAccount"]
    assert sorted(o["metadata"]["name"] for o in sas) == sorted(accounts)


class _Recorder:
    """A stand-in API object: records (method, args) and answers what the code reads."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers = answers

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, args))
            return self.answers.get(method)
        return call


def test_recorded_calls_stay_inside_the_roles(topo: Any) -> None:
    """The code run against a recording client: every call's namespace and
    name fall inside the Role of the job's account (namespace, resourceNames)."""
    from types import SimpleNamespace

    now = dt.datetime(2026, 11, 30, 13, 0, tzinfo=UTC)  # Monday 13:00: the warm pool goes to 1
    old = (now - dt.timedelta(hours=1)).isoformat()
    pods = SimpleNamespace(items=[{"metadata": {"namespace": "arc-runners", "name": "done"},
                                   "status": {"phase": "Succeeded", "startTime": old}}])
    core = _Recorder({"list_namespaced_pod": pods})
    fake = SimpleNamespace(core=core, to_dict=lambda p: p)
    cleanup.run(fake, topo.cleanup, now, cleanup.runner_namespaces(topo), apply=True)
    assert [m for m, _ in core.calls] == ["list_namespaced_pod", "delete_namespaced_pod"]
    grants = role_grants(topo, "runner-cleanup")
    assert core.calls[0][1][0] in grants and core.calls[1][1][1] in grants  # namespaces

    custom = _Recorder({"get_namespaced_custom_object": {"spec": {"minRunners": 0}}})
    for cj in render.warm_pool_cronjobs(topo):
        custom.calls.clear()
        warmpool.reconcile(custom, topo, now, apply=True, only="tinyland-nix")
        assert [m for m, _ in custom.calls] == ["get_namespaced_custom_object", "patch_namespaced_custom_object"]
        (role,) = [o for o in render.operator_rbac(topo) if o["kind"] == "Role"
                   and o["metadata"]["name"] == _account(cj)]
        for _, args in custom.calls:
            group, _version, namespace, plural, name = args[:5]
            assert namespace == role["metadata"]["namespace"]
            assert any(group in r["apiGroups"] and plural in r["resources"] and name in r["resourceNames"]
                       for r in role["rules"])
