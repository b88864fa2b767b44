"""The runner-scale contract guard (the document's runner-scale-contract-check).

Each rule returns violations as stable one-line strings,
``check: <rule>: <subject>: <what>``, so CI logs diff cleanly and tests can
assert exact lines.  Rules, in output order:

no-storage-node    a default ARC or GitLab selector can land on bumble (a node
                   that is never a runner target), cordon or not
taint-toleration   a lane placed on a tainted node (sting) lacks the exact toleration
orphan-toleration  a lane tolerates a taint no node carries
label-identity     a published label encodes an owner or repository name
label-taxonomy     a published label falls outside the label taxonomy
envelope-fit       a lane's summed pod requests cannot fit its node even once
unknown-label      a scale set publishes a label no GitHub runner class defines
baseline-node      a baseline Nix or DinD lane (its class has a baseline node) is
                   placed elsewhere; only overflow scale sets leave it
scratch-claims     a lane on a node whose fast disks are not its kubelet root
                   (sting) asks that root for more than a small ephemeral-storage
                   request, or an overflow lane there reserves no scratch claim
listener-placement a listener has no placement, lands neither with its runners nor
                   with the controller, or leaves the node its overlay pins it to
dind-envelope      a DinD lane's daemon container lacks a CPU or memory request or limit
fast-local-pool    a lane's cap claims more of a node-local pool (sting's fast-local
                   scratch) than its stated size backs beside the other lanes at
                   their caps (2026-05-24: a cap is usable only when the substrate
                   backs it; the scheduler does not count the pool, so unbacked
                   runners fail on a full disk rather than queue).  A pool whose
                   size is "unstated" is reported by ``topology capacity``, not here
device-class       a lane names a device RuntimeClass for a device its runner class does
                   not declare (the admission policy would refuse its pods), or declares
                   a device but names another class (its pods would not get the device)
device-node        a device lane can land on a node without the device's capability label
                   (the RuntimeClass's nodeSelector would leave it Pending)
api-server         a lane the managed apply runs on (arc.managed_apply.runs_on) has a runner
                   class without api_server: its NetworkPolicy keeps it off the API server
gitlab-hpa         a GitLab runner leaves the document's HPA: minimum 1 replica, CPU target
                   70%, a memory target, a 300 s scale-down window, in gitlab-runners, on
                   honey, and an executor named by its runner class

Beside the rules, :func:`root_lanes` says which lanes run jobs as uid 0 (the
design's choice, stated per lane): `topology check` prints them as notes.

"Lanes" are scale sets, GitLab runners, the ARC controller and the listeners:
every pod the topology places takes a node's slots, so every one is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flywheel_runtime.topology.model import RESOURCE_NAMES, Envelope, Node, Placement, Topology
from flywheel_runtime.topology.quantity import format_cpu, human_bytes
from flywheel_runtime.topology.render import WORK_DIR


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"check: {self.rule}: {self.subject}: {self.message}"


def _lanes(topo: Topology) -> Iterator[tuple[str, Placement, Envelope]]:
    for ss in topo.scale_sets:
        yield f"scale set {ss.name}", ss.placement, ss.envelope
    for g in topo.gitlab_runners:
        yield f"gitlab runner {g.name}", g.placement, g.envelope
    if topo.arc is not None:
        yield "arc controller", topo.arc.controller.placement, topo.arc.controller.envelope
    for lst in topo.listeners:
        if lst.placement.node_selector or lst.placement.affinity:  # unplaced: listener-placement says so
            yield f"listener {lst.scale_set}", lst.placement, lst.envelope


def placed_on(topo: Topology, placement: Placement) -> list[Node]:
    """The nodes a lane is aimed at: its pinned node, a hostname selector's
    node, or, for an unpinned lane with a selector or affinity, every node
    those match (taints aside: tolerating them is what the rules check)."""
    if not placement.node_selector and not placement.affinity:
        return []
    untainted = Placement(placement.node, placement.node_selector, (), False, placement.affinity)
    return [n for n in topo.nodes if untainted.admits(Node(n.name, n.role, n.labels, (), n.allocatable))]


def lands_on(topo: Topology, placement: Placement) -> list[Node]:
    """The nodes whose selector, affinity and taints admit the lane (cordons
    aside: a cordon is not placement)."""
    if not placement.node_selector and not placement.affinity:
        return []
    return [n for n in topo.nodes if placement.admits(n)]


def rule_bumble(topo: Topology) -> Iterator[Violation]:
    """No default ARC or GitLab selector may land on a non-runner-target node
    (bumble), even once it is uncordoned: cordons are not placement."""
    for subject, placement, _ in _lanes(topo):
        for node in topo.nodes:
            if not node.runner_target and placement.admits(node):
                yield Violation("no-storage-node", subject,
                                f"selector {_fmt_selector(placement)} can land on {node.name}, "
                                f"which is never a default runner target")


def rule_sting_toleration(topo: Topology) -> Iterator[Violation]:
    """A lane placed on a tainted node (sting) must tolerate exactly that taint.

    "Placed on": the lane's only selected node, or any selected node whose
    taint it tolerates loosely (an Exists or effect-less toleration admits
    more than the reviewed contract).  A lane selecting several nodes that
    simply does not tolerate one of them is not placed there."""
    for subject, placement, _ in _lanes(topo):
        nodes = placed_on(topo, placement)
        for node, taint in ((n, t) for n in nodes for t in n.taints):
            exact = any(t.key == taint.key and t.operator == "Equal" and t.value == taint.value
                        and t.effect == taint.effect for t in placement.tolerations)
            loose = any(t.tolerates(taint) for t in placement.tolerations)
            if not exact and (len(nodes) == 1 or loose):
                yield Violation("taint-toleration", subject,
                                f"placed on {node.name} but lacks the exact toleration {taint}")


def rule_orphan_toleration(topo: Topology) -> Iterator[Violation]:
    """A toleration for a taint no node carries is stale placement debt."""
    for subject, placement, _ in _lanes(topo):
        for t in placement.tolerations:
            if not any(t.tolerates(taint) for n in topo.nodes for taint in n.taints):
                desc = f"{t.key}={t.value}:{t.effect}" if t.operator == "Equal" else f"{t.key} (Exists)"
                yield Violation("orphan-toleration", subject, f"tolerates {desc}, which no node carries")


def _label_ok(label: str, topo: Topology) -> bool:
    tax = topo.label_taxonomy
    if label in tax.base or label in tax.suffixes:
        return True
    m = re.match(rf"^{re.escape(tax.prefix)}-(.+)$", label)
    if not m:
        return False
    parts = m.group(1).split("-")
    if parts[0] not in tax.base:
        return False
    rest = "-".join(parts[1:])
    # Suffixes may themselves contain dashes (compute-expansion): match greedily.
    while rest:
        for s in sorted(tax.suffixes, key=len, reverse=True):
            if rest == s or rest.startswith(s + "-"):
                rest = rest[len(s) + 1:]
                break
        else:
            return False
    return True


def _owner_tokens(topo: Topology) -> set[str]:
    """Identity that must never appear in a label: overlay owners and the
    GitHub owners/repositories in their config URLs."""
    tokens = {o.name.lower() for o in topo.overlays}
    for o in topo.overlays:
        path = re.sub(r"^https://[^/]+/?", "", o.github_config_url).strip("/")
        tokens.update(p.lower() for p in path.split("/") if p)
    return tokens - {topo.label_taxonomy.prefix}


def rule_label_taxonomy(topo: Topology) -> Iterator[Violation]:
    owners = _owner_tokens(topo)
    labels: dict[str, list[str]] = {}
    for ss in topo.scale_sets:
        for label in ss.labels:
            labels.setdefault(label, []).append(f"scale set {ss.name}")
    for rc in topo.runner_classes:
        labels.setdefault(rc.name, []).append(f"runner class {rc.name}")
    for label, subjects in labels.items():
        low = label.lower()
        hit = next((o for o in sorted(owners) if o in low), None)
        for subject in dict.fromkeys(subjects):
            if hit:
                yield Violation("label-identity", subject, f"label {label!r} encodes owner or repository {hit!r}")
            elif not _label_ok(label, topo):
                yield Violation("label-taxonomy", subject, f"label {label!r} is outside the label taxonomy")


def _fits_once(envelope: Envelope, node: Node) -> list[str]:
    req = envelope.pod_requests()
    short = []
    for r in RESOURCE_NAMES:
        if req[r] > node.allocatable.get(r):
            fmt = format_cpu if r == "cpu" else human_bytes
            short.append(f"{r} {fmt(req[r])} > {fmt(node.allocatable.get(r))}")
    if node.allocatable.pods < 1:
        short.append("pods 1 > 0")
    return short


def rule_envelope_fits(topo: Topology) -> Iterator[Violation]:
    """The pod's summed requests must fit its node's allocatable once (for a
    lane aimed at several nodes: at least one of them)."""
    for subject, placement, envelope in _lanes(topo):
        shortfalls = [(node, _fits_once(envelope, node)) for node in placed_on(topo, placement)]
        if all(short for _, short in shortfalls):
            for node, short in shortfalls:
                yield Violation("envelope-fit", subject,
                                f"requests do not fit {node.name}'s allocatable even once: " + ", ".join(short))


def rule_published_label(topo: Topology) -> Iterator[Violation]:
    """A scale set's runner class, and every class-shaped (prefixed, in-taxonomy)
    label it publishes, must be a GitHub runner class; base labels and bare
    capability suffixes (kvm, gpu) are tags, not classes."""
    known = {rc.name for rc in topo.runner_classes if rc.forge == "github"}
    prefix = topo.label_taxonomy.prefix + "-"
    for ss in topo.scale_sets:
        subject = f"scale set {ss.name}"
        if ss.label not in known:
            yield Violation("unknown-label", subject, f"publishes {ss.label!r}, which no GitHub runner class defines")
        elif ss.label not in ss.labels:
            yield Violation("unknown-label", subject, f"runner class {ss.label!r} is missing from its published labels")
        for label in ss.labels:
            if label != ss.label and label.startswith(prefix) and label not in known and _label_ok(label, topo):
                yield Violation("unknown-label", subject, f"publishes {label!r}, which no GitHub runner class defines")


def rule_baseline_node(topo: Topology) -> Iterator[Violation]:
    """Baseline Nix and DinD lanes stay on honey until their runtime and storage
    envelopes are proven elsewhere: only ``overflow`` scale sets leave."""
    for ss in topo.scale_sets:
        rc = topo.runner_class(ss.label)
        home = rc.baseline_node if rc else None
        subject = f"scale set {ss.name}"
        if home is None:
            if ss.overflow:
                yield Violation("baseline-node", subject,
                                f"is an overflow lane, but runner class {ss.label!r} has no baseline node")
            continue
        nodes = [n.name for n in lands_on(topo, ss.placement)]
        if not ss.overflow and nodes != [home]:
            where = ", ".join(nodes) or "no node in particular"
            yield Violation("baseline-node", subject,
                            f"baseline {ss.label} lane placed on {where}; it must stay on {home}")


def rule_scratch_claims(topo: Topology) -> Iterator[Violation]:
    """On a node whose fast disks are not the kubelet root (sting): every
    container's root ephemeral-storage request stays small, and an overflow
    lane reserves its scratch (work dir; for DinD also /var/lib/docker) as
    claims of the node's scratch storage class."""
    for subject, placement, envelope in _lanes(topo):
        for node in lands_on(topo, placement):
            if node.scratch is None:
                continue
            cap = node.scratch.root_request_max
            for c in envelope.containers:
                asked = c.requests.ephemeral_storage
                if asked is not None and asked > cap:
                    yield Violation("scratch-claims", subject,
                                    f"container {c.name} requests {human_bytes(asked)} of {node.name}'s root "
                                    f"ephemeral-storage (at most {human_bytes(cap)}: scratch goes through claims "
                                    f"of {node.scratch.storage_class})")
    for ss in topo.scale_sets:
        if not ss.overflow:
            continue
        for node in lands_on(topo, ss.placement):
            if node.scratch is None:
                continue
            needed = [WORK_DIR] + (["/var/lib/docker"] if ss.has_dind else [])
            claimed = {v.mount_path for v in ss.volumes if v.storage_class == node.scratch.storage_class}
            for path in needed:
                if path not in claimed:
                    yield Violation("scratch-claims", f"scale set {ss.name}",
                                    f"overflow lane on {node.name} reserves no {node.scratch.storage_class} claim "
                                    f"at {path}")


