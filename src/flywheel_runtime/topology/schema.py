"""The topology file's schema, written once as typed dataclasses.

The ``*Doc`` dataclasses below describe the file exactly as written (YAML
keys, references by name).  Their type hints drive both

* the hand-written validator used on the runtime path (hooks load the
  topology before every job, so no jsonschema import there): :func:`validate`
  walks the hints once, compiles a checker per type and caches it; and
* the JSON Schema shipped beside the file for editors and other tools
  (:func:`json_schema`, ``flywheel-runtime topology schema``).

Type vocabulary: ``Annotated[str, Pattern(...)]`` for constrained strings,
``Annotated[int, Quantity("cpu"|"bytes")]`` for Kubernetes quantities
(parsed exactly to millicores / bytes), ``Annotated[int, Minimum(n)]``,
``Literal[...]`` for enums, ``list``/``dict`` and nested ``*Doc`` classes.
A field without a default is required; ``X | None = None`` is optional.
Every error names the field path and what was expected, on one line.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu

_QTY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CRON_FIELD = r"[0-9*/,\-]+"
_CRON = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"


class SchemaViolation(Exception):
    """A value failed the schema; ``path`` is the dotted field path."""

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


# --- constraint markers (the metadata of Annotated) -------------------------


@dataclass(frozen=True)
class Pattern:
    regex: str
    what: str


@dataclass(frozen=True)
class Quantity:
    """A Kubernetes quantity; ``kind`` is "cpu" (to millicores) or "bytes".
    ``words`` are the only other values taken, kept as written (``unstated``)."""

    kind: str
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Minimum:
    value: int


Name = Annotated[str, Pattern(_DNS_LABEL, 'a lowercase DNS label like "tinyland-nix"')]
Cron = Annotated[str, Pattern(_CRON, "a 5-field cron expression")]
AbsPath = Annotated[str, Pattern(r"^/", "an absolute path")]
HttpsUrl = Annotated[str, Pattern(r"^https://", "an https URL")]
UidGid = Annotated[str, Pattern(r"^[0-9]+:[0-9]+$", 'UID:GID like "1001:1001"')]
Cpu = Annotated[int, Quantity("cpu")]
Bytes = Annotated[int, Quantity("bytes")]
# A size that may be explicitly not known: "unstated" says so in the data.
BytesOrUnstated = Annotated[int, Quantity("bytes", words=("unstated",))]
NonNegative = Annotated[int, Minimum(0)]
Positive = Annotated[int, Minimum(1)]
Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
Capability = Annotated[str, Pattern(r"^[A-Z][A-Z_]*$", 'a Linux capability without CAP_, like "CHOWN"')]


def _key(name: str) -> Any:
    """A field whose YAML key is not a Python identifier (``ephemeral-storage``)."""
    return field(default=None, metadata={"key": name})


# --- the file, as dataclasses ------------------------------------------------
# Never instantiated, only introspected: no generated __init__/__eq__/__repr__
# keeps this module cheap to import on the runtime path (measured ~1 ms per
# full dataclass), and without __init__ fields may keep their reading order
# (the order users see in "known: ..." errors) whatever their defaults.

# A docstring also spares dataclass() building one from inspect.signature.


def _doc(cls: type) -> type:
    cls.__doc__ = cls.__doc__ or f"The topology file's {cls.__name__.removesuffix('Doc')} entry."
    return dataclass(init=False, repr=False, eq=False)(cls)


@_doc
class ResourcesDoc:
    cpu: Cpu | None = None
    memory: Bytes | None = None
    ephemeral_storage: Bytes | None = _key("ephemeral-storage")


@_doc
class ContainerDoc:
    requests: ResourcesDoc | None = None
    limits: ResourcesDoc | None = None


@_doc
class TaintDoc:
    key: str
    value: str = ""
    effect: Effect


@_doc
class TolerationDoc:
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Effect | None = None


@_doc
class RequirementDoc:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = field(default_factory=list)


@_doc
class AffinityTermDoc:
    """One nodeSelectorTerm; terms are ORed, match_expressions ANDed."""

    match_expressions: list[RequirementDoc]


@_doc
class VolumeDoc:
    name: Name
    mount_path: AbsPath
    size: Bytes
    storage_class: str
    seed_nix: bool = False
    container: Name = "runner"


@_doc
class ScratchDoc:
    """A node whose fast disks are not its kubelet root filesystem (sting):
    lanes reserve scratch through claims of ``storage_class`` and keep each
    container's root ephemeral-storage request at most ``root_request_max``."""

    storage_class: Name
    root_request_max: Bytes


