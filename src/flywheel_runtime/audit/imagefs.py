"""Kubelet filesystem headroom: rootfs (nodefs), imagefs and containerfs.

Storage capacity and kubelet eviction capacity are different things: a
30 TiB-class storage node can still hit DiskPressure on a 69.9 GiB root
filesystem.  This audit reads the kubelet's stats summary
(``/api/v1/nodes/NODE/proxy/stats/summary``: ``node.fs``,
``node.runtime.imageFs``, ``node.runtime.containerFs``) and classifies each
filesystem:

* critical: available below the kubelet's hard eviction threshold
  (``nodefs.available<10%``, ``imagefs.available<15%``; containerfs shares the
  imagefs signal), so the kubelet is evicting or about to;
* warning: available below the warning level (20 %), i.e. inside the margin
  above the threshold where a burst of image pulls or job scratch tips it over;
* healthy: otherwise.

The node's verdict is the worst of its filesystems.  bumble's 2026-04-29
figures (11.4 GiB, 16.3 % of 69.9 GiB) are "warning".  Live, the node's own
``Ready`` and ``DiskPressure`` conditions are reported beside the figures (as
the document's audits quote them), and ``DiskPressure=True`` is critical
whatever the figures say: the kubelet is already evicting.

Exit codes of ``flywheel-runtime audit imagefs``: 0 healthy or warning, 1
critical; with ``--fail-on warning`` a warning exits 1 too.  A stats summary
that is not valid JSON or lacks ``node.fs`` is one error line (exit 7 for a
missing file, exit 12 for a malformed or unavailable summary).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime.errors import ClusterError, SourceMissingError

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
_RANK = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}

# Kubelet defaults (hard eviction): nodefs.available<10%, imagefs.available<15%.
NODEFS_EVICTION_PERCENT = 10.0
IMAGEFS_EVICTION_PERCENT = 15.0
WARNING_PERCENT = 20.0


@dataclass(frozen=True)
class Thresholds:
    nodefs_percent: float = NODEFS_EVICTION_PERCENT
    imagefs_percent: float = IMAGEFS_EVICTION_PERCENT
    containerfs_percent: float = IMAGEFS_EVICTION_PERCENT
    warning_percent: float = WARNING_PERCENT

    def eviction(self, fs: str) -> float:
        return {"rootfs": self.nodefs_percent, "imagefs": self.imagefs_percent,
                "containerfs": self.containerfs_percent}[fs]


@dataclass(frozen=True)
class FsReport:
    name: str  # rootfs, imagefs, containerfs
    source: str  # the summary field it was read from
    available_bytes: int
    capacity_bytes: int
    available_percent: float
    eviction_percent: float
    warning_percent: float
    status: str


@dataclass(frozen=True)
class NodeReport:
    node: str
    status: str
    filesystems: list[FsReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The node's Ready and DiskPressure conditions ("True", "False", "Unknown"); empty offline.
    conditions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "flywheel.tinyland.dev/imagefs-audit/v1", **asdict(self)}


def _bytes(summary_field: dict[str, Any], key: str, where: str) -> int:
    v = summary_field.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ClusterError(f"malformed stats summary: {where}.{key} must be a non-negative number, got {v!r}")
    return int(v)


def classify(available_percent: float, eviction_percent: float, warning_percent: float) -> str:
    if available_percent < eviction_percent:
        return CRITICAL
    if available_percent < warning_percent:
        return WARNING
    return HEALTHY


def _fs(name: str, where: str, data: Any, th: Thresholds) -> FsReport:
    if not isinstance(data, dict):
        raise ClusterError(f"malformed stats summary: {where} must be an object, got {type(data).__name__}")
    avail, cap = _bytes(data, "availableBytes", where), _bytes(data, "capacityBytes", where)
    if cap == 0:
        raise ClusterError(f"malformed stats summary: {where}.capacityBytes is 0")
    if avail > cap:
        raise ClusterError(f"malformed stats summary: {where}.availableBytes {avail} exceeds capacityBytes {cap}")
    pct = 100.0 * avail / cap
    evict = th.eviction(name)
    return FsReport(name, where, avail, cap, round(pct, 2), evict, th.warning_percent,
                    classify(pct, evict, th.warning_percent))


CONDITIONS = ("Ready", "DiskPressure")


def node_conditions(node: Any) -> dict[str, str]:
    """Pure: the Ready and DiskPressure conditions of a Node (Kubernetes JSON)."""
    conds = ((node or {}).get("status") or {}).get("conditions") or []
    out = {c.get("type"): str(c.get("status")) for c in conds if c.get("type") in CONDITIONS}
    return {k: out.get(k, "Unknown") for k in CONDITIONS}


def with_conditions(report: NodeReport, conditions: dict[str, str]) -> NodeReport:
    """The report with the node's conditions; DiskPressure=True makes it critical."""
    status, notes = report.status, list(report.notes)
    if conditions.get("DiskPressure") == "True":
        status = CRITICAL
        notes.append("the kubelet reports DiskPressure=True: it is evicting pods now")
    if conditions.get("Ready") not in (None, "True"):
        notes.append(f"the node is not Ready (Ready={conditions.get('Ready')})")
    return NodeReport(report.node, status, report.filesystems, notes, dict(conditions))