def rule_listener_placement(topo: Topology) -> Iterator[Violation]:
    """Listeners take pod slots where they land: each is placed, either with its
    runners (Docker's on sting) or with the controller (honey), and on the node
    its overlay pins listeners to (Jess's: honey)."""
    if topo.arc is None:
        return
    home = topo.arc.controller.node
    for ss in topo.scale_sets:
        lst = ss.listener
        if lst is None:
            continue
        subject = f"listener {ss.name}"
        nodes = [n.name for n in placed_on(topo, lst.placement)] if (
            lst.placement.node_selector or lst.placement.affinity) else []
        if not nodes:
            yield Violation("listener-placement", subject,
                            "has no placement (no listenerTemplate: it lands wherever the scheduler likes, "
                            "uncounted)")
            continue
        allowed = {n for n in (ss.node, home) if n}
        stray = [n for n in nodes if n not in allowed]
        if stray:
            yield Violation("listener-placement", subject,
                            f"can land on {', '.join(stray)}: listeners go with their runners ({ss.node}) "
                            f"or with the controller ({home})")
        pin = topo.overlay(ss.overlay).listener_node
        if pin is not None and nodes != [pin]:
            yield Violation("listener-placement", subject,
                            f"overlay {ss.overlay} pins its listeners to {pin}, but it lands on {', '.join(nodes)}")


