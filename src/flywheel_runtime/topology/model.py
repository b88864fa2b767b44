"""The typed topology model.

Runner classes (workflow-facing labels, the consumer contract) and scale sets
(ARC implementation objects, one per owner overlay and node) are kept apart:
several scale sets may publish one label, and each keeps its own cap.
"""

from __future__ import annotations

import dataclasses
import re
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
    """One container's requests and limits."""

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
    """A node taint (key=value:effect)."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class Toleration:
    """A pod toleration; ``tolerates`` follows the scheduler's matching."""

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
    """A node's allocatable: CPU in millicores, memory and storage in bytes, pod slots."""

    cpu: int
    memory: int
    ephemeral_storage: int
    pods: int

    def get(self, resource: str) -> int:
        return {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral_storage,
                "pods": self.pods}[resource]


@dataclass(frozen=True)
class Scratch:
    """A node whose fast disks are not its kubelet root filesystem: lanes there
    reserve scratch through claims and keep root ephemeral-storage requests small."""

    storage_class: str
    root_request_max: int


@dataclass(frozen=True)
class Node:
    """A cluster node of the platform."""

    name: str
    role: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    allocatable: Allocatable
    schedulable: bool = True
    # False for bumble: never a default runner target even when uncordoned.
    runner_target: bool = True
    scratch: Scratch | None = None
    # Pods outside the contract that take this node's slots (control plane,
    # system DaemonSets, services): not in the facts, so 0 unless set.
    other_pods: int = 0

    @property
    def kvm(self) -> bool:
        return self.labels.get("capability.tinyland.dev/kvm") == "true"

    def all_labels(self) -> dict[str, str]:
        return {HOSTNAME_LABEL: self.name, "kubernetes.io/os": "linux", **self.labels}


@dataclass(frozen=True)
class NodeSelectorRequirement:
    """One ``matchExpressions`` entry of a required node affinity term."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # NotIn

    def as_k8s(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.operator in ("In", "NotIn"):
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class Placement:
    """Where a lane's pods may land (the topology's intent): selector,
    tolerations, required node affinity.  The scheduler's verdict on a live
    pod is :class:`flywheel_runtime.kube.PodVerdict`."""

    node: str | None
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    # True when tolerations were written out rather than derived from the node.
    explicit_tolerations: bool = False
    # requiredDuringSchedulingIgnoredDuringExecution: the terms are ORed, the
    # requirements inside one term ANDed (Kubernetes semantics).
    affinity: tuple[tuple[NodeSelectorRequirement, ...], ...] = ()

    def admits(self, node: Node) -> bool:
        """Selector and required affinity match, and every NoSchedule/NoExecute
        taint is tolerated: what the scheduler's filters would say."""
        labels = node.all_labels()
        if any(labels.get(k) != v for k, v in self.node_selector.items()):
            return False
        if self.affinity and not any(all(r.matches(labels) for r in term) for term in self.affinity):
            return False
        return all(any(t.tolerates(taint) for t in self.tolerations)
                   for taint in node.taints if taint.effect in ("NoSchedule", "NoExecute"))

    def affinity_k8s(self) -> dict[str, Any] | None:
        if not self.affinity:
            return None
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [r.as_k8s() for r in term]} for term in self.affinity]}}}


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
    """At ``cron`` (UTC), set the scale set's minRunners to ``min_runners``."""

    cron: str
    min_runners: int


@dataclass(frozen=True)
class WarmPool:
    """A named set of scheduled minRunners overrides."""

    name: str
    timezone: str
    schedules: tuple[WarmPoolSchedule, ...]


@dataclass(frozen=True)
class CleanupPolicy:
    """The runner-cleanup CronJob's policy (ages in seconds)."""

    schedule: str
    concurrency_policy: str
    terminating_after_s: int
    succeeded_after_s: int
    failed_after_s: int

    @property
    def interval_s(self) -> int | None:
        """Seconds between runs for an every-N-minutes schedule ("*/5 * * * *"), else None."""
        m = re.fullmatch(r"\*/([0-9]+) \* \* \* \*", self.schedule)
        if m:
            return int(m.group(1)) * 60
        return 60 if self.schedule == "* * * * *" else None


@dataclass(frozen=True)
class GitLabExecutor:
    """A GitLab runner class's executor: Kubernetes, job pods beside the runner
    manager, with images and hints resolved from the topology."""

    job_image: str
    privileged: bool = False
    services: tuple[str, ...] = ()  # images started beside each job (the DinD daemon)
    environment: tuple[tuple[str, str], ...] = ()  # the runtime hints every job gets


@dataclass(frozen=True)
class RunnerClass:
    """A workflow-facing label (``runs-on:`` / GitLab ``tags:``): the consumer contract."""

    name: str
    forge: str  # "github" (ARC scale sets) or "gitlab" (HPA Deployments)
    use: str
    image: str
    devices: frozenset[str]
    tags: tuple[str, ...] = ()  # published after the class label by every scale set of the class
    baseline_node: str | None = None  # baseline lanes stay here; only overflow scale sets leave
    dri_cards: bool = False  # a dri lane also gets the DRM card nodes (default: render nodes only)
    api_server: bool = False  # its jobs reach the Kubernetes API server (NetworkPolicy)
    executor: GitLabExecutor | None = None  # GitLab classes: what their runners run jobs with

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.name, *self.tags)


@dataclass(frozen=True)
class Listener:
    """A scale set's AutoscalingListener pod, in the controller's namespace."""

    scale_set: str
    namespace: str
    node: str | None
    placement: Placement
    envelope: Envelope


