"""How many runners fit where, by which resource, and global capacity debt.

Counts use requests, as the kube-scheduler does, and every pod that takes a
node's slots: runner pods, and the *standing* pods that are always there --
the ARC controller, one listener per scale set (placed by the topology, e.g.
nine on honey), the GitLab runners at their minimum replicas, and the pods
outside the contract a node is told it carries (``nodes.<n>.other_pods``:
control plane, system DaemonSets, services; not in the facts, so 0 unless
set).  The utility CronJobs' pods (cleanup, warm pool) carry no selector or
toleration, so they land on the untainted schedulable node -- honey -- and
count there at peak.  Views:

* per scale set, alone on its pinned node beside the standing pods (``fit``):
  runners by cpu, memory, ephemeral-storage and pod count, and which binds first;
* per label (``labels``): the label's scale sets across overlays packed
  together on their nodes, each up to its own cap (``admits``), and the same
  while every other lane on those nodes runs at its cap (``admits_at_peak``).
  Summed caps beyond those are the document's "global capacity debt": honest
  queueing, not runner label debt;
* per node (``node_demand``): every lane pinned there at its cap, summed;
* per node (``pod_ceiling``): the 2026-05-11 lesson offline -- how many pods
  outside the contract it takes before the node's pod count, not CPU, memory
  or storage, refuses each lane pinned there, while other nodes have room;
* ``scenario``: runners asked at once, what is admitted, what queues and on
  which resource, and how many of them a fast-local pool holds;
* per node-local StorageClass (``pools``): the 2026-05-24 lesson -- every
  lane's claims at its cap counted against the pool's stated size, and the
  lanes whose caps it cannot back (the scheduler never counts the pool);
* ``capacity_row``: a row of the design document's capacity table (quiet,
  normal, burst: ``capacity_scenarios.yaml``) beside our requests, limits and
  what the scheduler admits, and why they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import TopologyError
from flywheel_runtime.topology.model import RESOURCE_NAMES, ScaleSet, Topology
from flywheel_runtime.topology.quantity import format_bytes, format_cpu, human_bytes


@dataclass(frozen=True)
class ScaleSetFit:
    scale_set: str
    overlay: str
    label: str
    node: str | None
    max_runners: int
    fits: dict[str, int | None]  # per resource (and pods) beside the standing pods; None = not requested
    admits: int  # runners the node admits alone: the minimum over resources
    binding: str  # which resource binds first
    node_schedulable: bool


@dataclass(frozen=True)
class LabelCapacity:
    label: str
    scale_sets: list[str]
    summed_caps: int
    admits: int  # the label's own sets packed on their nodes, nothing else running
    debt: int  # summed caps beyond ``admits``
    overlays: list[str] = field(default_factory=list)
    admits_at_peak: int = 0  # ... while every other lane on those nodes runs at its cap
    debt_at_peak: int = 0  # summed caps beyond ``admits_at_peak``


@dataclass(frozen=True)
class NodeDemand:
    node: str
    lanes: list[str]
    at_caps: dict[str, int]  # summed requests with every pinned lane at its cap (and pods)
    allocatable: dict[str, int]
    overcommitted: list[str]  # resources where demand at caps exceeds allocatable
    standing: dict[str, int] = field(default_factory=dict)  # standing pods: lane -> count


Lane = tuple[str, dict[str, int], int]  # (lane, pod requests incl. one pod slot, pod count)


def _arc_pods(topo: Topology, node: str) -> list[Lane]:
    """The ARC controller and the listeners placed on ``node``."""
    out: list[Lane] = []
    if topo.arc is not None and topo.arc.controller.node == node:
        c = topo.arc.controller
        out.append(("arc controller", {**c.envelope.pod_requests(), "pods": 1}, c.replicas))
    out += [(f"listener {lst.scale_set}", {**lst.envelope.pod_requests(), "pods": 1}, 1)
            for lst in topo.listeners if lst.node == node]
    return out


OTHER_PODS = "pods outside the contract"
_SLOT_ONLY = {r: 0 for r in RESOURCE_NAMES} | {"pods": 1}  # a pod counted by its slot alone


def _other(topo: Topology, node: str) -> list[Lane]:
    n = topo.node(node).other_pods
    return [(OTHER_PODS, dict(_SLOT_ONLY), n)] if n else []


def standing(topo: Topology, node: str) -> list[Lane]:
    """Pods always on ``node``: controller, listeners, GitLab runners at min
    replicas, and the pods outside the contract."""
    return _arc_pods(topo, node) + [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1},
                                     g.min_replicas) for g in topo.gitlab_runners if g.node == node
                                    ] + _other(topo, node)


def utility_jobs(topo: Topology) -> list[str]:
    """The rendered CronJobs, whose pods carry no selector (one running pod
    each at most: cleanup forbids overlap; a warm-pool run is one short pod)."""
    from flywheel_runtime.topology import render

    return [cj["metadata"]["name"] for cj in (render.cleanup_cronjob(topo), *render.warm_pool_cronjobs(topo))]


def _utility(topo: Topology, node: str) -> list[Lane]:
    # Counted only where the node they land on is unambiguous (one default node).
    default = topo.default_nodes()
    if len(default) != 1 or default[0].name != node:
        return []
    return [(f"utility job {name}", dict(_SLOT_ONLY), 1) for name in utility_jobs(topo)]


def _pinned(topo: Topology, node: str) -> list[Lane]:
    """Every pod on ``node`` with each lane at its cap (GitLab at max replicas),
    the utility jobs running, and the pods outside the contract."""
    out = [(f"scale set {s.name}", {**s.envelope.pod_requests(), "pods": 1}, s.max_runners)
           for s in topo.scale_sets if s.node == node]
    out += [(f"gitlab runner {g.name}", {**g.envelope.pod_requests(), "pods": 1}, g.max_replicas)
            for g in topo.gitlab_runners if g.node == node]
    return out + _arc_pods(topo, node) + _utility(topo, node) + _other(topo, node)


def _free(topo: Topology, node: str, lanes: list[Lane]) -> dict[str, int]:
    n = topo.node(node)
    return {r: n.allocatable.get(r) - sum(req[r] * count for _, req, count in lanes)
            for r in (*RESOURCE_NAMES, "pods")}


def _pack(free: dict[str, int], sets: list[ScaleSet]) -> int:
    """Runners of ``sets`` admitted into ``free`` (mutated), each up to its cap."""
    return sum(_admit(free, {**s.envelope.pod_requests(), "pods": 1}, s.max_runners)[0] for s in sets)


def node_demand(topo: Topology, node_name: str) -> NodeDemand:
    node = topo.node(node_name)
    keys = (*RESOURCE_NAMES, "pods")
    lanes = _pinned(topo, node_name)
    total = {r: sum(req[r] * cap for _, req, cap in lanes) for r in keys}
    alloc = {r: node.allocatable.get(r) for r in keys}
    return NodeDemand(node_name, [name for name, _, _ in lanes], total, alloc,
                      [r for r in keys if total[r] > alloc[r]],
                      {name: count for name, _, count in standing(topo, node_name) if count})


def fit(topo: Topology, ss: ScaleSet) -> ScaleSetFit:
    if ss.node is None:
        return ScaleSetFit(ss.name, ss.overlay, ss.label, None, ss.max_runners, {}, 0, "unpinned", False)
    node = topo.node(ss.node)
    req = ss.envelope.pod_requests()
    free = _free(topo, node.name, standing(topo, node.name))
    fits: dict[str, int | None] = {}
    for r in RESOURCE_NAMES:
        fits[r] = max(0, free[r]) // req[r] if req[r] > 0 else None
    fits["pods"] = max(0, free["pods"])
    bounded = {r: n for r, n in fits.items() if n is not None}
    binding = min(bounded, key=lambda r: (bounded[r], list(bounded).index(r)))
    return ScaleSetFit(ss.name, ss.overlay, ss.label, node.name, ss.max_runners, fits, bounded[binding], binding,
                       node.schedulable)


def labels(topo: Topology) -> list[LabelCapacity]:
    out = []
    for rc in topo.runner_classes:
        sets = topo.scale_sets_for(rc.name)
        if not sets:
            continue
        # What the nodes admit for this label: runners of its scale sets packed
        # together, per node, taking each set up to its cap.
        admits = peak = 0
        mine = {f"scale set {s.name}" for s in sets}
        for node_name in dict.fromkeys(s.node for s in sets):
            if node_name is None:
                continue
            node = topo.node(node_name)
            here = [s for s in sets if s.node == node_name]
            free = _free(topo, node_name, standing(topo, node_name))
            admits += _pack(dict(free), here)
            free = {r: node.allocatable.get(r) for r in (*RESOURCE_NAMES, "pods")}
            for lane, req, cap in _pinned(topo, node_name):
                if lane not in mine:
                    for r in free:
                        free[r] -= req[r] * cap
            peak += _pack(free, here)
        caps = sum(s.max_runners for s in sets)
        out.append(LabelCapacity(rc.name, [s.name for s in sets], caps, admits, max(0, caps - admits),
                                 sorted({s.overlay for s in sets}), peak, max(0, caps - peak)))
    return out


@dataclass(frozen=True)
class Scenario:
    """Runners asked of named scale sets at once, beside the standing pods."""

    asked: dict[str, int]
    admitted: dict[str, int]  # by requests, packed per node in the order asked
    queued: dict[str, int]
    limits: dict[str, dict[str, int]]  # per node: summed limits of what was admitted (contention, not admission)
    # Per queued set: the resources that refused its next runner ("pods" is
    # the scheduler's "Too many pods"); "cap" never appears: asks are capped.
    refused_by: dict[str, list[str]] = field(default_factory=dict)
    free: dict[str, dict[str, int]] = field(default_factory=dict)  # per node, after admission
    # Per fast-local pool the admitted runners claim from: how many it holds
    # and how many the scheduler admits beyond it (see :func:`pool_backing`).
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)


def _admit(free: dict[str, int], req: dict[str, int], count: int) -> tuple[int, list[str]]:
    """Runners of ``req`` admitted into ``free`` (mutated), up to ``count``, and
    the resources that refused the next one (empty when all were admitted)."""
    room = {r: free[r] // req[r] for r in free if req[r] > 0}
    n = max(0, min([count, *room.values()]))
    for r in free:
        free[r] -= n * req[r]
    return n, ([] if n == count else [r for r in room if room[r] <= n])


def scenario(topo: Topology, asked: dict[str, int]) -> Scenario:
    """What the scheduler admits when ``asked`` runners arrive together:
    requests decide admission; limits only say how hard admitted pods contend.
    For other pods outside the contract, ask it of ``topo.with_other_pods(...)``."""
    free = {n.name: _free(topo, n.name, standing(topo, n.name)) for n in topo.nodes}
    admitted: dict[str, int] = {}
    refused: dict[str, list[str]] = {}
    limits: dict[str, dict[str, int]] = {}
    for name, count in asked.items():
        ss = topo.scale_set(name)
        if ss.node is None:
            admitted[name] = 0
            refused[name] = ["unpinned"]
            continue
        admitted[name], why = _admit(free[ss.node], {**ss.envelope.pod_requests(), "pods": 1},
                                     min(count, ss.max_runners))
        if why:
            refused[name] = why
        lim = limits.setdefault(ss.node, {r: 0 for r in ("cpu", "memory")})
        for c in ss.envelope.containers:
            for r in lim:
                lim[r] += admitted[name] * (c.limits.get(r) or 0)
    for g in topo.gitlab_runners:  # standing GitLab runners contend too
        if g.node is not None:
            lim = limits.setdefault(g.node, {r: 0 for r in ("cpu", "memory")})
            for c in g.envelope.containers:
                for r in lim:
                    lim[r] += g.min_replicas * (c.limits.get(r) or 0)
    return Scenario(dict(asked), admitted, {k: asked[k] - admitted[k] for k in asked}, limits, refused, free,
                    pool_backing(topo, admitted))


@dataclass(frozen=True)
class PodCeiling:
    """The 2026-05-11 lesson, offline: a node's pod count as the admission
    limit, beside the spare CPU and memory elsewhere that does not help."""

    node: str
    slots: int
    standing: int  # the contract's standing pods (controller, listeners, GitLab at min)
    at_caps: int  # the contract's pods with every lane at its cap and the utility jobs running
    other_pods: int  # pods outside the contract, as the topology says
    spare_at_caps: int  # slots left beside ``at_caps`` and ``other_pods`` (negative: over the ceiling)
    # lane -> the fewest pods outside the contract at which the pod count
    # refuses the lane's next runner, asked at its cap beside the standing pods
    # (0: it already does).  Beyond it the lane queues on "Too many pods".
    refused_at: dict[str, int]
    elsewhere_free: dict[str, dict[str, int]]  # other schedulable nodes: cpu/memory beside their standing pods


def pod_ceiling(topo: Topology, node_name: str) -> PodCeiling:
    node = topo.node(node_name)
    contract = [lane for lane in standing(topo, node_name) if lane[0] != OTHER_PODS]
    free = _free(topo, node_name, contract)
    refused_at: dict[str, int] = {}
    for s in topo.scale_sets:
        if s.node != node_name:
            continue
        req = {**s.envelope.pod_requests(), "pods": 1}
        by_resources = min([s.max_runners] + [max(0, free[r]) // req[r] for r in RESOURCE_NAMES if req[r] > 0])
        # With k pods outside the contract, min(cap, resources, free pods - k)
        # runners fit; the pod count refuses one once free pods - k falls below
        # the cap (or ties the binding resource when that is under the cap).
        k = free["pods"] - by_resources + (1 if by_resources == s.max_runners else 0)
        refused_at[s.name] = max(0, k)
    at_caps = sum(count for lane, _, count in _pinned(topo, node_name) if lane != OTHER_PODS)
    elsewhere = {}
    for n in topo.nodes:
        if n.name != node_name and n.schedulable:
            f = _free(topo, n.name, standing(topo, n.name))
            elsewhere[n.name] = {"cpu": f["cpu"], "memory": f["memory"]}
    return PodCeiling(node_name, node.allocatable.pods, sum(c for _, _, c in contract), at_caps, node.other_pods,
                      node.allocatable.pods - at_caps - node.other_pods, refused_at, elsewhere)


def report(topo: Topology) -> dict[str, Any]:
    nodes = [{
        "node": n.name, "role": n.role, "schedulable": n.schedulable, "runner_target": n.runner_target,
        "allocatable": {"cpu": n.allocatable.cpu, "memory": n.allocatable.memory,
                        "ephemeral-storage": n.allocatable.ephemeral_storage, "pods": n.allocatable.pods},
        "taints": [str(t) for t in n.taints],
        "scale_sets": [asdict(fit(topo, s)) for s in topo.scale_sets if s.node == n.name],
    } for n in topo.nodes]
    for n, entry in zip(topo.nodes, nodes):
        entry["at_caps"] = asdict(node_demand(topo, n.name))
        if entry["scale_sets"]:
            entry["pod_ceiling"] = asdict(pod_ceiling(topo, n.name))
    return {"schema": "flywheel.tinyland.dev/capacity/v1", "nodes": nodes,
            "labels": [asdict(lc) for lc in labels(topo)], "pools": [asdict(p) for p in pools(topo)]}


def table(topo: Topology) -> str:
    lines = []
    for n in topo.nodes:
        a = n.allocatable
        state = "schedulable" if n.schedulable else "cordoned"
        lines.append(f"{n.name} ({n.role}; {state}): cpu {format_cpu(a.cpu)}, memory {human_bytes(a.memory)}, "
                     f"ephemeral-storage {human_bytes(a.ephemeral_storage)}, pods {a.pods}")
        rows = [fit(topo, s) for s in topo.scale_sets if s.node == n.name]
        if not rows:
            lines.append("  (no scale sets pinned here)")
        else:
            lines.append(f"  {'scale set':<34}{'cap':>5}{'cpu':>6}{'mem':>6}{'eph':>6}{'pods':>6}  fits  binds on")
            for f in rows:
                def cell(r: str) -> str:
                    v = f.fits.get(r)
                    return "-" if v is None else str(v)
                lines.append(f"  {f.scale_set:<34}{f.max_runners:>5}{cell('cpu'):>6}{cell('memory'):>6}"
                             f"{cell('ephemeral-storage'):>6}{cell('pods'):>6}  {f.admits:>4}  {f.binding}")
        d = node_demand(topo, n.name)
        if d.standing:
            listeners = sum(c for k, c in d.standing.items() if k.startswith("listener "))
            parts = [f"{c} {k}" for k, c in d.standing.items() if not k.startswith("listener ")]
            if listeners:
                parts.insert(1 if "arc controller" in d.standing else 0, f"{listeners} listener(s)")
            lines.append(f"  standing pods ({sum(d.standing.values())} of {a.pods} slots): " + ", ".join(parts))
        if d.lanes:
            over = ", ".join(d.overcommitted) or "none"
            lines.append(f"  all lanes at caps: cpu {format_cpu(d.at_caps['cpu'])}, memory "
                         f"{human_bytes(d.at_caps['memory'])}, ephemeral-storage "
                         f"{human_bytes(d.at_caps['ephemeral-storage'])}, pods {d.at_caps['pods']}; "
                         f"overcommitted: {over}")
        if rows:
            pc = pod_ceiling(topo, n.name)
            lines.append(f"  pod slots: {pc.standing} standing, {pc.at_caps} with every lane at its cap and the "
                         f"utility jobs running, {pc.other_pods} outside the contract (nodes.{n.name}.other_pods; "
                         f"not in the facts); {pc.spare_at_caps} spare at caps")
            room = "; ".join(f"{k} {format_cpu(v['cpu'])} cpu, {human_bytes(v['memory'])}"
                             for k, v in pc.elsewhere_free.items())
            lines.append(f"  pod ceiling (2026-05-11): \"Too many pods\" refuses a lane's next runner once this many "
                         f"pods outside the contract share {n.name}: "
                         + ", ".join(f"{k} {v}" + (" (reached)" if pc.other_pods >= v else "")
                                     for k, v in pc.refused_at.items())
                         + (f"; spare elsewhere ({room}) does not admit them" if room else ""))
        lines.append("")
    pool_text = pool_lines(topo)
    if pool_text:
        lines += [*pool_text, ""]
    lines.append(f"{'label':<24}{'caps':>6}{'admits':>8}{'debt':>6}{'peak':>6}{'debt@peak':>11}  scale sets (overlays)")
    for lc in labels(topo):
        flag = ("  <- global capacity debt" if lc.debt
                else "  <- queues at peak" if lc.debt_at_peak else "")
        lines.append(f"{lc.label:<24}{lc.summed_caps:>6}{lc.admits:>8}{lc.debt:>6}{lc.admits_at_peak:>6}"
                     f"{lc.debt_at_peak:>11}  {', '.join(lc.scale_sets)} ({', '.join(lc.overlays)}){flag}")
    lines.append("")
    lines.append("admits: the label's scale sets alone on their nodes; peak: while every other lane pinned there "
                 "runs at its cap.  Caps are per scale set: the scheduler is the only global backpressure.")
    return "\n".join(lines)


def scenario_table(topo: Topology, sc: Scenario) -> str:
    """The scenario in words: admitted, queued and why, and what is left per node."""
    lines = ["scenario: " + ", ".join(f"{k} {v}" for k, v in sc.asked.items())]
    for name, count in sc.asked.items():
        line = f"  {name:<34}{sc.admitted[name]:>4} admitted{sc.queued[name]:>4} queued"
        if sc.refused_by.get(name):
            why = ["Too many pods" if r == "pods" else f"Insufficient {r}" if r != "unpinned" else "no node"
                   for r in sc.refused_by[name]]
            line += f"  ({', '.join(why)} on {topo.scale_set(name).node or 'no node'})"
        lines.append(line)
    for n in topo.nodes:
        if not n.schedulable:
            continue
        f = sc.free[n.name]
        lines.append(f"  {n.name} left: cpu {format_cpu(f['cpu'])}, memory {human_bytes(f['memory'])}, "
                     f"ephemeral-storage {human_bytes(f['ephemeral-storage'])}, pods {f['pods']}"
                     + (f" ({n.other_pods} outside the contract)" if n.other_pods else ""))
    for name, p in sc.pools.items():
        size = "unstated" if p["capacity"] is None else human_bytes(p["capacity"])
        beyond = {k: v for k, v in p["unbacked"].items() if v}
        what = ("the pool holds them all" if not beyond else
                ("not shown backed (pool size unstated): " if p["capacity"] is None else
                 "admitted beyond the pool (they start, then fail on a full disk): ")
                + ", ".join(f"{k} {v}" for k, v in beyond.items()))
        lines.append(f"  fast-local pool {name} ({size}): admitted runners claim {human_bytes(p['claimed'])}; {what}")
    return "\n".join(lines)


# --- fast-local pools (2026-05-24) -------------------------------------------
# A node-local StorageClass (sting's local-path-sting-fast-ephemeral) is one
# finite pool the overflow lanes' per-runner claims share.  The scheduler does
# not count it: rancher.io/local-path is no CSI driver with storage capacity
# tracking (a CSIDriver object cannot even carry its name) and ignores claim
# sizes, so claims beyond the pool bind and the runner fails on a full disk
# instead of queueing.  The model is the only place the pool is counted.
# Provisioners known to ignore claim sizes (local-path-provisioner's README:
# "The capacity limit will be ignored for now").
UNTRACKED_PROVISIONERS = frozenset({"rancher.io/local-path"})


@dataclass(frozen=True)
class PoolLane:
    """One lane's claims on a fast-local pool."""

    scale_set: str
    label: str
    per_runner: int  # bytes one runner claims from the pool
    max_runners: int
    at_cap: int  # per_runner x max_runners
    backs_alone: int | None  # runners the pool holds with no other lane's claims (None: size unstated)
    backs_at_peak: int | None  # ... beside every other lane on the pool at its cap
    backed: bool  # the pool backs the cap beside the others at theirs (False while the size is unstated)