def rule_dind_envelope(topo: Topology) -> Iterator[Violation]:
    """The DinD daemon runs the builds: it needs its own CPU and memory budget."""
    for ss in topo.scale_sets:
        daemon = ss.envelope.container("dind")
        if daemon is None:
            continue
        missing = [f"{kind} {r}" for kind, res in (("request", daemon.requests), ("limit", daemon.limits))
                   for r in ("cpu", "memory") if res.get(r) is None]
        if missing:
            yield Violation("dind-envelope", f"scale set {ss.name}",
                            f"daemon container dind has no {', '.join(missing)}")


def rule_fast_local_pool(topo: Topology) -> Iterator[Violation]:
    """Every lane's claims at caps on a node-local pool must fit its stated size."""
    from flywheel_runtime.topology.capacity import pools

    for pool in pools(topo):
        if pool.capacity is None:
            continue
        for lane in pool.lanes:
            if not lane.backed:
                yield Violation("fast-local-pool", f"scale set {lane.scale_set}",
                                f"cap {lane.max_runners} claims {human_bytes(lane.at_cap)} of {pool.storage_class} "
                                f"on {pool.node}; its {human_bytes(pool.capacity)} backs {lane.backs_at_peak} "
                                f"beside the other lanes at their caps ({lane.backs_alone} alone)")


