"""The topology file's schema, written once as data.

The same spec drives the fast hand-written validator used on the runtime path
(hooks load the topology before every job, so no jsonschema import there) and
the JSON Schema shipped for editors and other tools (``topology schema``).
Every error names the field path and what was expected, on one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu

_QTY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CRON_FIELD = r"[0-9*/,\-]+"
_CRON = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"


class SchemaViolation(Exception):
    """A value failed the spec; ``path`` is the dotted field path."""

    def __init__(self, path: str, expected: str, got: object) -> None:
        self.path, self.expected, self.got = path, expected, got
        super().__init__(f"{path or '<root>'}: expected {expected}, got {_show(got)}")


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Spec:
    """One node of the schema."""

    def check(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def json(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Spec):
    pattern: str | None = None
    what: str = "a string"

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or (self.pattern and not re.match(self.pattern, value)):
            raise SchemaViolation(path, self.what, value)
        return value

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern:
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True)
class Int(Spec):
    minimum: int | None = None

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or (
            self.minimum is not None and value < self.minimum
        ):
            what = "an integer" if self.minimum is None else f"an integer >= {self.minimum}"
            raise SchemaViolation(path, what, value)
        return value

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise SchemaViolation(path, "true or false", value)
        return value

    def json(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Quantity(Spec):
    """A Kubernetes quantity; ``kind`` is "cpu" or "bytes"."""

    kind: str

    def check(self, value: Any, path: str) -> Any:
        what = ('a Kubernetes CPU quantity like "500m" or 4' if self.kind == "cpu"
                else 'a Kubernetes byte quantity like "8Gi"')
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SchemaViolation(path, what, value)
        try:
            parsed = parse_cpu(value) if self.kind == "cpu" else parse_bytes(value)
        except ValueError:
            raise SchemaViolation(path, what, value) from None
        return parsed

    def json(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "pattern": _QTY}, {"type": "number", "minimum": 0}]}


@dataclass(frozen=True)
class Enum(Spec):
    values: tuple[str, ...]

    def check(self, value: Any, path: str) -> Any:
        if value not in self.values:
            raise SchemaViolation(path, "one of " + ", ".join(self.values), value)
        return value

    def json(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise SchemaViolation(path, "a list", value)
        return [self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def json(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.json()}


@dataclass(frozen=True)
class MapOf(Spec):
    value: Spec
    key: Str = Str()

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            raise SchemaViolation(path, "a mapping", value)
        out = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            self.key.check(k, sub)
            out[k] = self.value.check(v, sub)
        return out

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.value.json()}
        if self.key.pattern:
            out["propertyNames"] = {"pattern": self.key.pattern}
        return out


@dataclass(frozen=True)
class F:
    """A field of an :class:`Obj`."""

    spec: Spec
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Obj(Spec):
    fields: dict[str, F] = field(default_factory=dict)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            raise SchemaViolation(path, "a mapping", value)
        for k in value:
            if k not in self.fields:
                sub = f"{path}.{k}" if path else str(k)
                raise SchemaViolation(sub, "no such key (known: " + ", ".join(self.fields) + ")", value[k])
        out = {}
        for name, f in self.fields.items():
            sub = f"{path}.{name}" if path else name
            if name in value and value[name] is not None:
                out[name] = f.spec.check(value[name], sub)
            elif f.required:
                raise SchemaViolation(sub, "a value (required)", None)
            else:
                out[name] = f.default
        return out

    def json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [n for n, f in self.fields.items() if f.required],
            "properties": {n: f.spec.json() for n, f in self.fields.items()},
        }


# --- the topology spec ------------------------------------------------------

NAME = Str(_DNS_LABEL, "a lowercase DNS label like \"tinyland-nix\"")
RESOURCES = Obj({
    "cpu": F(Quantity("cpu")),
    "memory": F(Quantity("bytes")),
    "ephemeral-storage": F(Quantity("bytes")),
})
CONTAINER = Obj({"requests": F(RESOURCES, default=None), "limits": F(RESOURCES, default=None)})
TAINT = Obj({
    "key": F(Str(), required=True),
    "value": F(Str(), default=""),
    "effect": F(Enum(("NoSchedule", "PreferNoSchedule", "NoExecute")), required=True),
})
TOLERATION = Obj({
    "key": F(Str(), required=True),
    "operator": F(Enum(("Equal", "Exists")), default="Equal"),
    "value": F(Str(), default=""),
    "effect": F(Enum(("NoSchedule", "PreferNoSchedule", "NoExecute")), default=""),
})
VOLUME = Obj({
    "name": F(NAME, required=True),
    "mount_path": F(Str(r"^/", "an absolute path"), required=True),
    "size": F(Quantity("bytes"), required=True),
    "storage_class": F(Str(), required=True),
    "seed_nix": F(Bool(), default=False),
    "container": F(NAME, default="runner"),
})
PLACEMENT_FIELDS = {
    "node": F(NAME),
    "node_selector": F(MapOf(Str())),
    "tolerations": F(ListOf(TOLERATION)),
}
TOPOLOGY = Obj({
    "schema": F(Enum(("flywheel.tinyland.dev/topology/v1",)), required=True),
    "namespaces": F(MapOf(Str(), key=NAME), required=True),
    "services": F(MapOf(Obj({"namespace": F(NAME, required=True), "url": F(Str()), "cache": F(Str())}))),
    "nodes": F(MapOf(Obj({
        "role": F(Str(), required=True),
        "labels": F(MapOf(Str()), default={}),
        "taints": F(ListOf(TAINT), default=[]),
        "allocatable": F(Obj({
            "cpu": F(Quantity("cpu"), required=True),
            "memory": F(Quantity("bytes"), required=True),
            "ephemeral-storage": F(Quantity("bytes"), required=True),
            "pods": F(Int(minimum=0), required=True),
        }), required=True),
        "schedulable": F(Bool(), default=True),
        "runner_target": F(Bool(), default=True),
    }), key=NAME), required=True),
    "storage_classes": F(MapOf(Obj({
        "provisioner": F(Str(), required=True),
        "binding_mode": F(Enum(("WaitForFirstConsumer", "Immediate")), required=True),
        "reclaim_policy": F(Enum(("Delete", "Retain")), required=True),
        "node": F(NAME),
    }), key=NAME), default={}),
    "overlays": F(MapOf(Obj({
        "github_config_url": F(Str(r"^https://", "an https URL"), required=True),
        "github_config_secret": F(NAME, required=True),
    }), key=NAME), required=True),
    "label_taxonomy": F(Obj({
        "prefix": F(NAME, required=True),
        "base": F(ListOf(NAME), required=True),
        "suffixes": F(ListOf(NAME), required=True),
    }), required=True),
    "runner_pod": F(Obj({
        "command": F(ListOf(Str()), required=True),
        "run_as_user": F(Int(minimum=0), default=0),
        "priority_class": F(Obj({"name": F(NAME, required=True), "value": F(Int(), required=True)}), required=True),
        "env": F(MapOf(Str()), default={}),
        "hooks": F(Obj({"job_started": F(Str(r"^/", "an absolute path")),
                        "job_completed": F(Str(r"^/", "an absolute path"))}), default={}),
        "work_owner": F(Str(r"^[0-9]+:[0-9]+$", "UID:GID like \"1001:1001\""), default="1001:1001"),
    }), required=True),
    "images": F(MapOf(Str(), key=NAME), required=True),
    "hint_profiles": F(MapOf(MapOf(Str(r"^[\s\S]*$")), key=NAME), default={}),
    "warm_pools": F(MapOf(Obj({
        "timezone": F(Enum(("UTC",)), default="UTC"),
        "schedules": F(ListOf(Obj({
            "cron": F(Str(_CRON, "a 5-field cron expression"), required=True),
            "min_runners": F(Int(minimum=0), required=True),
        })), required=True),
    }), key=NAME), default={}),
    "cleanup": F(Obj({
        "schedule": F(Str(_CRON, "a 5-field cron expression"), required=True),
        "concurrency_policy": F(Enum(("Forbid", "Allow", "Replace")), default="Forbid"),
        "terminating_after_s": F(Int(minimum=0), required=True),
        "succeeded_after_s": F(Int(minimum=0), required=True),
        "failed_after_s": F(Int(minimum=0), required=True),
    }), required=True),
    "runner_classes": F(MapOf(Obj({
        "forge": F(Enum(("github",)), required=True),
        "use": F(Str(), required=True),
        "image": F(NAME, required=True),
        "devices": F(ListOf(Enum(("kvm", "dri"))), default=[]),
    })), required=True),
    "scale_sets": F(ListOf(Obj({
        "name": F(NAME, required=True),
        "overlay": F(NAME, required=True),
        "label": F(Str(), required=True),
        "labels": F(ListOf(Str()), required=True),
        "namespace": F(NAME, default="arc-runners"),
        "min_runners": F(Int(minimum=0), default=0),
        "max_runners": F(Int(minimum=0), required=True),
        "warm_pool": F(NAME),
        "hints": F(NAME),
        "containers": F(MapOf(CONTAINER, key=NAME), required=True),
        "volumes": F(ListOf(VOLUME), default=[]),
        **PLACEMENT_FIELDS,
    })), required=True),
    "gitlab_runners": F(ListOf(Obj({
        "name": F(NAME, required=True),
        "namespace": F(NAME, default="gitlab-runners"),
        "min_replicas": F(Int(minimum=0), required=True),
        "max_replicas": F(Int(minimum=1), required=True),
        "cpu_target_percent": F(Int(minimum=1), default=70),
        "scale_down_stabilization_s": F(Int(minimum=0), default=300),
        "containers": F(MapOf(CONTAINER, key=NAME), required=True),
        **PLACEMENT_FIELDS,
    })), default=[]),
})


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) equivalent of :data:`TOPOLOGY`."""
    out = TOPOLOGY.json()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = "https://tinyland.dev/schemas/flywheel-topology-v1.json"
    out["title"] = "flywheel-runtime topology"
    return out
