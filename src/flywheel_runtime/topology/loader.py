"""Reading and validating ``topology.yaml`` into the model (see the package docs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import TopologyError
from flywheel_runtime.topology.model import (
    HOSTNAME_LABEL,
    Allocatable,
    Arc,
    CleanupPolicy,
    ContainerEnvelope,
    Controller,
    DindLayout,
    Envelope,
    GitLabExecutor,
    GitLabRunner,
    LabelTaxonomy,
    Listener,
    ManagedApply,
    Network,
    Node,
    NodeSelectorRequirement,
    Overlay,
    Placement,
    Resources,
    RunnerClass,
    RunnerPod,
    ScaleSet,
    Scratch,
    Service,
    ServicePort,
    StorageClass,
    Taint,
    Toleration,
    Topology,
    UtilityJobs,
    Volume,
    WarmPool,
    WarmPoolSchedule,
)

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yaml")


def default_path() -> Path:
    env = os.environ.get("FLYWHEEL_TOPOLOGY")
    return Path(env) if env else DEFAULT_TOPOLOGY


def load(path: str | Path | None = None) -> Topology:
    """Load and validate a topology file (default: the shipped one)."""
    p = Path(path) if path is not None else default_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(f"{p}: no such topology file") from None
    except IsADirectoryError:
        raise TopologyError(f"{p}: is a directory, expected a topology YAML file") from None
    except OSError as exc:
        raise TopologyError(f"{p}: cannot read topology file: {exc.strerror}") from None
    import yaml  # deferred: only the topology path pays for it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError(f"{where}: YAML syntax error: {problem}") from None
    return load_data(data, source=str(p))


def load_data(data: Any, source: str = "<topology>") -> Topology:
    """Validate already-parsed data (a dict) and build the model."""
    from flywheel_runtime.topology.schema import SchemaViolation, validate

    try:
        doc = validate(data)
    except SchemaViolation as exc:
        raise TopologyError(f"{source}: {exc}") from None
    return _build(doc, source, data)


def _fail(source: str, path: str, expected: str, got: object) -> TopologyError:
    return TopologyError(f"{source}: {path}: expected {expected}, got {got!r}")


def _resources(d: dict[str, Any] | None) -> Resources:
    d = d or {}
    return Resources(cpu=d.get("cpu"), memory=d.get("memory"), ephemeral_storage=d.get("ephemeral-storage"))


def _envelope(containers: dict[str, Any]) -> Envelope:
    return Envelope(tuple(
        ContainerEnvelope(name, _resources(c["requests"]), _resources(c["limits"]))
        for name, c in containers.items()
    ))


def _executor(doc: dict[str, Any], name: str, cls: dict[str, Any], source: str) -> GitLabExecutor | None:
    """A GitLab class's executor, its image keys and hint profile resolved."""
    ex = cls["executor"]
    if ex is None:
        return None
    path = f"runner_classes.{name}.executor"
    if cls["forge"] != "gitlab":
        raise _fail(source, path, "absent (only GitLab classes name an executor)", ex)
    images, profiles = doc["images"], doc["hint_profiles"]
    for field_, key in [("job_image", ex["job_image"]), *(("services", k) for k in ex["services"])]:
        if key not in images:
            raise _fail(source, f"{path}.{field_}", "one of the images " + ", ".join(images), key)
    if ex["hints"] is not None and ex["hints"] not in profiles:
        raise _fail(source, f"{path}.hints", "one of the hint profiles " + ", ".join(profiles), ex["hints"])
    env = tuple(sorted(profiles[ex["hints"]].items())) if ex["hints"] else ()
    return GitLabExecutor(images[ex["job_image"]], ex["privileged"], tuple(images[k] for k in ex["services"]), env)


def _placement(entry: dict[str, Any], nodes: dict[str, Node], source: str, path: str) -> Placement:
    node_name = entry.get("node")
    selector = dict(entry.get("node_selector") or {})
    explicit = entry.get("tolerations") is not None
    tolerations = tuple(Toleration(t["key"], t["operator"], t["value"], t["effect"] or "")
                        for t in entry.get("tolerations") or [])
    affinity = tuple(
        tuple(NodeSelectorRequirement(r["key"], r["operator"], tuple(r["values"])) for r in term["match_expressions"])
        for term in entry.get("affinity") or [])
    for i, term in enumerate(affinity):
        for j, r in enumerate(term):
            if (r.operator in ("In", "NotIn")) != bool(r.values):
                raise _fail(source, f"{path}.affinity[{i}].match_expressions[{j}].values",
                            f"values exactly when the operator is In or NotIn (operator {r.operator})", list(r.values))
    if node_name is not None:
        if node_name not in nodes:
            raise _fail(source, f"{path}.node", "one of the nodes " + ", ".join(nodes), node_name)
        selector = {HOSTNAME_LABEL: node_name, **selector}
        if not explicit:  # derive: tolerate exactly the pinned node's taints
            tolerations = tuple(Toleration(t.key, "Equal", t.value, t.effect) for t in nodes[node_name].taints)
    return Placement(node_name, selector, tolerations, explicit, affinity)