@_doc
class AllocatableDoc:
    cpu: Cpu
    memory: Bytes
    ephemeral_storage: Bytes = _key("ephemeral-storage")
    pods: NonNegative


@_doc
class NodeDoc:
    role: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[TaintDoc] = field(default_factory=list)
    allocatable: AllocatableDoc
    schedulable: bool = True
    runner_target: bool = True
    scratch: ScratchDoc | None = None
    other_pods: NonNegative = 0


@_doc
class ServicePortDoc:
    """A port the service's pods listen on (a NetworkPolicy matches the pod's
    port, after the Service's translation)."""

    port: Positive
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


@_doc
class ServiceDoc:
    namespace: Name
    url: str | None = None
    cache: str | None = None
    # The labels of the service's pods (what its NetworkPolicies select).
    pods: dict[str, str] = field(default_factory=dict)
    ports: list[ServicePortDoc] = field(default_factory=list)
    # Who may reach it: "runners" (ARC and GitLab runner pods) and other services by name.
    clients: list[str] = field(default_factory=list)
    # Namespaces whose every pod may reach it too (an operator's, e.g. CNPG's).
    client_namespaces: list[Name] = field(default_factory=list)


@_doc
class DnsDoc:
    """The cluster DNS every pod resolves through."""

    namespace: Name = "kube-system"
    pods: dict[str, str]
    port: Positive = 53


@_doc
class ApiServerDoc:
    """Where the API server answers after the kubernetes Service's translation
    (the control plane's addresses and port)."""

    cidrs: list[str]
    port: Positive = 6443


@_doc
class NetworkDoc:
    """What the rendered NetworkPolicies need to know about the cluster's network."""

    # Addresses that are not "the outside world": the pod and service CIDRs,
    # the nodes' network, everything private.  Runners reach the outside world
    # (GitHub, registries) and, inside these, only what a policy names.
    internal_cidrs: list[str]
    dns: DnsDoc
    api_server: ApiServerDoc


@_doc
class StorageClassDoc:
    provisioner: str
    binding_mode: Literal["WaitForFirstConsumer", "Immediate"]
    reclaim_policy: Literal["Delete", "Retain"]
    node: Name | None = None
    # The node-local (fast-local) pool behind the class: its size, and where
    # that figure comes from.  Required for a class bound to one node (the
    # loader says so): claims at caps are counted against it.
    capacity: BytesOrUnstated | None = None
    capacity_source: str | None = None


@_doc
class OverlayDoc:
    github_config_url: HttpsUrl
    github_config_secret: Name
    # The contract pins this overlay's listeners to one node (Jess's: honey).
    listener_node: Name | None = None


@_doc
class LabelTaxonomyDoc:
    prefix: Name
    base: list[Name]
    suffixes: list[Name]


@_doc
class PriorityClassDoc:
    name: Name
    value: int


@_doc
class HooksDoc:
    job_started: AbsPath | None = None
    job_completed: AbsPath | None = None


@_doc
class RunnerPodDoc:
    command: list[str]
    run_as_user: NonNegative = 0
    priority_class: PriorityClassDoc
    env: dict[str, str] = field(default_factory=dict)
    hooks: HooksDoc | None = None
    work_owner: UidGid = "1001:1001"
    # Every runner-pod container drops ALL capabilities; a runner running jobs
    # as root adds these back, the /nix seed init container those.
    root_capabilities: list[Capability] = field(default_factory=list)
    seed_capabilities: list[Capability] = field(default_factory=list)


@_doc
class WarmPoolScheduleDoc:
    cron: Cron
    min_runners: NonNegative


@_doc
class WarmPoolDoc:
    timezone: Literal["UTC"] = "UTC"
    schedules: list[WarmPoolScheduleDoc]


@_doc
class CleanupDoc:
    schedule: Cron
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = "Forbid"
    terminating_after_s: NonNegative
    succeeded_after_s: NonNegative
    failed_after_s: NonNegative


@_doc
class UtilityJobsDoc:
    """The platform's own CronJobs (runner cleanup, warm pool): image, user, envelope."""

    image: Name = "nix"
    run_as_user: Positive = 1001
    container: ContainerDoc


