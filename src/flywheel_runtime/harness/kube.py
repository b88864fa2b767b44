"""A small, clear layer over the ``kubernetes`` client for the harness and
its tests: apply manifests, create runner pods as rendered, wait on the
scheduler's verdict.  Imports ``kubernetes`` lazily."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import DeadlineError, KubeconfigError

START_DELAY_ANNOTATION = "flywheel.tinyland.dev/start-delay"
JOB_RESULT_ANNOTATION = "flywheel.tinyland.dev/job-result"


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


class Kube:
    def __init__(self, kubeconfig: str | Path) -> None:
        from kubernetes import client, config, dynamic

        path = Path(kubeconfig)
        if not path.is_file():
            raise KubeconfigError(f"no kubeconfig at {path}; run `flywheel-runtime cluster up` first")
        self.kubeconfig = path
        self.api_client = config.new_client_from_config(str(path))
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.ext = client.ApiextensionsV1Api(self.api_client)
        self.dynamic = dynamic.DynamicClient(self.api_client)

    # -- generic -----------------------------------------------------------

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

    # -- readiness ---------------------------------------------------------

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

    # -- namespaces and pods -----------------------------------------------

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


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; raise DeadlineError at ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # transient API errors while the cluster settles
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise DeadlineError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