def _cidrs(values: list[str], source: str, path: str) -> list[str]:
    import ipaddress

    for i, v in enumerate(values):
        try:
            ipaddress.ip_network(v)
        except ValueError:
            raise _fail(source, f"{path}[{i}]", "a CIDR like 10.0.0.0/8 (host bits zero)", v) from None
    return values


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _build(doc: dict[str, Any], source: str, raw: Any) -> Topology:
    nodes = {
        name: Node(
            name=name, role=n["role"], labels=dict(n["labels"]),
            taints=tuple(Taint(t["key"], t["value"], t["effect"]) for t in n["taints"]),
            allocatable=Allocatable(n["allocatable"]["cpu"], n["allocatable"]["memory"],
                                    n["allocatable"]["ephemeral-storage"], n["allocatable"]["pods"]),
            schedulable=n["schedulable"], runner_target=n["runner_target"],
            scratch=Scratch(n["scratch"]["storage_class"], n["scratch"]["root_request_max"]) if n["scratch"] else None,
            other_pods=n["other_pods"],
        )
        for name, n in doc["nodes"].items()
    }
    storage_classes = tuple(StorageClass(name, s["provisioner"], s["binding_mode"], s["reclaim_policy"], s["node"],
                                         None if s["capacity"] in (None, "unstated") else s["capacity"],
                                         s["capacity_source"] or "")
                            for name, s in doc["storage_classes"].items())
    for sc in storage_classes:
        if sc.node is not None and sc.node not in nodes:
            raise _fail(source, f"storage_classes.{sc.name}.node", "one of the nodes " + ", ".join(nodes), sc.node)
        # A node-local pool is finite: its claims at caps are counted against
        # its size, so the size (or an explicit "unstated") and its source are required.
        raw_sc = doc["storage_classes"][sc.name]
        for key in ("capacity", "capacity_source"):
            if sc.fast_local and raw_sc[key] is None:
                raise _fail(source, f"storage_classes.{sc.name}.{key}",
                            "a value for a class bound to one node (its pool's size, or 'unstated', and where the "
                            "figure comes from)", None)
    sc_names = {s.name for s in storage_classes}
    for node in nodes.values():
        if node.scratch is not None and node.scratch.storage_class not in sc_names:
            raise _fail(source, f"nodes.{node.name}.scratch.storage_class",
                        "one of the storage classes " + ", ".join(sorted(sc_names)), node.scratch.storage_class)
        if node.other_pods > node.allocatable.pods:
            raise _fail(source, f"nodes.{node.name}.other_pods",
                        f"at most the node's {node.allocatable.pods} pod slots", node.other_pods)
    overlays = tuple(Overlay(name, o["github_config_url"], o["github_config_secret"], o["listener_node"])
                     for name, o in doc["overlays"].items())
    for o in overlays:
        if o.listener_node is not None and o.listener_node not in nodes:
            raise _fail(source, f"overlays.{o.name}.listener_node", "one of the nodes " + ", ".join(nodes),
                        o.listener_node)
    warm_pools = {name: WarmPool(name, w["timezone"], tuple(WarmPoolSchedule(s["cron"], s["min_runners"])
                                                            for s in w["schedules"]))
                  for name, w in doc["warm_pools"].items()}
    images = dict(doc["images"])
    runner_classes = []
    for name, c in doc["runner_classes"].items():
        if c["image"] not in images:
            raise _fail(source, f"runner_classes.{name}.image", "one of the images " + ", ".join(images), c["image"])
        if c["baseline_node"] is not None and c["baseline_node"] not in nodes:
            raise _fail(source, f"runner_classes.{name}.baseline_node", "one of the nodes " + ", ".join(nodes),
                        c["baseline_node"])
        runner_classes.append(RunnerClass(name, c["forge"], c["use"], c["image"], frozenset(c["devices"]),
                                          tuple(c["tags"]), c["baseline_node"], c["dri_cards"], c["api_server"],
                                          _executor(doc, name, c, source)))
    classes = {c.name: c for c in runner_classes}
    profiles = doc["hint_profiles"]

    def volumes_of(entry: dict[str, Any], path: str, containers: dict[str, Any]) -> tuple[Volume, ...]:
        out = []
        for i, v in enumerate(entry["volumes"]):
            if v["storage_class"] not in sc_names:
                raise _fail(source, f"{path}.volumes[{i}].storage_class",
                            "one of the storage classes " + ", ".join(sorted(sc_names)), v["storage_class"])
            if v["container"] not in containers:
                raise _fail(source, f"{path}.volumes[{i}].container",
                            "one of this lane's containers " + ", ".join(containers), v["container"])
            out.append(Volume(v["name"], v["mount_path"], v["size"], v["storage_class"], v["seed_nix"], v["container"]))
        return tuple(out)

    arc_doc = doc["arc"]
    ctl = arc_doc["controller"]
    for key, path in ((ctl["image"], "arc.controller.image"), (arc_doc["dind"]["image"], "arc.dind.image")):
        if key not in images:
            raise _fail(source, path, "one of the images " + ", ".join(images), key)
    controller = Controller(ctl["name"], arc_doc["namespace"], ctl["replicas"], ctl["metrics_port"],
                            images[ctl["image"]], ctl["node"], _placement(ctl, nodes, source, "arc.controller"),
                            _envelope(ctl["containers"]))
    dd = arc_doc["dind"]
    arc = Arc(arc_doc["version"], arc_doc["namespace"], controller, DindLayout(
        images[dd["image"]], dd["docker_group_gid"], dd["wait_for_docker_s"], dd["startup_period_s"],
        dd["startup_failure_threshold"], _version(doc["kubernetes_version"]) >= (1, 29),
        _envelope({"init-dind-externals": dd["externals"]})))
    ma = arc_doc["managed_apply"]
    for i, label in enumerate([*ma["freeze_labels"], *ma["runs_on"]]):
        if label not in doc["runner_classes"]:
            field_ = (f"freeze_labels[{i}]" if i < len(ma["freeze_labels"])
                      else f"runs_on[{i - len(ma['freeze_labels'])}]")
            raise _fail(source, f"arc.managed_apply.{field_}", "one of the runner classes", label)
    arc = Arc(arc.version, arc.namespace, arc.controller, arc.dind,
              ManagedApply(tuple(ma["freeze_labels"]), ma["drain_timeout_s"], ma["settle_timeout_s"],
                           tuple(ma["runs_on"])))
    listener_defaults = arc_doc["listeners"]

    def listener_of(s: dict[str, Any], path: str) -> Listener:
        own = s["listener"] or {}
        # The set's own placement keys replace the defaults' as a group (a set
        # that names a node does not inherit the default's node selector).
        placed = own if any(own.get(k) is not None for k in ("node", "node_selector", "tolerations", "affinity")) \
            else listener_defaults
        where = f"{path}.listener" if placed is own else "arc.listeners"
        containers = own.get("containers") or listener_defaults["containers"] or {}
        return Listener(s["name"], arc.namespace, placed.get("node"), _placement(placed, nodes, source, where),
                        _envelope(containers))

    scale_sets = []
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(doc["scale_sets"]):
        path = f"scale_sets[{i}]"
        if (s["namespace"], s["name"]) in seen:
            raise _fail(source, f"{path}.name", "a scale set name unique in its namespace", s["name"])
        seen.add((s["namespace"], s["name"]))
        if s["overlay"] not in doc["overlays"]:
            raise _fail(source, f"{path}.overlay", "one of the overlays " + ", ".join(doc["overlays"]), s["overlay"])
        if "runner" not in s["containers"]:
            raise _fail(source, f"{path}.containers", "a 'runner' container", sorted(s["containers"]))
        if s["warm_pool"] is not None and s["warm_pool"] not in warm_pools:
            raise _fail(source, f"{path}.warm_pool", "one of the warm pools " + ", ".join(warm_pools), s["warm_pool"])
        if s["hints"] is not None and s["hints"] not in profiles:
            raise _fail(source, f"{path}.hints", "one of the hint profiles " + ", ".join(profiles), s["hints"])
        if s["min_runners"] > s["max_runners"]:
            raise _fail(source, f"{path}.min_runners", f"at most max_runners ({s['max_runners']})", s["min_runners"])
        rc = classes.get(s["label"])
        scale_sets.append(ScaleSet(
            name=s["name"], overlay=s["overlay"], label=s["label"],
            # Published labels come from the runner class unless written out.
            labels=tuple(s["labels"]) if s["labels"] is not None else (rc.labels if rc else (s["label"],)),
            namespace=s["namespace"], min_runners=s["min_runners"], max_runners=s["max_runners"],
            node=s["node"], placement=_placement(s, nodes, source, path),
            envelope=_envelope(s["containers"]), volumes=volumes_of(s, path, s["containers"]),
            devices=rc.devices if rc else frozenset(), image=images[rc.image] if rc else images.get("nix", ""),
            hints=dict(profiles[s["hints"]]) if s["hints"] else {},
            warm_pool=warm_pools[s["warm_pool"]] if s["warm_pool"] else None,
            listener=listener_of(s, path), overflow=s["overflow"],
            run_as_user=s["run_as_user"] if s["run_as_user"] is not None else doc["runner_pod"]["run_as_user"],
            runtime_class=s["runtime_class"], dri_cards=rc.dri_cards if rc else False,
            api_server=rc.api_server if rc else False,
        ))
    gitlab = []
    gitlab_classes = [c.name for c in runner_classes if c.forge == "gitlab"]
    for i, g in enumerate(doc["gitlab_runners"]):
        path = f"gitlab_runners[{i}]"
        if g["min_replicas"] > g["max_replicas"]:
            raise _fail(source, f"{path}.min_replicas", f"at most max_replicas ({g['max_replicas']})", g["min_replicas"])
        if "runner" not in g["containers"]:
            raise _fail(source, f"{path}.containers", "a 'runner' container", sorted(g["containers"]))
        cls_name = g["runner_class"] or g["name"]
        rc = classes.get(cls_name)
        if rc is None or rc.forge != "gitlab":
            field_ = "runner_class" if g["runner_class"] else "name"
            raise _fail(source, f"{path}.{field_}", "one of the GitLab runner classes " + ", ".join(gitlab_classes),
                        cls_name)
        gitlab.append(GitLabRunner(
            name=g["name"], namespace=g["namespace"], min_replicas=g["min_replicas"], max_replicas=g["max_replicas"],
            cpu_target_percent=g["cpu_target_percent"], scale_down_stabilization_s=g["scale_down_stabilization_s"],
            node=g["node"], placement=_placement(g, nodes, source, path), envelope=_envelope(g["containers"]),
            runner_class=cls_name, image=images[rc.image], run_as_user=g["run_as_user"], fs_group=g["fs_group"],
            memory_target_percent=g["memory_target_percent"], executor=rc.executor,
        ))
    rp, tax, cl = doc["runner_pod"], doc["label_taxonomy"], doc["cleanup"]
    services = {name: Service(name, s["namespace"], s["url"], s["cache"], dict(s["pods"]),
                              tuple(ServicePort(p["port"], p["protocol"]) for p in s["ports"]),
                              tuple(s["clients"]), tuple(s["client_namespaces"]))
                for name, s in (doc["services"] or {}).items()}
    for svc in services.values():
        for i, client in enumerate(svc.clients):
            if client != "runners" and client not in services:
                raise _fail(source, f"services.{svc.name}.clients[{i}]",
                            "runners or one of the services " + ", ".join(services), client)
        if (svc.clients or svc.client_namespaces) and not (svc.pods and svc.ports):
            raise _fail(source, f"services.{svc.name}", "pods and ports for a service with clients",
                        "pods" if not svc.pods else "ports")
    uj = doc["utility_jobs"]
    if uj["image"] not in images:
        raise _fail(source, "utility_jobs.image", "one of the images " + ", ".join(images), uj["image"])
    net = doc["network"]
    network = Network(tuple(_cidrs(net["internal_cidrs"], source, "network.internal_cidrs")),
                      net["dns"]["namespace"], dict(net["dns"]["pods"]), net["dns"]["port"],
                      tuple(_cidrs(net["api_server"]["cidrs"], source, "network.api_server.cidrs")),
                      net["api_server"]["port"])
    return Topology(
        source=source,
        namespaces=dict(doc["namespaces"]),
        services=services,
        network=network,
        utility_jobs=UtilityJobs(images[uj["image"]], uj["run_as_user"], _envelope({"job": uj["container"]})),
        nodes=tuple(nodes.values()),
        storage_classes=storage_classes,
        overlays=overlays,
        label_taxonomy=LabelTaxonomy(tax["prefix"], tuple(tax["base"]), tuple(tax["suffixes"])),
        runner_pod=RunnerPod(tuple(rp["command"]), rp["run_as_user"], rp["priority_class"]["name"],
                             rp["priority_class"]["value"], dict(rp["env"]), (rp["hooks"] or {}).get("job_started"),
                             (rp["hooks"] or {}).get("job_completed"), rp["work_owner"],
                             tuple(rp["root_capabilities"]), tuple(rp["seed_capabilities"])),
        images=images,
        warm_pools=tuple(warm_pools.values()),
        cleanup=CleanupPolicy(cl["schedule"], cl["concurrency_policy"], cl["terminating_after_s"],
                              cl["succeeded_after_s"], cl["failed_after_s"]),
        runner_classes=tuple(runner_classes),
        scale_sets=tuple(scale_sets),
        gitlab_runners=tuple(gitlab),
        arc=arc,
        kubernetes_version=doc["kubernetes_version"],
        raw=raw if isinstance(raw, dict) else {},
    )
