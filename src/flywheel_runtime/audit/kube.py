"""The audits' Kubernetes access: one kubeconfig, one client, clear errors.

``kubernetes`` is imported inside :func:`connect` only: the audit commands are
not on the runtime path, but their ``_cli`` module is imported by every
``flywheel-runtime`` invocation.  Every failure a user can act on becomes one
:class:`~flywheel_runtime.errors.KubeconfigError` line (exit 4): no
kubeconfig, an unparsable one, or a server that does not answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import ClusterError, KubeconfigError

ARC_GROUP = "actions.github.com"
ARC_VERSION = "v1alpha1"
# plural -> kind of ARC's custom resources.
ARC_PLURALS = {
    "autoscalingrunnersets": "AutoscalingRunnerSet",
    "ephemeralrunnersets": "EphemeralRunnerSet",
    "ephemeralrunners": "EphemeralRunner",
    "autoscalinglisteners": "AutoscalingListener",
}
# A short connect timeout: an unreachable cluster must fail in seconds, not minutes.
REQUEST_TIMEOUT_S = 10.0


def kubeconfig_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--kubeconfig, else the first file in $KUBECONFIG, else ~/.kube/config."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise KubeconfigError(f"no kubeconfig at {path} (given with --kubeconfig)")
        return path
    env = os.environ.get("KUBECONFIG")
    if env:
        for part in env.split(os.pathsep):
            if part and Path(part).is_file():
                return Path(part)
        raise KubeconfigError(f"no kubeconfig file found in $KUBECONFIG={env}")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return default
    if in_cluster():
        return IN_CLUSTER
    raise KubeconfigError("no kubeconfig: pass --kubeconfig, set $KUBECONFIG, or create ~/.kube/config")


# Marker path: the CronJobs (warm pool, cleanup) run in a pod with a service account.
IN_CLUSTER = Path("<in-cluster>")
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.is_file()


@dataclass
class Cluster:
    """Typed API handles over one kubeconfig."""

    kubeconfig: Path
    server: str
    api_client: Any
    core: Any
    custom: Any

    def to_dict(self, obj: Any) -> Any:
        """A client model as Kubernetes JSON (camelCase), as the pure functions expect."""
        return self.api_client.sanitize_for_serialization(obj)

    # -- ARC custom resources ------------------------------------------------

    def list_arc(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        from kubernetes.client.rest import ApiException

        try:
            with api_errors(self, f"listing {plural}", passthrough=(404,)):
                if namespace:
                    res = self.custom.list_namespaced_custom_object(ARC_GROUP, ARC_VERSION, namespace, plural,
                                                                    _request_timeout=REQUEST_TIMEOUT_S)
                else:
                    res = self.custom.list_cluster_custom_object(ARC_GROUP, ARC_VERSION, plural,
                                                                 _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            # A list only 404s when the resource type itself is unknown.
            raise ClusterError(f"the cluster at {self.server} has no {ARC_PLURALS.get(plural, plural)} CRD "
                               f"({ARC_GROUP}/{ARC_VERSION}); install ARC or its CRDs first") from exc
        return list(res.get("items") or [])

    def get_arc(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it is gone (404)."""
        from kubernetes.client.rest import ApiException

        try:
            with api_errors(self, f"reading {plural} {namespace}/{name}", passthrough=(404,)):
                return self.custom.get_namespaced_custom_object(ARC_GROUP, ARC_VERSION, namespace, plural, name,
                                                                _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_arc(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with api_errors(self, f"patching {plural} {namespace}/{name}"):
            return self.custom.patch_namespaced_custom_object(ARC_GROUP, ARC_VERSION, namespace, plural, name, body,
                                                              _request_timeout=REQUEST_TIMEOUT_S)

    def apply_arc(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one ARC object (the chart's AutoscalingRunnerSet)."""
        from kubernetes import dynamic

        meta = body["metadata"]
        with api_errors(self, f"applying {body['kind']} {meta.get('namespace')}/{meta['name']}"):
            res = dynamic.DynamicClient(self.api_client).resources.get(api_version=body["apiVersion"],
                                                                       kind=body["kind"])
            out = res.server_side_apply(body=body, namespace=meta.get("namespace"), field_manager="flywheel-runtime",
                                        force_conflicts=True, _request_timeout=REQUEST_TIMEOUT_S)
        return dict(out.to_dict())

    def delete_arc(self, plural: str, namespace: str, name: str, *,
                   resource_version: str | None = None) -> bool:
        """Graceful delete (no grace override), guarded by resourceVersion when given.

        Returns False when the object was already gone or changed since it was
        read (409 on the precondition): the caller's evidence is stale.
        """
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        body = client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=client.V1Preconditions(resource_version=resource_version) if resource_version else None,
        )
        try:
            with api_errors(self, f"deleting {plural} {namespace}/{name}", passthrough=(404, 409)):
                self.custom.delete_namespaced_custom_object(ARC_GROUP, ARC_VERSION, namespace, plural, name,
                                                            body=body, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True


class api_errors:
    """Context manager: turn transport and API failures into one actionable line."""

    def __init__(self, cluster: Cluster, what: str, passthrough: tuple[int, ...] = ()) -> None:
        self.cluster, self.what, self.passthrough = cluster, what, passthrough

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ApiException):
            if exc.status in self.passthrough:
                return False
            if exc.status == 0 or exc.status is None:
                raise KubeconfigError(f"cluster {self.cluster.server} unreachable while {self.what}: "
                                      f"{exc.reason}") from exc
            raise ClusterError(f"{self.what} on {self.cluster.server} failed: HTTP {exc.status} "
                               f"{exc.reason}") from exc
        if isinstance(exc, (HTTPError, OSError)):
            raise KubeconfigError(f"cluster {self.cluster.server} unreachable while {self.what}: "
                                  f"{_why(exc)}") from exc
        return False


def _why(exc: BaseException) -> str:
    """The root cause of a transport failure, short: "Connection refused", "timed out"."""
    import re

    text = str(getattr(exc, "reason", None) or exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")(]+)", text)
    if m:
        return m.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return type(getattr(exc, "reason", None) or exc).__name__


def connect(kubeconfig: str | os.PathLike[str] | None = None, *, check: bool = True) -> Cluster:
    """Load the kubeconfig and, with ``check``, prove the server answers (GET /version)."""
    path = kubeconfig_path(kubeconfig)
    try:
        from kubernetes import client, config
    except ImportError as exc:  # the k8s extra is not installed
        raise KubeconfigError("the Kubernetes client is not installed: pip install 'flywheel-runtime[k8s]'") from exc
    try:
        if path == IN_CLUSTER:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api_client = client.ApiClient(cfg)
        else:
            api_client = config.new_client_from_config(str(path))
    except Exception as exc:  # ConfigException, YAML errors, missing keys: all mean a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KubeconfigError(f"kubeconfig {path} is unusable: {first}") from exc
    server = api_client.configuration.host
    # Fail fast on a dead endpoint instead of urllib3's default retries.
    api_client.configuration.retries = 0
    cluster = Cluster(path, server, api_client, client.CoreV1Api(api_client), client.CustomObjectsApi(api_client))
    if check:
        with api_errors(cluster, "checking the API server"):
            client.VersionApi(api_client).get_code(_request_timeout=REQUEST_TIMEOUT_S)
    return cluster
