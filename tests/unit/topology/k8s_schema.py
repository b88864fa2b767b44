"""Validate manifests against the Kubernetes API models of the ``kubernetes``
client: a manifest must deserialize into its model class and serialize back
unchanged (an unknown or misspelled field would be dropped and show up)."""

from __future__ import annotations

from typing import Any

KIND_MODELS = {
    ("v1", "Pod"): "V1Pod",
    ("v1", "Node"): "V1Node",
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("storage.k8s.io/v1", "StorageClass"): "V1StorageClass",
    ("scheduling.k8s.io/v1", "PriorityClass"): "V1PriorityClass",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def _strip_empty(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_empty(v) for k, v in x.items() if v not in (None, {}, [])}
    if isinstance(x, list):
        return [_strip_empty(v) for v in x]
    return x


def validate(manifest: dict[str, Any], model: str | None = None) -> None:
    from kubernetes.client import ApiClient

    if model is None:
        model = KIND_MODELS[(manifest["apiVersion"], manifest["kind"])]
    client = ApiClient()
    obj = client._ApiClient__deserialize(manifest, model)  # the client's own deserializer
    back = client.sanitize_for_serialization(obj)
    assert _strip_empty(back) == _strip_empty(manifest), f"{model}: fields lost or changed in round trip"
