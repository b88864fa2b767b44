"""Shared-label capacity audit: per workflow-facing label, who publishes it.

ARC caps are per scale set: two owner overlays publishing one label each get
their own cap, and only the scheduler is global backpressure.  This audit
groups scale sets by the label they publish and reports each one's overlay,
cap, current runners, envelope and placement, the label's summed caps, and
whether the pinned node(s) can admit those summed caps -- the excess is the
label's *global capacity debt* (honest queueing, not label debt).  Lanes that
claim from a node-local (fast-local) pool also show whether the pool backs
their caps: a stated pool that cannot is flagged (as ``topology check`` does),
an unstated one is a note.

The capacity math is the topology package's
(:func:`flywheel_runtime.topology.capacity.labels` and ``fit``); this module
only arranges it per label and node and joins live AutoscalingRunnerSet state.

Live mode also flags what the topology does not describe: scale sets whose
live maxRunners differs from the topology (cap drift), whose containers' live
requests and limits differ from the topology's envelope (envelope drift), or
whose runner pods or listener land elsewhere than the topology places them
(placement drift), and live scale sets the topology does not know
(repo-shaped residue, migration debt).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flywheel_runtime.topology import capacity
from flywheel_runtime.topology.model import ScaleSet, Topology
from flywheel_runtime.topology.quantity import format_bytes, format_cpu


def _quantities(res: Any) -> dict[str, str]:
    return {r: (format_cpu(v) if r == "cpu" else format_bytes(v)) for r, v in res.items()}


def _envelope(ss: ScaleSet) -> dict[str, Any]:
    return {c.name: {"requests": _quantities(c.requests), "limits": _quantities(c.limits)}
            for c in ss.envelope.containers}


def _placement(ss: ScaleSet) -> dict[str, Any]:
    return {"node": ss.node, "node_selector": dict(ss.placement.node_selector),
            "tolerations": [t.as_k8s() for t in ss.placement.tolerations]}


def _placement_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {"nodeSelector": spec.get("nodeSelector") or {}, "tolerations": spec.get("tolerations") or [],
            "affinity": spec.get("affinity") or {}}


def drift(topo: Topology, ss: ScaleSet, live: dict[str, Any]) -> list[str]:
    """Pure: how a live AutoscalingRunnerSet's envelopes and placement differ
    from what the topology renders for it (beyond caps)."""
    from flywheel_runtime.topology import render

    want = render.autoscaling_runner_set(topo, ss.name)["spec"]
    have = live.get("spec") or {}
    key = f"{ss.namespace}/{ss.name}"
    out = []
    tmpl_want = (want.get("template") or {}).get("spec") or {}
    tmpl_have = (have.get("template") or {}).get("spec") or {}

    def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {c.get("name"): c.get("resources") or {} for c in
                [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}

    live_c = containers(tmpl_have)
    for name, res in containers(tmpl_want).items():
        if name in live_c and live_c[name] != res:
            out.append(f"envelope drift: {key} container {name}: live {_show(live_c[name])} != topology {_show(res)}")
        elif name not in live_c:
            out.append(f"envelope drift: {key} container {name} is missing live")
    for what, w, h in (("runner pods", tmpl_want, tmpl_have),
                       ("listener", (want.get("listenerTemplate") or {}).get("spec") or {},
                        (have.get("listenerTemplate") or {}).get("spec") or {})):
        pw, ph = _placement_of(w), _placement_of(h)
        for field_ in ("nodeSelector", "tolerations", "affinity"):
            if pw[field_] != ph[field_]:
                out.append(f"placement drift: {key} {what}: live {field_} {_show(ph[field_])} != topology "
                           f"{_show(pw[field_])}")
    return out


def _show(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _live_label(ars: dict[str, Any], topo: Topology) -> str:
    """The workflow-facing label a live scale set publishes: its first taxonomy label."""
    spec = ars.get("spec") or {}
    prefix = topo.label_taxonomy.prefix + "-"
    for lbl in spec.get("runnerScaleSetLabels") or []:
        if str(lbl).startswith(prefix) and topo.runner_class(str(lbl)) is not None:
            return str(lbl)
    for lbl in spec.get("runnerScaleSetLabels") or []:
        if str(lbl).startswith(prefix):
            return str(lbl)
    return str(spec.get("runnerScaleSetName") or (ars.get("metadata") or {}).get("name", "?"))


def audit(topo: Topology, live: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The per-label report; ``live`` is the cluster's AutoscalingRunnerSets (None = offline)."""
    by_key = {((a.get("metadata") or {}).get("namespace", ""), (a.get("metadata") or {}).get("name", "")): a
              for a in (live or [])}
    known = {(ss.namespace, ss.name) for ss in topo.scale_sets}
    totals = {lc.label: lc for lc in capacity.labels(topo)}
    # Fast-local pools (2026-05-24), per lane: what topology check's
    # fast-local-pool rule flags is a flag here; an unstated pool is a note.
    pool_lanes = {lane.scale_set: (p, lane) for p in capacity.pools(topo) for lane in p.lanes}
    out_labels: list[dict[str, Any]] = []
    for rc in topo.runner_classes:
        sets = topo.scale_sets_for(rc.name)
        if not sets:
            continue
        rows, flags = [], []
        current_total: int | None = 0 if live is not None else None
        for ss in sets:
            f = capacity.fit(topo, ss)
            row: dict[str, Any] = {
                "scale_set": ss.name, "overlay": ss.overlay, "namespace": ss.namespace,
                "min_runners": ss.min_runners, "max_runners": ss.max_runners,
                "admits_alone": f.admits, "binding": f.binding,
                "envelope": _envelope(ss), "pod_requests": _quantities(ss.envelope.pod_requests()),
                "placement": _placement(ss), "current_runners": None, "live": None,
            }
            if live is not None:
                ars = by_key.get((ss.namespace, ss.name))
                if ars is None:
                    row["live"] = "missing"
                    flags.append(f"{ss.namespace}/{ss.name} is in the topology but not in the cluster")
                else:
                    spec, status = ars.get("spec") or {}, ars.get("status") or {}
                    cur = int(status.get("currentRunners") or 0)
                    row["current_runners"], row["live"] = cur, "present"
                    row["live_max_runners"] = spec.get("maxRunners")
                    row["live_min_runners"] = spec.get("minRunners")
                    assert current_total is not None
                    current_total += cur
                    if spec.get("maxRunners") != ss.max_runners:
                        flags.append(f"cap drift: {ss.namespace}/{ss.name} live maxRunners {spec.get('maxRunners')}"
                                     f" != topology {ss.max_runners}")
                    row["drift"] = drift(topo, ss, ars)
                    flags += row["drift"]
            rows.append(row)
        # Per pinned node: can the node admit the summed caps of this label's
        # sets there?  Same math as capacity.labels, on that node's subset.
        per_node = []
        for node in dict.fromkeys(s.node for s in sets):
            subset = tuple(s for s in sets if s.node == node)
            sub = dataclasses.replace(topo, scale_sets=subset)
            lc = next(iter(capacity.labels(sub)), None)
            caps = sum(s.max_runners for s in subset)
            admits = lc.admits if lc else 0
            per_node.append({"node": node, "scale_sets": [s.name for s in subset], "summed_caps": caps,
                             "admits": admits, "admits_summed_caps": admits >= caps,
                             "schedulable": topo.node(node).schedulable if node else False})
        pools, notes = [], []
        for ss in sets:
            if ss.name not in pool_lanes:
                continue
            p, lane = pool_lanes[ss.name]
            pools.append({"scale_set": ss.name, "storage_class": p.storage_class, "node": p.node,
                          "capacity": p.capacity, "per_runner": format_bytes(lane.per_runner),
                          "at_cap": format_bytes(lane.at_cap), "backs_alone": lane.backs_alone,
                          "backs_at_peak": lane.backs_at_peak, "backed": lane.backed})
            if p.capacity is None:
                notes.append(f"fast-local pool {p.storage_class}: size unstated, so {ss.name}'s cap "
                             f"{ss.max_runners} ({format_bytes(lane.at_cap)} of claims) is not shown backed")
            elif not lane.backed:
                flags.append(f"fast-local pool {p.storage_class} cannot back {ss.name}'s cap {ss.max_runners}: "
                             f"{format_bytes(p.capacity)} holds {lane.backs_at_peak} beside the other lanes at "
                             f"their caps ({lane.backs_alone} alone)")
        total = totals[rc.name]
        overlays = sorted({s.overlay for s in sets})
        if total.debt:
            flags.append(f"global capacity debt: summed caps {total.summed_caps} across overlay(s) "
                         f"{', '.join(overlays)} exceed the {total.admits} runner(s) the pinned node(s) admit")
        residue = []
        if live is not None:
            for (ns, name), ars in sorted(by_key.items()):
                if (ns, name) not in known and _live_label(ars, topo) == rc.name:
                    spec = ars.get("spec") or {}
                    residue.append({"namespace": ns, "scale_set": name, "max_runners": spec.get("maxRunners"),
                                    "current_runners": int((ars.get("status") or {}).get("currentRunners") or 0)})
                    flags.append(f"{ns}/{name} publishes {rc.name} but is not in the topology (migration debt)")
        out_labels.append({
            "label": rc.name, "overlays": overlays, "scale_sets": rows, "summed_caps": total.summed_caps,
            "current_runners": current_total, "admits": total.admits, "debt": total.debt,
            "nodes": per_node, "residue": residue, "flags": flags, "pools": pools, "notes": notes,
        })
    unlabelled = []
    if live is not None:
        labelled = {r["scale_set"] for lbl in out_labels for r in lbl["residue"]}
        for (ns, name), ars in sorted(by_key.items()):
            if (ns, name) not in known and name not in labelled:
                unlabelled.append({"namespace": ns, "scale_set": name, "label": _live_label(ars, topo)})
    return {"schema": "flywheel.tinyland.dev/label-audit/v1", "mode": "offline" if live is None else "live",
            "labels": out_labels, "unknown_scale_sets": unlabelled}