def rule_device_class(topo: Topology) -> Iterator[Violation]:
    """A lane may name a device RuntimeClass only for a device it declares."""
    from flywheel_runtime.topology import devices

    classes = devices.load()
    device_of = {dc.runtime_class: name for name, dc in classes.items()}
    device_of.update({dc.with_cards().runtime_class: name for name, dc in classes.items()
                      if any(d.card for d in dc.all_devices)})
    for ss in topo.scale_sets:
        if ss.runtime_class is None:
            continue
        subject = f"scale set {ss.name}"
        own = devices.of_scale_set(ss)
        named = device_of.get(ss.runtime_class)
        if named is not None and (own is None or own.runtime_class != ss.runtime_class):
            declared = ", ".join(sorted(ss.devices)) or "no device"
            yield Violation("device-class", subject,
                            f"names RuntimeClass {ss.runtime_class} (device {named}), but runner class {ss.label} "
                            f"declares {declared}: the device admission policy refuses its pods")
        elif named is None and own is not None:
            yield Violation("device-class", subject,
                            f"declares {', '.join(sorted(ss.devices))} but names RuntimeClass {ss.runtime_class}: "
                            f"its pods would not get the device (its class is {own.runtime_class})")


def rule_device_node(topo: Topology) -> Iterator[Violation]:
    """A device lane lands only where its device's handler is (the capability label)."""
    from flywheel_runtime.topology import devices

    for ss in topo.scale_sets:
        dc = devices.of_scale_set(ss)
        if dc is None:
            continue
        for node in lands_on(topo, ss.placement):
            if node.labels.get(dc.node_label) != "true":
                yield Violation("device-node", f"scale set {ss.name}",
                                f"declares {dc.device} but can land on {node.name}, which lacks {dc.node_label}=true "
                                f"(RuntimeClass {dc.runtime_class} would leave its pods Pending)")


