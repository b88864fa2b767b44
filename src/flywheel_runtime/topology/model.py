"""The typed topology model.

Runner classes (workflow-facing labels, the consumer contract) and scale sets
(ARC implementation objects, one per owner overlay and node) are kept apart:
several scale sets may publish one label, and each keeps its own cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import TopologyError

HOSTNAME_LABEL = "kubernetes.io/hostname"
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class Resources:
    """Requests or limits: CPU in millicores, memory and storage in bytes."""

    cpu: int | None = None
    memory: int | None = None
    ephemeral_storage: int | None = None

    def get(self, resource: str) -> int | None:
        return {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral_storage}[resource]

    def items(self) -> list[tuple[str, int]]:
        return [(r, v) for r in RESOURCE_NAMES if (v := self.get(r)) is not None]


@dataclass(frozen=True)
class ContainerEnvelope:
    name: str
    requests: Resources
    limits: Resources


@dataclass(frozen=True)
class Envelope:
    """Per-container requests and limits of one pod (runner, DinD daemon, ...)."""

    containers: tuple[ContainerEnvelope, ...]

    def container(self, name: str) -> ContainerEnvelope | None:
        return next((c for c in self.containers if c.name == name), None)

    def pod_requests(self) -> dict[str, int]:
        """What the scheduler accounts for: the sum over the pod's containers."""
        total = {r: 0 for r in RESOURCE_NAMES}
        for c in self.containers:
            for r, v in c.requests.items():
                total[r] += v
        return total


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.key != taint.key or (self.effect and self.effect != taint.effect):
            return False
        return self.operator == "Exists" or self.value == taint.value

    def as_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator}
        if self.operator == "Equal":
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        return out


@dataclass(frozen=True)
class Allocatable:
    cpu: int
    memory: int
    ephemeral_storage: int
    pods: int

    def get(self, resource: str) -> int:
        return {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral_storage,
                "pods": self.pods}[resource]


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    allocatable: Allocatable
    schedulable: bool = True
    # False for bumble: never a default runner target even when uncordoned.
    runner_target: bool = True

    @property
    def kvm(self) -> bool:
        return self.labels.get("capability.tinyland.dev/kvm") == "true"

    def all_labels(self) -> dict[str, str]:
        return {HOSTNAME_LABEL: self.name, "kubernetes.io/os": "linux", **self.labels}


@dataclass(frozen=True)
class Placement:
    node: str | None
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    # True when tolerations were written out rather than derived from the node.
    explicit_tolerations: bool = False

    def admits(self, node: Node) -> bool:
        """Selector matches and every NoSchedule/NoExecute taint is tolerated."""
        labels = node.all_labels()
        if any(labels.get(k) != v for k, v in self.node_selector.items()):
            return False
        return all(any(t.tolerates(taint) for t in self.tolerations)
                   for taint in node.taints if taint.effect in ("NoSchedule", "NoExecute"))


@dataclass(frozen=True)
class Volume:
    """A per-pod generic ephemeral volume (a PVC made from a claim template)."""

    name: str
    mount_path: str
    size: int
    storage_class: str
    seed_nix: bool = False
    container: str = "runner"


@dataclass(frozen=True)
class WarmPoolSchedule:
    cron: str
    min_runners: int


@dataclass(frozen=True)
class WarmPool:
    name: str
    timezone: str
    schedules: tuple[WarmPoolSchedule, ...]


@dataclass(frozen=True)
class CleanupPolicy:
    schedule: str
    concurrency_policy: str
    terminating_after_s: int
    succeeded_after_s: int
    failed_after_s: int


@dataclass(frozen=True)
class RunnerClass:
    """A workflow-facing label (``runs-on:``): the consumer contract."""

    name: str
    forge: str
    use: str
    image: str
    devices: frozenset[str]


@dataclass(frozen=True)
class ScaleSet:
    """One ARC AutoScalingRunnerSet: an owner overlay's implementation of a label."""

    name: str
    overlay: str
    label: str
    labels: tuple[str, ...]
    namespace: str
    min_runners: int
    max_runners: int
    node: str | None
    placement: Placement
    envelope: Envelope
    volumes: tuple[Volume, ...]
    devices: frozenset[str]
    image: str
    hints: dict[str, str]
    warm_pool: WarmPool | None

    @property
    def seeds_nix(self) -> bool:
        return any(v.seed_nix for v in self.volumes)

    @property
    def has_dind(self) -> bool:
        return self.envelope.container("dind") is not None


@dataclass(frozen=True)
class GitLabRunner:
    """A GitLab compatibility runner: an HPA-managed Deployment."""

    name: str
    namespace: str
    min_replicas: int
    max_replicas: int
    cpu_target_percent: int
    scale_down_stabilization_s: int
    node: str | None
    placement: Placement
    envelope: Envelope


@dataclass(frozen=True)
class Overlay:
    name: str
    github_config_url: str
    github_config_secret: str


@dataclass(frozen=True)
class StorageClass:
    name: str
    provisioner: str
    binding_mode: str
    reclaim_policy: str
    node: str | None


@dataclass(frozen=True)
class LabelTaxonomy:
    prefix: str
    base: tuple[str, ...]
    suffixes: tuple[str, ...]


@dataclass(frozen=True)
class RunnerPod:
    command: tuple[str, ...]
    run_as_user: int
    priority_class: str
    priority_value: int
    env: dict[str, str]
    hook_job_started: str | None
    hook_job_completed: str | None
    work_owner: str


@dataclass(frozen=True)
class Topology:
    source: str
    namespaces: dict[str, str]
    services: dict[str, dict[str, Any]]
    nodes: tuple[Node, ...]
    storage_classes: tuple[StorageClass, ...]
    overlays: tuple[Overlay, ...]
    label_taxonomy: LabelTaxonomy
    runner_pod: RunnerPod
    images: dict[str, str]
    warm_pools: tuple[WarmPool, ...]
    cleanup: CleanupPolicy
    runner_classes: tuple[RunnerClass, ...]
    scale_sets: tuple[ScaleSet, ...]
    gitlab_runners: tuple[GitLabRunner, ...]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError(f"{self.source}: no node named {name!r} (known: {', '.join(n.name for n in self.nodes)})")

    def scale_set(self, name: str) -> ScaleSet:
        for s in self.scale_sets:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.scale_sets)
        raise TopologyError(f"{self.source}: no scale set named {name!r} (known: {known})")

    def runner_class(self, name: str) -> RunnerClass | None:
        return next((c for c in self.runner_classes if c.name == name), None)

    def scale_sets_for(self, label: str) -> tuple[ScaleSet, ...]:
        return tuple(s for s in self.scale_sets if s.label == label)

    def storage_class(self, name: str) -> StorageClass | None:
        return next((c for c in self.storage_classes if c.name == name), None)

    def overlay(self, name: str) -> Overlay:
        return next(o for o in self.overlays if o.name == name)


def source_name(path: Path | str) -> str:
    return str(path)