def render_text(report: dict[str, Any]) -> str:
    lines = [f"label capacity audit ({report['mode']})"]
    for lbl in report["labels"]:
        cur = "-" if lbl["current_runners"] is None else str(lbl["current_runners"])
        debt = f"  DEBT {lbl['debt']}" if lbl["debt"] else ""
        lines.append(f"{lbl['label']}: caps {lbl['summed_caps']} (overlays {', '.join(lbl['overlays'])}), "
                     f"current {cur}, admits {lbl['admits']}{debt}")
        for r in lbl["scale_sets"]:
            c = "-" if r["current_runners"] is None else str(r["current_runners"])
            req = ", ".join(f"{k} {v}" for k, v in r["pod_requests"].items() if v not in ("0",))
            lines.append(f"  {r['scale_set']:<34} overlay {r['overlay']:<9} node {r['placement']['node'] or '-':<7} "
                         f"cap {r['max_runners']:>3} current {c:>3}  requests {req}")
        for n in lbl["nodes"]:
            ok = "admits" if n["admits_summed_caps"] else "CANNOT admit"
            lines.append(f"  node {n['node']}: {ok} summed caps {n['summed_caps']} (fits {n['admits']})")
        for r in lbl["residue"]:
            lines.append(f"  residue {r['namespace']}/{r['scale_set']} cap {r['max_runners']}")
        lines += [f"  ! {f}" for f in lbl["flags"]]
        lines += [f"  note: {n}" for n in lbl.get("notes", [])]
    for u in report["unknown_scale_sets"]:
        lines.append(f"unknown live scale set {u['namespace']}/{u['scale_set']} (label {u['label']})")
    return "\n".join(lines)
