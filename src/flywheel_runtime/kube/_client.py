"""The client: one object over one kubeconfig, for the harness, the audits,
the provisioner and the warm pool alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import ClusterError
from flywheel_runtime.kube import ARC_GROUP, ARC_VERSION, JOB_RESULT_ANNOTATION, START_DELAY_ANNOTATION
from flywheel_runtime.kube._config import REQUEST_TIMEOUT_S
from flywheel_runtime.kube._errors import api_errors
from flywheel_runtime.kube._wait import wait_for

# plural -> kind of ARC's custom resources.
ARC_PLURALS = {
    "autoscalingrunnersets": "AutoscalingRunnerSet",
    "ephemeralrunnersets": "EphemeralRunnerSet",
    "ephemeralrunners": "EphemeralRunner",
    "autoscalinglisteners": "AutoscalingListener",
}


@dataclass(frozen=True)
class PodVerdict:
    """The scheduler's verdict for one pod."""

    pod: str
    namespace: str
    node: str | None
    phase: str
    reason: str | None
    message: str | None

    @property
    def scheduled(self) -> bool:
        return self.node is not None


class Client:
    """Typed API handles, generic apply, ARC's custom resources, pods and waits."""

    def __init__(self, api_client: Any, kubeconfig: Path) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.kubeconfig = kubeconfig
        self.server: str = api_client.configuration.host
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)
        self.storage = client.StorageV1Api(api_client)
        self._dynamic: Any = None

    @property
    def dynamic(self) -> Any:
        """The dynamic client (discovery is paid on first use only)."""
        if self._dynamic is None:
            from kubernetes import dynamic

            self._dynamic = dynamic.DynamicClient(self.api_client)
        return self._dynamic

    def _resource(self, obj: dict[str, Any]) -> Any:
        return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create, or server-side apply over an existing object."""
        from kubernetes.client.rest import ApiException

        res = self._resource(obj)
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        try:
            return res.create(body=obj, namespace=ns, **kwargs).to_dict()
        except ApiException as exc:
            if exc.status != 409:
                raise
        return res.server_side_apply(body=obj, namespace=ns, field_manager="flywheel-runtime",
                                     force_conflicts=True, **kwargs).to_dict()

    def server_side_apply(self, obj: dict[str, Any], *, field_manager: str = "flywheel-runtime",
                          dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply (no last-applied annotation: fits objects of any size)."""
        res = self._resource(obj)
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        return res.server_side_apply(body=obj, namespace=ns, field_manager=field_manager,
                                     force_conflicts=True, **kwargs).to_dict()

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        res = self._resource(obj)
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        return res.create(body=obj, namespace=ns, **kwargs).to_dict()

    def nodes_ready_and_untainted(self) -> bool:
        nodes = self.core.list_node().items
        if not nodes:
            return False
        for n in nodes:
            ready = any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
            not_ready_taint = any(t.key.startswith("node.kubernetes.io/not-ready") or
                                  t.key.startswith("node.kubernetes.io/unreachable") for t in (n.spec.taints or []))
            if not ready or not_ready_taint:
                return False
        return True

    def service_account_exists(self, namespace: str, name: str) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self.core.read_namespaced_service_account(name, namespace)
            return True
        except ApiException:
            return False

    def wait_crds_established(self, timeout: float = 60, names: list[str] | None = None) -> None:
        def done() -> bool:
            for crd in self.ext.list_custom_resource_definition().items:
                if names is not None and crd.metadata.name not in names:
                    continue
                conds = crd.status.conditions or [] if crd.status else []
                if not any(c.type == "Established" and c.status == "True" for c in conds):
                    return False
            return True

        wait_for(done, timeout, "CRDs to be Established")

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        # Pods are rejected until the service-account controller has made "default".
        wait_for(lambda: self.service_account_exists(name, "default"), 30, f"service account default in {name}")

    def delete_namespace(self, name: str, wait: bool = True) -> None:
        """Force-delete the namespace's pods (waiting until they release their
        nodes when ``wait``), then delete the namespace in the background."""
        from kubernetes.client.rest import ApiException

        try:
            # Owners first, or their controllers recreate the pods.
            self.apps.delete_collection_namespaced_deployment(name, propagation_policy="Orphan")
            self.apps.delete_collection_namespaced_replica_set(name, propagation_policy="Orphan")
            self.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            if wait:
                wait_for(lambda: not self.core.list_namespaced_pod(name).items, 60, f"pods in {name} to be gone")
            self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _exists_namespace(self, name: str) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self.core.read_namespace(name)
            return True
        except ApiException:
            return False

    def create_pod(self, manifest: dict[str, Any], *, namespace: str | None = None, name: str | None = None,
                   start_delay: str | None = None) -> str:
        """Create ``manifest`` (as rendered); return the pod's name."""
        import copy

        body = copy.deepcopy(manifest)
        meta = body.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        if name:
            meta.pop("generateName", None)
            meta["name"] = name
        if start_delay:
            meta.setdefault("annotations", {})[START_DELAY_ANNOTATION] = start_delay
        created = self.core.create_namespaced_pod(meta["namespace"], body)
        return str(created.metadata.name)

    def placement(self, namespace: str, name: str) -> PodVerdict:
        p = self.core.read_namespaced_pod(name, namespace)
        cond = next((c for c in (p.status.conditions or []) if c.type == "PodScheduled"), None)
        return PodVerdict(name, namespace, p.spec.node_name, p.status.phase or "",
                         cond.reason if cond and cond.status != "True" else None,
                         cond.message if cond and cond.status != "True" else None)

    def wait_scheduled(self, namespace: str, name: str, timeout: float = 30) -> PodVerdict:
        return wait_for(lambda: (pl := self.placement(namespace, name)).scheduled and pl, timeout,
                        f"pod {namespace}/{name} to be scheduled")

    def wait_unschedulable(self, namespace: str, name: str, timeout: float = 30) -> PodVerdict:
        """Wait for the scheduler's Unschedulable verdict (PodScheduled=False)."""
        def settled() -> PodVerdict | None:
            pl = self.placement(namespace, name)
            transient = "waiting for" in (pl.message or "")  # e.g. the ephemeral volume controller
            return pl if pl.reason == "Unschedulable" and not transient else None

        return wait_for(settled, timeout,
                        f"pod {namespace}/{name} to be judged unschedulable")

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 30) -> PodVerdict:
        return wait_for(lambda: (pl := self.placement(namespace, name)).phase == phase and pl, timeout,
                        f"pod {namespace}/{name} to reach {phase}")

    def finish_job(self, namespace: str, name: str, result: str = "succeeded") -> None:
        """Mark the runner's job done; kwok then completes the pod."""
        self.core.patch_namespaced_pod(name, namespace,
                                       {"metadata": {"annotations": {JOB_RESULT_ANNOTATION: result}}})

    def delete_pod(self, namespace: str, name: str, grace: int = 0) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- ARC custom resources ------------------------------------------------

    def to_dict(self, obj: Any) -> Any:
        """A client model as Kubernetes JSON (camelCase), as the pure functions expect."""
        return self.api_client.sanitize_for_serialization(obj)

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

    def patch_arc(self, plural: str, namespace: str, name: str, body: dict[str, Any], *,
                  field_manager: str | None = None) -> dict[str, Any]:
        """A merge patch; ``field_manager`` names who wrote the fields (the managed apply's own)."""
        kw = {"field_manager": field_manager} if field_manager else {}
        with api_errors(self, f"patching {plural} {namespace}/{name}"):
            return self.custom.patch_namespaced_custom_object(ARC_GROUP, ARC_VERSION, namespace, plural, name, body,
                                                              _request_timeout=REQUEST_TIMEOUT_S, **kw)

    def apply_arc(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one ARC object (the chart's AutoscalingRunnerSet)."""
        meta = body["metadata"]
        with api_errors(self, f"applying {body['kind']} {meta.get('namespace')}/{meta['name']}"):
            res = self.dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
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