@dataclass(frozen=True)
class FastLocalPool:
    """A node-local StorageClass's pool and the claims every lane on it makes at caps."""

    storage_class: str
    node: str
    capacity: int | None  # None: unstated in the topology (nothing is shown backed)
    source: str
    lanes: list[PoolLane]
    at_caps: int  # summed claims with every lane at its cap
    short: int | None  # claims at caps beyond the pool (0: it backs them all; None: size unstated)
    unbacked: list[str]  # lanes whose caps the pool cannot back (or, unstated, does not show backed)


def claims_on(ss: ScaleSet, storage_class: str) -> int:
    """Bytes one runner of ``ss`` claims from ``storage_class``."""
    return sum(v.size for v in ss.volumes if v.storage_class == storage_class)


def pools(topo: Topology) -> list[FastLocalPool]:
    out = []
    for sc in topo.storage_classes:
        if not sc.fast_local or sc.node is None:
            continue
        sets = [(s, claims_on(s, sc.name)) for s in topo.scale_sets]
        sets = [(s, per) for s, per in sets if per]
        total = sum(per * s.max_runners for s, per in sets)
        lanes = []
        for s, per in sets:
            if sc.capacity is None:
                alone = peak = None
            else:
                others = total - per * s.max_runners
                alone, peak = sc.capacity // per, max(0, sc.capacity - others) // per
            lanes.append(PoolLane(s.name, s.label, per, s.max_runners, per * s.max_runners, alone, peak,
                                  peak is not None and peak >= s.max_runners))
        short = None if sc.capacity is None else max(0, total - sc.capacity)
        out.append(FastLocalPool(sc.name, sc.node, sc.capacity, sc.capacity_source, lanes, total, short,
                                 [lane.scale_set for lane in lanes if not lane.backed]))
    return out