@dataclass(frozen=True)
class Controller:
    """The ARC controller Deployment (gha-runner-scale-set-controller chart)."""

    name: str  # the chart's fullname: Deployment and service account
    namespace: str
    replicas: int
    metrics_port: int
    image: str
    node: str | None
    placement: Placement
    envelope: Envelope


@dataclass(frozen=True)
class DindLayout:
    """The scale-set chart's dind layout for this cluster."""

    image: str
    docker_group_gid: int
    wait_for_docker_s: int
    startup_period_s: int
    startup_failure_threshold: int
    native_sidecar: bool  # Kubernetes >= 1.29: dind is an init container with restartPolicy Always
    externals: Envelope = Envelope(())  # the init-dind-externals container's


@dataclass(frozen=True)
class ManagedApply:
    """How a managed apply quiesces shared lanes: which, and for how long at most."""

    freeze_labels: tuple[str, ...]
    drain_timeout_s: int
    settle_timeout_s: int
    runs_on: tuple[str, ...]


@dataclass(frozen=True)
class Arc:
    """ARC's control plane: version, controller, dind layout, managed apply."""

    version: str
    namespace: str
    controller: Controller
    dind: DindLayout
    managed_apply: ManagedApply | None = None


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
    listener: Listener | None = None
    overflow: bool = False  # an overflow lane of a class with a baseline node
    run_as_user: int = 0  # the uid the runner container runs jobs as
    runtime_class: str | None = None  # written out in the topology (else: its devices' class)
    dri_cards: bool = False  # from its runner class
    api_server: bool = False  # from its runner class

    @property
    def runs_jobs_as_root(self) -> bool:
        return self.run_as_user == 0

    @property
    def storage(self) -> tuple[Volume, ...]:
        """The lane's generic ephemeral volumes (the contract's name for ``volumes``)."""
        return self.volumes

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
    runner_class: str = ""  # the GitLab runner class (tag) it serves; defaults to its name
    image: str = ""
    run_as_user: int = 100
    fs_group: int = 65533
    memory_target_percent: int | None = None  # the HPA's memory utilization target
    executor: GitLabExecutor | None = None  # its runner class's

    @property
    def tags(self) -> tuple[str, ...]:
        """The GitLab tags its jobs ask for: its runner class."""
        return (self.runner_class or self.name,)


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Service:
    """A platform service runners or other services reach (nix-cache's)."""

    name: str
    namespace: str
    url: str | None
    cache: str | None
    pods: dict[str, str]  # its pods' labels
    ports: tuple[ServicePort, ...]
    clients: tuple[str, ...]  # "runners" and service names
    client_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    """What NetworkPolicies need: internal ranges, cluster DNS, the API server's address."""

    internal_cidrs: tuple[str, ...]
    dns_namespace: str
    dns_pods: dict[str, str]
    dns_port: int
    api_server_cidrs: tuple[str, ...]
    api_server_port: int


@dataclass(frozen=True)
class Overlay:
    """An owner overlay: one GitHub App install."""

    name: str
    github_config_url: str
    github_config_secret: str
    listener_node: str | None = None  # the contract pins this overlay's listeners here


@dataclass(frozen=True)
class StorageClass:
    """A StorageClass runner volumes are provisioned from."""

    name: str
    provisioner: str
    binding_mode: str
    reclaim_policy: str
    node: str | None
    # The node-local (fast-local) pool's size in bytes: None where the data
    # says "unstated" (a pool no figure backs) or for a class with no node.
    capacity: int | None = None
    capacity_source: str = ""

    @property
    def fast_local(self) -> bool:
        """Bound to one node's own disks: a finite pool the claims share."""
        return self.node is not None


@dataclass(frozen=True)
class LabelTaxonomy:
    """What a workflow-facing label may be made of."""

    prefix: str
    base: tuple[str, ...]
    suffixes: tuple[str, ...]


@dataclass(frozen=True)
class RunnerPod:
    """Facts every ARC runner pod shares."""

    command: tuple[str, ...]
    run_as_user: int
    priority_class: str
    priority_value: int
    env: dict[str, str]
    hook_job_started: str | None
    hook_job_completed: str | None
    work_owner: str
    root_capabilities: tuple[str, ...] = ()
    seed_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class UtilityJobs:
    """The platform's own CronJobs' container: image, user, envelope (container ``job``)."""

    image: str
    run_as_user: int
    envelope: Envelope


@dataclass(frozen=True)
class Topology:
    """The whole platform model (see the package docstring)."""

    source: str
    namespaces: dict[str, str]
    services: dict[str, Service]
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
    arc: Arc | None = None
    kubernetes_version: str = ""
    network: Network | None = None
    utility_jobs: UtilityJobs | None = None
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

    def default_nodes(self) -> tuple[Node, ...]:
        """Where a pod with no selector and no tolerations can land (the
        utility CronJobs' pods): schedulable nodes it is admitted to -- honey
        alone on this platform."""
        bare = Placement(None, {}, ())
        return tuple(n for n in self.nodes if n.schedulable and bare.admits(n))

    def with_other_pods(self, counts: dict[str, int]) -> Topology:
        """This topology with ``counts`` as the named nodes' pods outside the
        contract (a live count, or a what-if); other nodes keep theirs."""
        return dataclasses.replace(self, nodes=tuple(
            dataclasses.replace(n, other_pods=counts.get(n.name, n.other_pods)) for n in self.nodes))

    def with_network(self, **changes: Any) -> Topology:
        """This topology with its network facts changed (e.g. a kind cluster's
        ``api_server_cidrs`` and ``internal_cidrs``)."""
        assert self.network is not None
        return dataclasses.replace(self, network=dataclasses.replace(self.network, **changes))

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(s.listener for s in self.scale_sets if s.listener is not None)


def source_name(path: Path | str) -> str:
    return str(path)
