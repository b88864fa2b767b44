"""Least privilege on the cluster: admission policies and NetworkPolicies.

* :func:`device_admission`: a device RuntimeClass has no "use" permission, so a
  ValidatingAdmissionPolicy lets only the pods of the lanes that declare the
  device name it (their namespace, ARC's service account for them, their
  scale-set label);
* :func:`warm_pool_admission`: the warm-pool jobs' accounts may change nothing
  on an AutoscalingRunnerSet but ``spec.minRunners`` (to a value their
  schedules set): their Role's ``patch`` alone would hand them the runner pod
  template, which ARC turns into any pod;
* :func:`network_policies`: runners reach DNS, the cache services the topology
  names, the API server where their class says so, and the outside world;
  CNPG and RustFS take connections only from their declared clients.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from flywheel_runtime.topology.model import Service, Topology
from flywheel_runtime.topology.render._common import (
    ARC_GROUP,
    ARS_PLURAL,
    LABEL_GITLAB_RUNNER,
    LABEL_RUNNER_CLASS,
    LABEL_SCALE_SET,
    LABEL_UTILITY_JOB,
    no_permission_service_account,
)
from flywheel_runtime.topology.render._gitlab import COMPONENT, MANAGER

ADMISSION_API = "admissionregistration.k8s.io/v1"
NETWORK_API = "networking.k8s.io/v1"
DEVICE_POLICY = "flywheel-device-classes"
WARM_POOL_POLICY = "flywheel-warm-pool-min-runners"
RUNNERS = "runners"  # the clients word for every runner pod (ARC's and GitLab's)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def cel(value: Any) -> str:
    """A CEL literal for a str, int, bool, list or str-keyed dict."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted CEL string: JSON's escapes are CEL's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cel(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{cel(k)}: {cel(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no CEL literal for {value!r}")


def _binding(policy: str) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Deny"]}}


def device_lanes(topo: Topology) -> dict[str, list[dict[str, str]]]:
    """Device RuntimeClass -> the lanes whose pods may name it."""
    from flywheel_runtime.topology import devices

    return {dc.runtime_class: [{"namespace": ss.namespace, "serviceAccount": no_permission_service_account(ss),
                                "scaleSet": ss.name} for ss in devices.lanes(topo, dc)]
            for dc in devices.used(topo)}


def device_admission(topo: Topology) -> list[dict[str, Any]]:
    """The device classes' admission policy and its binding (none without device lanes)."""
    lanes = device_lanes(topo)
    if not lanes:
        return []
    who = {rc: ", ".join(f"{lane['namespace']}/{lane['scaleSet']}" for lane in ls) for rc, ls in lanes.items()}
    policy = {
        "apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": DEVICE_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            # runtimeClassName is immutable: creation is where a pod names it.
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                    "operations": ["CREATE"], "resources": ["pods"]}]},
            "matchConditions": [{
                "name": "names-a-device-class",
                "expression": f"has(object.spec.runtimeClassName) && object.spec.runtimeClassName in {cel(list(lanes))}",
            }],
            "variables": [
                {"name": "lanes", "expression": f"{cel(lanes)}[object.spec.runtimeClassName]"},
                {"name": "scaleSet", "expression": (
                    f"has(object.metadata.labels) && {cel(LABEL_SCALE_SET)} in object.metadata.labels"
                    f" ? object.metadata.labels[{cel(LABEL_SCALE_SET)}] : ''")},
                {"name": "serviceAccount", "expression": (
                    "has(object.spec.serviceAccountName) ? object.spec.serviceAccountName : 'default'")},
            ],
            "validations": [{
                "expression": ("variables.lanes.exists(l, l.namespace == request.namespace"
                               " && l.serviceAccount == variables.serviceAccount && l.scaleSet == variables.scaleSet)"),
                "messageExpression": (
                    "'RuntimeClass ' + object.spec.runtimeClassName + ' hands out host devices: only the pods of "
                    "the lanes that declare them may name it (namespace, ARC service account and scale-set label "
                    f"of: ' + {cel(who)}[object.spec.runtimeClassName] + ')'"),
                "reason": "Forbidden",
            }],
        },
    }
    return [policy, _binding(DEVICE_POLICY)]