@_doc
class GitLabExecutorDoc:
    """What a GitLab runner class runs its jobs with: the chart's
    ``runners.config`` (the Kubernetes executor, job pods beside the manager)."""

    job_image: Name  # an `images` key
    privileged: bool = False  # job and service containers (the DinD daemon needs it)
    services: list[Name] = field(default_factory=list)  # `images` keys, started beside each job
    hints: Name | None = None  # a `hint_profiles` key: the job's environment


@_doc
class RunnerClassDoc:
    forge: Literal["github", "gitlab"]
    use: str
    image: Name
    devices: list[Literal["kvm", "dri"]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # Baseline lanes of this class stay on this node; only `overflow` scale sets leave it.
    baseline_node: Name | None = None
    # dri lanes get render nodes only; true adds the card nodes (display, mode-setting).
    dri_cards: bool = False
    # Its jobs call the Kubernetes API server (the operator lane's managed apply);
    # the rendered NetworkPolicy lets no other runner reach it.
    api_server: bool = False
    # GitLab classes: the executor their runners register with.
    executor: GitLabExecutorDoc | None = None


@_doc
class ListenerDoc:
    """An AutoscalingListener pod's placement and envelope (ARC's listenerTemplate)."""

    node: Name | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[TolerationDoc] | None = None
    affinity: list[AffinityTermDoc] | None = None
    containers: dict[Name, ContainerDoc] | None = None


@_doc
class ControllerDoc:
    """The ARC controller (gha-runner-scale-set-controller chart)."""

    name: Name  # the chart's fullname: its Deployment and service account
    replicas: Positive = 1
    metrics_port: Positive = 8080
    image: Name
    containers: dict[Name, ContainerDoc]
    node: Name | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[TolerationDoc] | None = None
    affinity: list[AffinityTermDoc] | None = None


@_doc
class DindDoc:
    """The scale-set chart's dind layout: daemon image and its knobs."""

    image: Name
    docker_group_gid: NonNegative = 123
    wait_for_docker_s: NonNegative = 120
    startup_period_s: Positive = 5
    startup_failure_threshold: Positive = 24
    # The chart's init-dind-externals container (a copy of the runner's externals).
    externals: ContainerDoc


@_doc
class ManagedApplyDoc:
    """The managed ARC apply procedure (runner-topology.txt, May 15 and June 9 lessons)."""

    # Shared lanes whose scale sets are max-frozen and drained before mutation.
    freeze_labels: list[str]
    drain_timeout_s: Positive = 1200
    settle_timeout_s: Positive = 120
    # The procedure's own lane, then its fallback: never one it quiesces.
    runs_on: list[str] = field(default_factory=list)


@_doc
class ArcDoc:
    version: Annotated[str, Pattern(r"^[0-9]+\.[0-9]+\.[0-9]+$", 'a version like "0.14.0"')]
    namespace: Name = "arc-systems"
    controller: ControllerDoc
    listeners: ListenerDoc
    dind: DindDoc
    managed_apply: ManagedApplyDoc


@_doc
class ScaleSetDoc:
    name: Name
    overlay: Name
    label: str
    labels: list[str] | None = None
    namespace: Name = "arc-runners"
    min_runners: NonNegative = 0
    max_runners: NonNegative
    warm_pool: Name | None = None
    hints: Name | None = None
    containers: dict[Name, ContainerDoc]
    volumes: list[VolumeDoc] = field(default_factory=list)
    # Placement: `node` pins by kubernetes.io/hostname and derives tolerations
    # from the node's taints; the rest only where a lane needs more.
    node: Name | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[TolerationDoc] | None = None
    affinity: list[AffinityTermDoc] | None = None
    # An overflow lane of a class with a baseline node (the compute-expansion sets).
    overflow: bool = False
    # This set's listener, where it differs from arc.listeners.
    listener: ListenerDoc | None = None
    # The uid the runner container runs jobs as (default: runner_pod.run_as_user).
    run_as_user: NonNegative | None = None
    # A RuntimeClass the pods name; default: the class of the devices the runner
    # class declares.  `topology check` rejects a device class not declared.
    runtime_class: Name | None = None


@_doc
class GitLabRunnerDoc:
    name: Name
    runner_class: str | None = None
    namespace: Name = "gitlab-runners"
    min_replicas: NonNegative
    max_replicas: Positive
    cpu_target_percent: Positive = 70
    # The HPA's memory utilization target; `topology check` requires one (the
    # document scales on CPU and memory).
    memory_target_percent: Positive | None = None
    scale_down_stabilization_s: NonNegative = 300
    containers: dict[Name, ContainerDoc]
    # The gitlab-runner chart's pod defaults (values.yaml podSecurityContext).
    run_as_user: Positive = 100
    fs_group: Positive = 65533
    node: Name | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[TolerationDoc] | None = None
    affinity: list[AffinityTermDoc] | None = None


@_doc
class TopologyDoc:
    schema: Literal["flywheel.tinyland.dev/topology/v1"]
    # The cluster's Kubernetes version: picks the chart's dind layout (native sidecar from 1.29).
    kubernetes_version: Annotated[str, Pattern(r"^[0-9]+\.[0-9]+\.[0-9]+$", 'a version like "1.36.3"')]
    namespaces: dict[Name, str]
    services: dict[str, ServiceDoc] | None = None
    network: NetworkDoc
    nodes: dict[Name, NodeDoc]
    storage_classes: dict[Name, StorageClassDoc] = field(default_factory=dict)
    overlays: dict[Name, OverlayDoc]
    label_taxonomy: LabelTaxonomyDoc
    runner_pod: RunnerPodDoc
    arc: ArcDoc
    images: dict[Name, str]
    hint_profiles: dict[Name, dict[str, str]] = field(default_factory=dict)
    warm_pools: dict[Name, WarmPoolDoc] = field(default_factory=dict)
    cleanup: CleanupDoc
    utility_jobs: UtilityJobsDoc
    runner_classes: dict[str, RunnerClassDoc]
    scale_sets: list[ScaleSetDoc]
    gitlab_runners: list[GitLabRunnerDoc] = field(default_factory=list)


# --- the validator, compiled from the type hints ------------------------------

Checker = Callable[[Any, str], Any]
_MISSING = dataclasses.MISSING


def _sub(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _split(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[X, m...]`` -> (X, (m...)); anything else -> (tp, ())."""
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, tp.__metadata__
    return tp, ()


def _strip_none(tp: Any) -> Any:
    """``X | None`` -> X (absent and null both mean "use the default")."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=vars(sys.modules[__name__]), include_extras=True)


def _yaml_key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key", f.name)


@lru_cache(maxsize=None)
def _checker(tp: Any) -> Checker:
    tp = _strip_none(tp)
    base, meta = _split(tp)
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        return _object_checker(base)
    origin = typing.get_origin(base)
    if origin is Literal:
        values = typing.get_args(base)
        expected = "one of " + ", ".join(str(v) for v in values)

        def check_enum(value: Any, path: str) -> Any:
            if value not in values or isinstance(value, bool):
                raise SchemaViolation(path, expected, value)
            return value
        return check_enum
    if origin is list:
        (item_tp,) = typing.get_args(base)
        item = _checker(item_tp)

        def check_list(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                raise SchemaViolation(path, "a list", value)
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return check_list
    if origin is dict:
        key_tp, value_tp = typing.get_args(base)
        key, val = _checker(key_tp), _checker(value_tp)

        def check_map(value: Any, path: str) -> Any:
            if not isinstance(value, Mapping):
                raise SchemaViolation(path, "a mapping", value)
            out = {}
            for k, v in value.items():
                sub = _sub(path, k)
                key(k, sub)
                out[k] = val(v, sub)
            return out
        return check_map
    quantity = next((m for m in meta if isinstance(m, Quantity)), None)
    if quantity is not None:
        cpu = quantity.kind == "cpu"
        what = 'a Kubernetes CPU quantity like "500m" or 4' if cpu else 'a Kubernetes byte quantity like "8Gi"'
        what += "".join(f" or {w!r}" for w in quantity.words)
        parse = parse_cpu if cpu else parse_bytes
        words = quantity.words

        def check_quantity(value: Any, path: str) -> Any:
            if value in words:
                return value
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise SchemaViolation(path, what, value)
            try:
                return parse(value)
            except ValueError:
                raise SchemaViolation(path, what, value) from None
        return check_quantity
    if base is str:
        pattern = next((m for m in meta if isinstance(m, Pattern)), None)
        rx = re.compile(pattern.regex) if pattern else None
        what = pattern.what if pattern else "a string"

        def check_str(value: Any, path: str) -> Any:
            if not isinstance(value, str) or (rx is not None and not rx.match(value)):
                raise SchemaViolation(path, what, value)
            return value
        return check_str
    if base is int:
        minimum = next((m.value for m in meta if isinstance(m, Minimum)), None)
        what = "an integer" if minimum is None else f"an integer >= {minimum}"

        def check_int(value: Any, path: str) -> Any:
            if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
                raise SchemaViolation(path, what, value)
            return value
        return check_int
    if base is bool:
        def check_bool(value: Any, path: str) -> Any:
            if not isinstance(value, bool):
                raise SchemaViolation(path, "true or false", value)
            return value
        return check_bool
    raise TypeError(f"schema: unsupported type {tp!r}")  # a bug in the Doc classes


def _fields(cls: type) -> list[tuple[str, dataclasses.Field[Any], Any]]:
    hints = _hints(cls)
    return [(_yaml_key(f), f, hints[f.name]) for f in dataclasses.fields(cls)]


def _is_required(f: dataclasses.Field[Any], tp: Any) -> bool:
    if f.default_factory is not _MISSING:
        return False
    if f.default is not _MISSING and not ("key" in f.metadata and f.default is None):
        return False
    if "key" in f.metadata:  # renamed key: required unless its type admits None
        return _strip_none(tp) is tp
    return True


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None if f.default is _MISSING else f.default


def _object_checker(cls: type) -> Checker:
    spec = [(key, _checker(tp), _is_required(f, tp), f) for key, f, tp in _fields(cls)]
    known = {key for key, *_ in spec}
    known_text = "no such key (known: " + ", ".join(key for key, *_ in spec) + ")"

    def check_object(value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            raise SchemaViolation(path, "a mapping", value)
        for k in value:
            if k not in known:
                raise SchemaViolation(_sub(path, k), known_text, value[k])
        out = {}
        for key, check, required, f in spec:
            sub = _sub(path, key)
            v = value.get(key)
            if v is not None:
                out[key] = check(v, sub)
            elif required:
                raise SchemaViolation(sub, "a value (required)", None)
            else:
                out[key] = _default(f)
        return out
    return check_object


def validate(data: Any) -> dict[str, Any]:
    """Check a parsed topology file; return it with defaults filled and
    quantities parsed (CPU in millicores, sizes in bytes)."""
    result: dict[str, Any] = _checker(TopologyDoc)(data, "")
    return result


# --- the JSON Schema, generated from the same hints ---------------------------


def _json(tp: Any) -> dict[str, Any]:
    tp = _strip_none(tp)
    base, meta = _split(tp)
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        fields = _fields(base)
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [key for key, f, t in fields if _is_required(f, t)],
            "properties": {key: _json(t) for key, f, t in fields},
        }
    origin = typing.get_origin(base)
    if origin is Literal:
        return {"enum": list(typing.get_args(base))}
    if origin is list:
        return {"type": "array", "items": _json(typing.get_args(base)[0])}
    if origin is dict:
        key_tp, value_tp = typing.get_args(base)
        out: dict[str, Any] = {"type": "object", "additionalProperties": _json(value_tp)}
        key_pattern = next((m for m in _split(key_tp)[1] if isinstance(m, Pattern)), None)
        if key_pattern:
            out["propertyNames"] = {"pattern": key_pattern.regex}
        return out
    quantity = next((m for m in meta if isinstance(m, Quantity)), None)
    if quantity is not None:
        return {"anyOf": [{"type": "string", "pattern": _QTY}, {"type": "number", "minimum": 0},
                          *([{"enum": list(quantity.words)}] if quantity.words else [])]}
    if base is str:
        pattern = next((m for m in meta if isinstance(m, Pattern)), None)
        return {"type": "string", "pattern": pattern.regex} if pattern else {"type": "string"}
    if base is int:
        minimum = next((m.value for m in meta if isinstance(m, Minimum)), None)
        return {"type": "integer"} if minimum is None else {"type": "integer", "minimum": minimum}
    if base is bool:
        return {"type": "boolean"}
    raise TypeError(f"schema: unsupported type {tp!r}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) equivalent of :class:`TopologyDoc`."""
    out = _json(TopologyDoc)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = "https://tinyland.dev/schemas/flywheel-topology-v1.json"
    out["title"] = "flywheel-runtime topology"
    return out
