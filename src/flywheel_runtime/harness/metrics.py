"""metrics-server on the kind cluster: the resource metrics API
(``metrics.k8s.io``) every HorizontalPodAutoscaler and ``kubectl top`` read.

The binary is the toolchain's (``sigs.k8s.io/metrics-server`` from the Go
module proxy, :data:`flywheel_runtime.toolchain.KIND_TOOLS`), preloaded in the
node image under the release tag.  :func:`objects` are its manifests
(``manifests/base`` with the release component's image and the kustomization's
``k8s-app`` label, which ``tests/unit/harness/test_metrics.py`` compares with
the module's own) plus ``--kubelet-insecure-tls``: kind's kubelets serve
self-signed certificates.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.kube import Client

NAME, NAMESPACE = "metrics-server", "kube-system"
API_SERVICE = "v1beta1.metrics.k8s.io"
LABELS = {"k8s-app": NAME}
# What kind's nodes need beyond the upstream arguments.
KIND_ARGS = ("--kubelet-insecure-tls",)


def image() -> str:
    """The release image reference (manifests/components/release), which the node image carries."""
    return f"registry.k8s.io/metrics-server/metrics-server:{toolchain.KIND_TOOLS[NAME].version}"


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**(labels or {}), **LABELS}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _subject() -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]


def objects(extra_args: tuple[str, ...] = KIND_ARGS) -> list[dict[str, Any]]:
    """Its objects in apply order: RBAC, Service, Deployment, then the APIService."""
    rbac = "rbac.authorization.k8s.io"
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, NAMESPACE),
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": NAME,
                    "volumes": [{"name": "tmp-dir", "emptyDir": {}}],
                    "priorityClassName": "system-cluster-critical",
                    "containers": [{
                        "name": NAME,
                        "image": image(),
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["--cert-dir=/tmp", "--secure-port=10250",
                                 "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                                 "--kubelet-use-node-status-port", "--metric-resolution=15s", *extra_args],
                        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}},
                        "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                                           "periodSeconds": 10, "failureThreshold": 3, "initialDelaySeconds": 20},
                        "livenessProbe": {"httpGet": {"path": "/livez", "port": "https", "scheme": "HTTPS"},
                                          "periodSeconds": 10, "failureThreshold": 3},
                        "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 1000,
                                            "allowPrivilegeEscalation": False,
                                            "seccompProfile": {"type": "RuntimeDefault"},
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp-dir", "mountPath": "/tmp"}],
                    }],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                },
            },
        },
    }
    return [
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole",
         "metadata": _meta("system:aggregated-metrics-reader", labels={
             f"{rbac}/aggregate-to-view": "true", f"{rbac}/aggregate-to-edit": "true",
             f"{rbac}/aggregate-to-admin": "true"}),
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, NAMESPACE)},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": _meta(f"{NAME}-auth-reader", NAMESPACE),
         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "extension-apiserver-authentication-reader"},
         "subjects": _subject()},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(f"{NAME}:system:auth-delegator"),
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": _subject()},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": _meta(f"system:{NAME}"),
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(f"system:{NAME}"),
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": f"system:{NAME}"},
         "subjects": _subject()},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, NAMESPACE),
         "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https",
                             "appProtocol": "https"}],
                  "selector": dict(LABELS)}},
        deployment,
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": _meta(API_SERVICE),
         "spec": {"service": {"name": NAME, "namespace": NAMESPACE}, "group": "metrics.k8s.io",
                  "version": "v1beta1", "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                  "versionPriority": 100}},
    ]


def install(kube: Client, *, log: Log, timeout: float = 180) -> float:
    """Apply :func:`objects` and wait until the APIService is Available (node
    metrics served); return the seconds it took."""
    from flywheel_runtime.kube import wait_for

    t0 = time.monotonic()
    for obj in objects():
        kube.apply(obj)

    def available() -> bool:
        res = kube.dynamic.resources.get(api_version="apiregistration.k8s.io/v1", kind="APIService")
        conds = (res.get(name=API_SERVICE).to_dict().get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    wait_for(available, timeout, f"APIService {API_SERVICE} Available", interval=2.0)
    log(f"metrics-server {toolchain.KIND_TOOLS[NAME].version}: {API_SERVICE} available "
        f"in {time.monotonic() - t0:.0f} s")
    return time.monotonic() - t0