def _username(namespace: str, account: str) -> str:
    return f"system:serviceaccount:{namespace}:{account}"


def warm_pool_admission(topo: Topology) -> list[dict[str, Any]]:
    """The policy that lets the warm-pool accounts change only ``spec.minRunners``,
    and only to a value the set's schedules (or its own minRunners) give."""
    from flywheel_runtime.topology.render._cluster import warm_pool_job_name

    pools = [(ss, ss.warm_pool.schedules) for ss in topo.scale_sets if ss.warm_pool is not None]
    if not pools:
        return []
    users = [_username(ss.namespace, warm_pool_job_name(ss.name, s.min_runners)) for ss, sched in pools for s in sched]
    allowed = {f"{ss.namespace}/{ss.name}": sorted({ss.min_runners, *(s.min_runners for s in sched)})
               for ss, sched in pools}
    update = "request.operation != 'UPDATE' || "
    policy = {
        "apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": WARM_POOL_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [ARC_GROUP], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": [ARS_PLURAL, f"{ARS_PLURAL}/*"]}]},
            "matchConditions": [{"name": "warm-pool-account",
                                 "expression": f"request.userInfo.username in {cel(users)}"}],
            "variables": [{"name": "allowed", "expression": cel(allowed)},
                          {"name": "key", "expression": "request.namespace + '/' + request.name"}],
            "validations": [
                {"expression": "request.operation == 'UPDATE'",
                 "message": "the warm-pool account only patches spec.minRunners", "reason": "Forbidden"},
                {"expression": update + ("variables.key in variables.allowed && has(object.spec.minRunners)"
                                         " && object.spec.minRunners in variables.allowed[variables.key]"),
                 "messageExpression": ("'the warm-pool account sets minRunners only on its own scale sets and "
                                       "only to a value their schedules set (' + variables.key + ')'"),
                 "reason": "Forbidden"},
                {"expression": update + (
                    "oldObject.spec.all(k, k == 'minRunners' || (k in object.spec && object.spec[k] == oldObject.spec[k]))"
                    " && object.spec.all(k, k == 'minRunners' || k in oldObject.spec)"),
                 "message": "the warm-pool account may change nothing in spec but minRunners", "reason": "Forbidden"},
                {"expression": update + (
                    "['labels', 'annotations', 'finalizers', 'ownerReferences'].all(k, "
                    "(k in object.metadata) == (k in oldObject.metadata)"
                    " && (!(k in object.metadata) || object.metadata[k] == oldObject.metadata[k]))"),
                 "message": "the warm-pool account may not change labels, annotations, finalizers or owners",
                 "reason": "Forbidden"},
            ],
        },
    }
    return [policy, _binding(WARM_POOL_POLICY)]


# -- NetworkPolicies -----------------------------------------------------------

def _ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: name}}


def _ports(ports: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [{"protocol": proto, "port": port} for port, proto in ports]


def _netpol(name: str, namespace: str, selector: dict[str, Any], *, ingress: list[dict[str, Any]] | None = None,
            egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {"apiVersion": NETWORK_API, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def _dns(topo: Topology) -> dict[str, Any]:
    net = topo.network
    assert net is not None
    return {"to": [{"namespaceSelector": _ns(net.dns_namespace), "podSelector": {"matchLabels": dict(net.dns_pods)}}],
            "ports": _ports([(net.dns_port, "UDP"), (net.dns_port, "TCP")])}


def outside_blocks(topo: Topology) -> list[dict[str, Any]]:
    """ipBlocks for "the outside world": each address family's whole range less
    the internal ranges of that family."""
    assert topo.network is not None
    internal = [ipaddress.ip_network(c) for c in topo.network.internal_cidrs]
    out = []
    for everything in (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")):
        except_ = [str(c) for c in internal if c.version == everything.version]
        block: dict[str, Any] = {"cidr": str(everything)}
        if except_:
            block["except"] = except_
        out.append({"ipBlock": block})
    return out


def _service_peer(svc: Service) -> dict[str, Any]:
    return {"namespaceSelector": _ns(svc.namespace), "podSelector": {"matchLabels": dict(svc.pods)}}


def _service_egress(svc: Service) -> dict[str, Any]:
    return {"to": [_service_peer(svc)], "ports": _ports([(p.port, p.protocol) for p in svc.ports])}


def _runner_peers(topo: Topology) -> list[dict[str, Any]]:
    """Every runner pod: ARC's (scale-set label) in their namespaces, GitLab's."""
    peers = [{"namespaceSelector": _ns(ns), "podSelector": _arc_runners()}
             for ns in sorted({ss.namespace for ss in topo.scale_sets})]
    peers += [{"namespaceSelector": _ns(ns), "podSelector": _gitlab_runners()}
              for ns in sorted({g.namespace for g in topo.gitlab_runners})]
    return peers


def _arc_runners() -> dict[str, Any]:
    return {"matchExpressions": [{"key": LABEL_SCALE_SET, "operator": "Exists"}]}


def _gitlab_runners() -> dict[str, Any]:
    return {"matchExpressions": [{"key": LABEL_GITLAB_RUNNER, "operator": "Exists"}]}


def _api_server(topo: Topology) -> dict[str, Any]:
    net = topo.network
    assert net is not None
    return {"to": [{"ipBlock": {"cidr": c}} for c in net.api_server_cidrs],
            "ports": _ports([(net.api_server_port, "TCP")])}


def network_policies(topo: Topology) -> list[dict[str, Any]]:
    """NetworkPolicies for the runner namespaces and the cache services' (see the module docs)."""
    if topo.network is None:
        return []
    for_runners = [s for s in topo.services.values() if RUNNERS in s.clients]
    runner_egress = [_dns(topo), *(_service_egress(s) for s in for_runners), {"to": outside_blocks(topo)}]
    from flywheel_runtime.topology.render._cluster import cleanup_cronjob, warm_pool_cronjobs

    job_namespaces = {cj["metadata"]["namespace"] for cj in (cleanup_cronjob(topo), *warm_pool_cronjobs(topo))}
    out: list[dict[str, Any]] = []
    for ns in sorted({ss.namespace for ss in topo.scale_sets}):
        sets = [ss for ss in topo.scale_sets if ss.namespace == ns]
        out.append(_netpol("default-deny", ns, {}, ingress=[], egress=[]))
        out.append(_netpol("runners", ns, _arc_runners(), egress=runner_egress))
        api = sorted({ss.label for ss in sets if ss.api_server})
        if api:
            out.append(_netpol("runners-api-server", ns, {"matchExpressions": [
                {"key": LABEL_RUNNER_CLASS, "operator": "In", "values": api}]}, egress=[_api_server(topo)]))
        if ns in job_namespaces:
            out.append(_netpol("utility-jobs", ns, {"matchExpressions": [
                {"key": LABEL_UTILITY_JOB, "operator": "Exists"}]}, egress=[_dns(topo), _api_server(topo)]))
    for ns in sorted({g.namespace for g in topo.gitlab_runners}):
        out.append(_netpol("default-deny", ns, {}, ingress=[], egress=[]))
        out.append(_netpol("runners", ns, _gitlab_runners(), egress=runner_egress))
        # The runner managers' Kubernetes executor creates their job pods.
        managers = {"matchLabels": {COMPONENT: MANAGER},
                    "matchExpressions": [{"key": LABEL_GITLAB_RUNNER, "operator": "Exists"}]}
        out.append(_netpol("runner-managers-api-server", ns, managers, egress=[_api_server(topo)]))
    for svc in topo.services.values():
        if not svc.clients and not svc.client_namespaces:
            continue
        peers: list[dict[str, Any]] = []
        for client in svc.clients:
            peers += _runner_peers(topo) if client == RUNNERS else [_service_peer(topo.services[client])]
        peers += [{"namespaceSelector": _ns(ns)} for ns in svc.client_namespaces]
        out.append(_netpol(svc.name, svc.namespace, {"matchLabels": dict(svc.pods)}, ingress=[
            {"from": peers, "ports": _ports([(p.port, p.protocol) for p in svc.ports])}]))
    return out