def rule_api_server(topo: Topology) -> Iterator[Violation]:
    """The managed apply's lanes must be allowed to reach the API server."""
    if topo.arc is None or topo.arc.managed_apply is None:
        return
    for label in topo.arc.managed_apply.runs_on:
        rc = topo.runner_class(label)
        if rc is not None and not rc.api_server:
            yield Violation("api-server", f"runner class {label}",
                            "the managed apply runs on it, but it lacks api_server: true (its jobs could not "
                            "reach the API server)")


# The document's GitLab runners ("GitLab Runners (HPA)", the runner tree).
GITLAB_MIN_REPLICAS = 1
GITLAB_CPU_TARGET = 70
GITLAB_SCALE_DOWN_WINDOW_S = 300
GITLAB_NAMESPACE = "gitlab-runners"
GITLAB_NODE = "honey"


def rule_gitlab_hpa(topo: Topology) -> Iterator[Violation]:
    """GitLab runners as the document states them."""
    for g in topo.gitlab_runners:
        subject = f"gitlab runner {g.name}"
        if g.min_replicas != GITLAB_MIN_REPLICAS:
            yield Violation("gitlab-hpa", subject, f"min replicas {g.min_replicas}; the document keeps "
                                                   f"{GITLAB_MIN_REPLICAS} always on")
        if g.cpu_target_percent != GITLAB_CPU_TARGET:
            yield Violation("gitlab-hpa", subject, f"CPU target {g.cpu_target_percent}%; the document's is "
                                                   f"{GITLAB_CPU_TARGET}%")
        if g.memory_target_percent is None:
            yield Violation("gitlab-hpa", subject, "no memory target; the document scales on CPU and memory")
        if g.scale_down_stabilization_s != GITLAB_SCALE_DOWN_WINDOW_S:
            yield Violation("gitlab-hpa", subject, f"scale-down window {g.scale_down_stabilization_s} s; the "
                                                   f"document's is {GITLAB_SCALE_DOWN_WINDOW_S} s")
        if g.namespace != GITLAB_NAMESPACE:
            yield Violation("gitlab-hpa", subject, f"in {g.namespace}; the document's namespace is "
                                                   f"{GITLAB_NAMESPACE}")
        if g.node != GITLAB_NODE:
            yield Violation("gitlab-hpa", subject, f"on {g.node or 'no pinned node'}; the document places GitLab "
                                                   f"runners on {GITLAB_NODE}")
        if g.executor is None:
            yield Violation("gitlab-hpa", subject, f"its runner class {g.runner_class} names no executor "
                                                   f"(the chart's runners.config)")


def root_lanes(topo: Topology) -> list[str]:
    """The scale sets whose runners run jobs as uid 0 (the design's choice, stated per lane)."""
    return [ss.name for ss in topo.scale_sets if ss.runs_jobs_as_root]


def root_note(topo: Topology) -> str | None:
    """One line naming the lanes that run jobs as root, and what root keeps; None when none does."""
    names = root_lanes(topo)
    if not names:
        return None
    caps = ", ".join(topo.runner_pod.root_capabilities) or "none"
    return (f"check: note: root-jobs: {len(names)} of {len(topo.scale_sets)} scale sets run jobs as uid 0 "
            f"(capabilities kept: {caps}): {', '.join(names)}")


def _fmt_selector(p: Placement) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in p.node_selector.items()) + "}" if p.node_selector else "{}"


RULES: tuple[Callable[[Topology], Iterator[Violation]], ...] = (
    rule_bumble,
    rule_sting_toleration,
    rule_orphan_toleration,
    rule_label_taxonomy,
    rule_envelope_fits,
    rule_published_label,
    rule_baseline_node,
    rule_scratch_claims,
    rule_listener_placement,
    rule_dind_envelope,
    rule_fast_local_pool,
    rule_device_class,
    rule_device_node,
    rule_api_server,
    rule_gitlab_hpa,
)


def check(topo: Topology) -> list[Violation]:
    """Every violation of the runner-scale contract, in rule order."""
    return [v for rule in RULES for v in rule(topo)]
