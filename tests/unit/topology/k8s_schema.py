"""Validate manifests against Kubernetes' own API schemas, offline.

Built-in kinds: the manifest must deserialize into the ``kubernetes`` client's
model class (``ApiClient().__deserialize``, the client's own decoder, which
type-checks every field) and serialize back unchanged: an unknown or
misspelled field is dropped by the model and shows up as a difference.

Custom resources (ARC's AutoscalingRunnerSet): the openAPIV3Schema of ARC's
real CRDs (``harness.arc.crd_source()``: ../shared/arc/.../crds) with ``jsonschema``, plus the apiserver's
pruning rule: a field the structural schema does not declare (and does not
preserve) would be silently dropped, so it fails here.
"""

from __future__ import annotations

from functools import lru_cache
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
    ("node.k8s.io/v1", "RuntimeClass"): "V1RuntimeClass",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): "V1ValidatingAdmissionPolicy",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): "V1ValidatingAdmissionPolicyBinding",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}


def _strip_empty(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_empty(v) for k, v in x.items() if v not in (None, {}, [])}
    if isinstance(x, list):
        return [_strip_empty(v) for v in x]
    return x


def validate(manifest: dict[str, Any], model: str | None = None) -> None:
    """Assert ``manifest`` is a valid object of its kind (or of ``model``)."""
    if model is None:
        key = (manifest.get("apiVersion"), manifest.get("kind"))
        if key[0] == "actions.github.com/v1alpha1":
            validate_custom(manifest)
            return
        model = KIND_MODELS[key]
    from kubernetes.client import ApiClient

    client = ApiClient()
    obj = client._ApiClient__deserialize(manifest, model)  # the client's own deserializer
    back = client.sanitize_for_serialization(obj)
    assert _strip_empty(back) == _strip_empty(manifest), f"{model}: fields lost or changed in round trip"


@lru_cache(maxsize=None)
def _crd_schemas() -> dict[str, dict[str, Any]]:
    from flywheel_runtime.harness import arc

    out = {}
    for doc in arc.load_crds(arc.crd_source()):
        if doc:
            version = next(v for v in doc["spec"]["versions"] if v.get("storage", True))
            out[doc["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def pruned_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths the apiserver would prune (not declared by a structural schema)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if path == "" and k in ("apiVersion", "kind", "metadata"):
                continue  # the apiserver validates ObjectMeta itself, never prunes it
            if props is not None and k in props:
                out += pruned_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += pruned_fields(v, extra, f"{path}.{k}")
            else:
                out.append(f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out += pruned_fields(v, schema["items"], f"{path}[{i}]")
    return out


def validate_custom(manifest: dict[str, Any]) -> None:
    import jsonschema

    schema = _crd_schemas()[manifest["kind"]]
    jsonschema.Draft4Validator(schema).validate(manifest)
    assert pruned_fields(manifest, schema) == [], f"{manifest['kind']}: undeclared fields would be pruned"
    if manifest["kind"] == "AutoscalingRunnerSet":
        # Also as the client's V1Pod model: catches what a permissive schema would let through.
        validate({"apiVersion": "v1", "kind": "Pod", **manifest["spec"]["template"]})
        if "listenerTemplate" in manifest["spec"]:
            validate({"apiVersion": "v1", "kind": "Pod", **manifest["spec"]["listenerTemplate"]})