def pool_backing(topo: Topology, admitted: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per fast-local pool: of the ``admitted`` runners (in order), how many
    the pool holds and how many the scheduler admits beyond it.  An unstated
    pool holds none: nothing shows it backs a claim."""
    out: dict[str, dict[str, Any]] = {}
    for sc in topo.storage_classes:
        if not sc.fast_local:
            continue
        left = sc.capacity
        backed: dict[str, int] = {}
        beyond: dict[str, int] = {}
        claimed = 0
        for name, n in admitted.items():
            per = claims_on(topo.scale_set(name), sc.name)
            if not per or not n:
                continue
            claimed += per * n
            held = 0 if left is None else min(n, left // per)
            if left is not None:
                left -= held * per
            backed[name], beyond[name] = held, n - held
        if claimed:
            out[sc.name] = {"node": sc.node, "capacity": sc.capacity, "claimed": claimed,
                            "backed": backed, "unbacked": beyond}
    return out


def pool_lines(topo: Topology) -> list[str]:
    """The fast-local pools in words, for :func:`table`."""
    lines = []
    for p in pools(topo):
        size = "UNSTATED" if p.capacity is None else human_bytes(p.capacity)
        lines.append(f"fast-local pool {p.storage_class} on {p.node}: capacity {size} ({p.source}); "
                     f"claims at caps {human_bytes(p.at_caps)}"
                     + ("" if p.short is None else f", {human_bytes(p.short)} beyond the pool" if p.short
                        else ", backed"))
        for lane in p.lanes:
            if p.capacity is None:
                verdict = "not shown backed (pool size unstated)"
            elif lane.backed:
                verdict = "backed"
            else:
                verdict = (f"CANNOT be backed: the pool holds {lane.backs_at_peak} beside the other lanes at "
                           f"their caps ({lane.backs_alone} alone)")
            lines.append(f"  {lane.scale_set:<34} cap {lane.max_runners:>3} x {format_bytes(lane.per_runner):>6} = "
                         f"{human_bytes(lane.at_cap):>10}  {verdict}")
    untracked = sorted({sc.provisioner for sc in topo.storage_classes
                        if sc.fast_local and sc.provisioner in UNTRACKED_PROVISIONERS})
    if untracked:
        lines.append(f"The scheduler does not count these pools ({', '.join(untracked)} has no CSI storage capacity "
                     "tracking and ignores claim sizes): runners beyond a pool start and fail on a full disk "
                     "instead of queueing.")
    return lines


# --- the design document's capacity table ------------------------------------

SCENARIOS_FILE = Path(__file__).with_name("capacity_scenarios.yaml")
# What the scheduler admits for ``asked`` ARC runners (per scale set, in
# order) beside the standing pods: the model's figure by default; the sim e2e
# plugs in the real kube-scheduler's count.
AdmittedBy = Callable[[Topology, dict[str, int]], dict[str, int]]


@dataclass(frozen=True)
class DocumentRow:
    """A row of the document's table, as written, with its figure parsed."""

    runners: str
    usage: str
    cpu: int | None = None  # millicores, where the document gives a figure
    memory: int | None = None  # bytes
    exceeds_cluster: bool = False


@dataclass(frozen=True)
class NamedScenario:
    name: str
    title: str
    document: DocumentRow
    gitlab: int  # GitLab runners the row counts
    arc: dict[str, int]  # ARC runners asked, per scale set


@dataclass(frozen=True)
class ReliefPath:
    label: str
    node: str
    lanes: list[str]  # the label's scale sets placed on ``node``; empty: the path has no lane
    elsewhere: dict[str, str | None]  # the label's other scale sets -> their node


def _scenario_error(source: str, path: str, expected: str, got: object) -> TopologyError:
    return TopologyError(f"{source}: {path}: expected {expected}, got {got!r}")


def named_scenarios(topo: Topology, path: Path | None = None) -> dict[str, NamedScenario]:
    """The document's rows (``capacity_scenarios.yaml``), checked against ``topo``."""
    import yaml

    from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu

    path = path or SCENARIOS_FILE
    src = str(path)
    data = yaml.safe_load(path.read_text()) or {}
    rows = data.get("scenarios")
    if not isinstance(rows, dict) or not rows:
        raise _scenario_error(src, "scenarios", "a mapping of named rows", rows)
    out = {}
    for name, row in rows.items():
        where = f"scenarios.{name}"
        if not isinstance(row, dict):
            raise _scenario_error(src, where, "a mapping", row)
        doc = row.get("document") or {}
        if not isinstance(doc.get("runners"), str) or not isinstance(doc.get("usage"), str):
            raise _scenario_error(src, f"{where}.document", "runners and usage as the document writes them", doc)
        try:
            cpu = parse_cpu(doc["cpu"]) if doc.get("cpu") is not None else None
            memory = parse_bytes(doc["memory"]) if doc.get("memory") is not None else None
        except ValueError:
            raise _scenario_error(src, f"{where}.document", "cpu and memory as Kubernetes quantities",
                                  doc) from None
        gitlab = row.get("gitlab", 0)
        if isinstance(gitlab, bool) or not isinstance(gitlab, int) or gitlab < 0:
            raise _scenario_error(src, f"{where}.gitlab", "a whole number", gitlab)
        arc = row.get("arc") or {}
        if not isinstance(arc, dict):
            raise _scenario_error(src, f"{where}.arc", "a mapping of scale set to runners", arc)
        known = {s.name for s in topo.scale_sets}
        for set_name, n in arc.items():
            if set_name not in known:
                raise _scenario_error(src, f"{where}.arc.{set_name}",
                                      "a scale set of the topology (" + ", ".join(sorted(known)) + ")", set_name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise _scenario_error(src, f"{where}.arc.{set_name}", "a whole number", n)
        out[name] = NamedScenario(name, str(row.get("title") or name),
                                  DocumentRow(doc["runners"], doc["usage"], cpu, memory,
                                              bool(doc.get("exceeds_cluster"))),
                                  gitlab, dict(arc))
    return out


def relief_paths(topo: Topology, path: Path | None = None) -> list[ReliefPath]:
    """The document's relief paths (a label admitted to a node) and the lanes
    the topology has for each."""
    import yaml

    data = yaml.safe_load((path or SCENARIOS_FILE).read_text()) or {}
    out = []
    for entry in data.get("relief_paths") or []:
        label, node = str(entry["label"]), str(entry["node"])
        sets = topo.scale_sets_for(label)
        out.append(ReliefPath(label, node, [s.name for s in sets if s.node == node],
                              {s.name: s.node for s in sets if s.node != node}))
    return out


@dataclass(frozen=True)
class CapacityRow:
    """One of the document's rows beside the model's figures."""

    scenario: str
    title: str
    document: dict[str, Any]
    gitlab: int  # ours: GitLab runners at their minimum replicas
    asked: dict[str, int]
    admitted: dict[str, int]  # the model's (requests, standing pods beside)
    queued: dict[str, int]
    scheduler: dict[str, int]  # what ``admitted_by`` says the scheduler admits
    scheduler_source: str  # "model" or the name of what ran it (e.g. "sim")
    requests: dict[str, int]  # cpu (millicores), memory (bytes): GitLab at min + admitted ARC runners
    limits: dict[str, int]
    allocatable: dict[str, int]  # cpu, memory of the nodes those runners are pinned to
    pools: dict[str, dict[str, Any]]
    reasons: list[str]  # why the document's figure and ours differ


def _sum_envelopes(items: list[tuple[Any, int]], kind: str) -> dict[str, int]:
    total = {"cpu": 0, "memory": 0}
    for envelope, n in items:
        for c in envelope.containers:
            for r in total:
                total[r] += n * (getattr(c, kind).get(r) or 0)
    return total


def _close(doc: int, ours: int) -> bool:
    # The document's figures are "~" estimates: within a tenth counts as the same.
    return abs(doc - ours) * 10 <= max(doc, ours)


def _fmt(res: dict[str, int]) -> str:
    mem = res["memory"] / 2**30
    return f"{res['cpu'] / 1000:g} vCPU / {mem:g}Gi" if mem == round(mem, 2) else \
        f"{res['cpu'] / 1000:g} vCPU / {human_bytes(res['memory'])}"


def capacity_row(topo: Topology, sc: NamedScenario, admitted_by: AdmittedBy | None = None,
                 source: str = "sim") -> CapacityRow:
    """The document's row ``sc`` beside requests, limits and what the scheduler
    admits: ``admitted_by(topo, asked)`` when given (the sim e2e passes the real
    kube-scheduler's count, ``source`` names it), else the model's figure."""
    result = scenario(topo, sc.arc)
    scheduler = dict(result.admitted) if admitted_by is None else dict(admitted_by(topo, dict(sc.arc)))
    gitlab = [(g.envelope, g.min_replicas) for g in topo.gitlab_runners]
    arc = [(topo.scale_set(k).envelope, n) for k, n in result.admitted.items()]
    requests, limits = _sum_envelopes(gitlab + arc, "requests"), _sum_envelopes(gitlab + arc, "limits")
    nodes = {g.node for g in topo.gitlab_runners} | {topo.scale_set(k).node for k in sc.arc}
    alloc = {r: sum(topo.node(n).allocatable.get(r) for n in sorted(x for x in nodes if x)) for r in ("cpu", "memory")}
    ours_gitlab = sum(g.min_replicas for g in topo.gitlab_runners)
    doc = sc.document
    reasons = []
    if doc.cpu is not None and doc.memory is not None:
        figure = {"cpu": doc.cpu, "memory": doc.memory}
        if all(_close(figure[r], limits[r]) for r in figure):
            reasons.append(f"the document's figure is the runners' limits (ours {_fmt(limits)}); the scheduler "
                           f"admits by requests ({_fmt(requests)})")
        elif all(_close(figure[r], requests[r]) for r in figure):
            reasons.append(f"the document's figure is the runners' requests (ours {_fmt(requests)})")
        else:
            reasons.append(f"the document's {doc.usage} matches neither our requests ({_fmt(requests)}) nor our "
                           f"limits ({_fmt(limits)})")
    if doc.exceeds_cluster:
        queued = sum(result.queued.values())
        if queued:
            why = sorted({r for rs in result.refused_by.values() for r in rs})
            reasons.append(f"{queued} runner(s) queue, as the document says (refused on {', '.join(why)})")
        else:
            over = [r for r in limits if limits[r] > alloc[r]]
            reasons.append(
                f"the document says it exceeds the cluster and builds queue; at the facts' allocatable "
                f"(platform-facts.md, 2026-05-03) the scheduler admits all {sum(result.admitted.values())} by "
                f"requests ({_fmt(requests)})"
                + (f" while the limits ({_fmt(limits)}) overcommit {', '.join(over)}: contention, not a queue"
                   if over else f" and even the limits ({_fmt(limits)}) fit the {_fmt(alloc)} of "
                   f"{', '.join(sorted(x for x in nodes if x))}: no queue at this size"))
    if sc.gitlab != ours_gitlab:
        reasons.append(f"the document counts {sc.gitlab} GitLab runners; the topology keeps {ours_gitlab} "
                       "at their minimum replicas")
    if scheduler != result.admitted:
        reasons.append(f"the scheduler ({source}) admits {scheduler}, the model {result.admitted}")
    for name, p in result.pools.items():
        beyond = sum(p["unbacked"].values())
        if beyond:
            reasons.append(f"{beyond} admitted runner(s) are not backed by fast-local pool {name}"
                           + (" (size unstated)" if p["capacity"] is None else ""))
    return CapacityRow(sc.name, sc.title, asdict(doc), ours_gitlab, dict(sc.arc), dict(result.admitted),
                       dict(result.queued), scheduler, "model" if admitted_by is None else source,
                       requests, limits, alloc, result.pools, reasons)


def capacity_table(topo: Topology, rows: list[CapacityRow], relief: list[ReliefPath]) -> str:
    """The document's rows beside ours, the reasons they differ, and the relief paths."""
    src = ", ".join(sorted({r.scheduler_source for r in rows}))
    lines = ["capacity table: runner-topology.txt \"Capacity Planning\" beside the model (runners' requests and "
             "limits at the facts' allocatable)",
             f"{'scenario':<10}{'document: runners':<24}{'document: usage':<32}{'ours':<20}{'requests':<20}"
             f"{'limits':<20}admitted ({src})"]
    for r in rows:
        ours = f"{r.gitlab} GitLab + {sum(r.admitted.values())} ARC"
        asked = sum(r.asked.values())
        lines.append(f"{r.scenario:<10}{r.document['runners']:<24}{r.document['usage']:<32}{ours:<20}"
                     f"{_fmt(r.requests):<20}{_fmt(r.limits):<20}{sum(r.scheduler.values())} of {asked}"
                     + (f" ({', '.join(f'{k} {v}' for k, v in r.scheduler.items())})" if r.scheduler else ""))
        lines += [f"  why they differ: {why}" for why in r.reasons]
    for p in relief:
        if p.lanes:
            lines.append(f"relief path {p.label} -> {p.node}: {', '.join(p.lanes)}")
        else:
            where = ", ".join(f"{k} on {v or 'no node'}" for k, v in p.elsewhere.items()) or "no scale set"
            lines.append(f"relief path {p.label} -> {p.node} (runner-topology.txt): NO LANE; the facts keep "
                         f"{where}: its runners queue there, not on {p.node}")
    return "\n".join(lines)