def fetch_conditions(cluster: Client, node: str) -> dict[str, str]:
    from flywheel_runtime.kube import REQUEST_TIMEOUT_S, api_errors

    with api_errors(cluster, f"reading node {node}"):
        obj = cluster.core.read_node(node, _request_timeout=REQUEST_TIMEOUT_S)
    return node_conditions(cluster.to_dict(obj))


def audit_summary(summary: Any, thresholds: Thresholds | None = None, node: str | None = None) -> NodeReport:
    """Classify a kubelet stats summary (already parsed JSON)."""
    th = thresholds or Thresholds()
    if not isinstance(summary, dict) or not isinstance(summary.get("node"), dict):
        raise ClusterError("malformed stats summary: no top-level 'node' object (expected the kubelet's "
                           "/stats/summary JSON)")
    n = summary["node"]
    name = n.get("nodeName") or node or "?"
    if node and n.get("nodeName") and n["nodeName"] != node:
        raise ClusterError(f"stats summary is for node {n['nodeName']!r}, not {node!r}")
    if "fs" not in n:
        raise ClusterError(f"malformed stats summary for {name}: node.fs is missing")
    notes: list[str] = []
    fss = [_fs("rootfs", "node.fs", n["fs"], th)]
    runtime = n.get("runtime") or {}
    if not isinstance(runtime, dict):
        raise ClusterError(f"malformed stats summary for {name}: node.runtime must be an object")
    image = runtime.get("imageFs")
    if image is None:
        # Without a reported imageFs the images live on the root filesystem.
        notes.append("no node.runtime.imageFs: images share the root filesystem")
        fss.append(_fs("imagefs", "node.fs", n["fs"], th))
    else:
        fss.append(_fs("imagefs", "node.runtime.imageFs", image, th))
    container = runtime.get("containerFs")
    if container is None:
        # The kubelet reports containerFs only for a split image filesystem;
        # otherwise writable layers live on imageFs.
        notes.append("no node.runtime.containerFs: writable layers share the image filesystem")
        src = fss[-1]
        fss.append(FsReport("containerfs", src.source, src.available_bytes, src.capacity_bytes,
                            src.available_percent, th.containerfs_percent, th.warning_percent,
                            classify(src.available_percent, th.containerfs_percent, th.warning_percent)))
    else:
        fss.append(_fs("containerfs", "node.runtime.containerFs", container, th))
    worst = max((f.status for f in fss), key=_RANK.__getitem__)
    return NodeReport(name, worst, fss, notes)


def load_stats_file(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise SourceMissingError(f"stats file {p} does not exist")
    try:
        return json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(f"malformed stats summary in {p}: not JSON ({exc})") from exc


def fetch_summary(cluster: Client, node: str) -> Any:
    """GET /api/v1/nodes/NODE/proxy/stats/summary through the API server."""
    from kubernetes.client.rest import ApiException

    from flywheel_runtime.kube import REQUEST_TIMEOUT_S, api_errors

    try:
        with api_errors(cluster, f"reading node {node}", passthrough=(404,)):
            cluster.core.read_node(node, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as exc:
        raise ClusterError(f"node {node!r} does not exist on {cluster.server}") from exc
    try:
        with api_errors(cluster, f"reading the stats summary of {node}", passthrough=(400, 404, 500, 502, 503, 504)):
            resp = cluster.core.connect_get_node_proxy_with_path(node, "stats/summary", _preload_content=False,
                                                                  _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as exc:
        detail = ""
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            detail = str(exc.body or "")[:200]
        raise ClusterError(f"the kubelet on node {node} did not serve its stats summary (HTTP {exc.status}: "
                           f"{detail or exc.reason}); pass --stats-file with a saved summary") from exc
    raw = resp.data
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(f"malformed stats summary from node {node}: not JSON") from exc


def render_text(r: NodeReport) -> str:
    gib = 1024 ** 3
    conds = ", ".join(f"{k}={v}" for k, v in r.conditions.items())
    lines = [f"node {r.node}: {r.status}" + (f" ({conds})" if conds else "")]
    for f in r.filesystems:
        lines.append(f"  {f.name:<12} {f.available_bytes / gib:8.1f} GiB free of {f.capacity_bytes / gib:8.1f} GiB "
                     f"({f.available_percent:5.1f} %)  eviction <{f.eviction_percent:g} %, warning <"
                     f"{f.warning_percent:g} %  {f.status}  [{f.source}]")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
