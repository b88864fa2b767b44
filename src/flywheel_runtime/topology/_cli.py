"""``flywheel-runtime topology ...`` (argparse only; heavy imports stay in handlers)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

RENDER_TARGETS = ("pod", "helm-values", "controller-values", "scale-sets", "listeners", "kind-config", "nodes",
                  "gitlab", "gitlab-values", "warm-pool", "cleanup", "storage", "rbac", "admission", "network-policy", "posture",
                  "cluster", "actionlint", "all")


def _topology_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", metavar="FILE", default=None,
                   help="topology file (default: $FLYWHEEL_TOPOLOGY or the shipped topology.yaml)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    top = sub.add_parser("topology", help="the placement contract: check, capacity, render")
    tsub = top.add_subparsers(dest="topology_command", metavar="SUBCOMMAND")
    tsub.required = True

    p = tsub.add_parser("check", help="runner-scale contract guard: one line per violation, exit 1 on any")
    p.add_argument("file", nargs="?", default=None, help="topology file (same as --topology)")
    _topology_arg(p)
    p.set_defaults(handler=_check)

    p = tsub.add_parser("capacity", help="how many runners fit where; global capacity debt per label")
    _topology_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--other-pods", metavar="NODE=N", action="append", default=[],
                   help="pods outside the contract on NODE (control plane, DaemonSets, services; overrides "
                        "nodes.NODE.other_pods), e.g. honey=90: where the pod ceiling binds; repeatable")
    p.add_argument("--scenario", metavar="SCALE_SET=N|NAME", action="append", default=[],
                   help="also ask N runners of SCALE_SET at once (repeatable, in order): what is admitted, "
                        "what queues, and which resource refused it; or NAME, a row of the design document's "
                        "capacity table (quiet, normal, burst): the document's figure beside our requests, "
                        "limits and what the scheduler admits, and why they differ")
    p.set_defaults(handler=_capacity)

    p = tsub.add_parser("render", help="render manifests from the model as YAML")
    p.add_argument("target", choices=RENDER_TARGETS)
    p.add_argument("scale_set", nargs="?", metavar="NAME",
                   help="scale set (pod, helm-values) or GitLab runner (gitlab-values)")
    p.add_argument("--github-config-url", metavar="URL", default=None,
                   help="helm-values: override the owner overlay's githubConfigUrl")
    p.add_argument("--gitlab-url", metavar="URL", default=None,
                   help="gitlab-values: the GitLab instance (the chart's gitlabUrl)")
    _topology_arg(p)
    p.set_defaults(handler=_render)

    p = tsub.add_parser("schema", help="print the topology file's JSON Schema")
    p.add_argument("--topology", metavar="FILE", default=None,
                   help="also validate this topology file first (exit 3 when it fails)")
    p.set_defaults(handler=_schema)

    p = tsub.add_parser("show", help="print the validated model summary")
    _topology_arg(p)
    p.set_defaults(handler=_show)


def _check(args: argparse.Namespace) -> int:
    from flywheel_runtime.topology import load
    from flywheel_runtime.topology.check import check, root_note

    if args.file and args.topology and args.file != args.topology:
        from flywheel_runtime.errors import ExitCode, FlywheelError

        raise FlywheelError("topology check: give the file either as FILE or as --topology, not both",
                            exit_code=ExitCode.USAGE)
    topo = load(args.file or args.topology)
    violations = check(topo)
    for v in violations:
        print(v)
    if (note := root_note(topo)) is not None:  # not a violation: the design runs these lanes' jobs as root
        print(note, file=sys.stderr)
    if violations:
        print(f"{topo.source}: {len(violations)} violation(s) of the runner-scale contract", file=sys.stderr)
        return 1
    print(f"{topo.source}: runner-scale contract holds ({len(topo.scale_sets)} scale sets, "
          f"{len(topo.gitlab_runners)} GitLab runners, {len(topo.nodes)} nodes)", file=sys.stderr)
    # An unstated fast-local pool cannot fail the rule (nothing to hold the caps
    # against), but no cap on it is shown backed either: say so, beside the verdict.
    from flywheel_runtime.topology.capacity import pools

    for pool in pools(topo):
        if pool.capacity is None and pool.lanes:
            print(f"{topo.source}: note: fast-local pool {pool.storage_class} states no size "
                  f"(storage_classes.{pool.storage_class}.capacity: unstated): the caps of "
                  f"{', '.join(pool.unbacked)} are not shown backed (topology capacity)", file=sys.stderr)
    return 0


def _pairs(flag: str, values: list[str]) -> dict[str, int]:
    from flywheel_runtime.errors import ExitCode, FlywheelError

    out: dict[str, int] = {}
    for v in values:
        name, sep, count = v.partition("=")
        if not sep or not name or not count.isdigit():
            raise FlywheelError(f"topology capacity: {flag} wants NAME=N with N a whole number, got {v!r}",
                                exit_code=ExitCode.USAGE)
        out[name] = int(count)
    return out


def _capacity(args: argparse.Namespace) -> int:
    import dataclasses

    from flywheel_runtime.errors import ExitCode, FlywheelError
    from flywheel_runtime.topology import capacity, load

    topo = load(args.topology)
    others = _pairs("--other-pods", args.other_pods)
    named = [v for v in args.scenario if "=" not in v]
    asked = _pairs("--scenario", [v for v in args.scenario if "=" in v])
    table_rows = capacity.named_scenarios(topo) if named else {}
    for name in named:
        if name not in table_rows:
            raise FlywheelError(f"topology capacity: --scenario: no scenario named {name!r} (known: "
                                f"{', '.join(table_rows)}; or SCALE_SET=N)", exit_code=ExitCode.USAGE)
    names = {n.name for n in topo.nodes}
    for name, n in others.items():
        if name not in names:
            raise FlywheelError(f"topology capacity: --other-pods: no node named {name!r} "
                                f"(known: {', '.join(sorted(names))})", exit_code=ExitCode.USAGE)
        if n > topo.node(name).allocatable.pods:
            raise FlywheelError(f"topology capacity: --other-pods {name}={n}: more than the node's "
                                f"{topo.node(name).allocatable.pods} pod slots", exit_code=ExitCode.USAGE)
    for name in asked:
        topo.scale_set(name)  # an unknown name fails here, with the known ones
    topo = topo.with_other_pods(others)
    result = capacity.scenario(topo, asked) if asked else None
    # The model's admitted figure: the sim e2e holds it against the real scheduler.
    rows = [capacity.capacity_row(topo, table_rows[name]) for name in dict.fromkeys(named)]
    relief = capacity.relief_paths(topo) if rows else []
    if args.json:
        doc = capacity.report(topo)
        if result is not None:
            doc["scenario"] = dataclasses.asdict(result)
        if rows:
            doc["capacity_table"] = {"rows": [dataclasses.asdict(r) for r in rows],
                                     "relief_paths": [dataclasses.asdict(p) for p in relief]}
        print(json.dumps(doc, indent=2))
    else:
        print(capacity.table(topo))
        if result is not None:
            print()
            print(capacity.scenario_table(topo, result))
        if rows:
            print()
            print(capacity.capacity_table(topo, rows, relief))
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from flywheel_runtime.audit import actionlint
    from flywheel_runtime.errors import ExitCode, FlywheelError
    from flywheel_runtime.topology import load, render
    from flywheel_runtime.topology.devices import runtime_classes

    topo = load(args.topology)
    if args.target == "gitlab-values" and not args.scale_set:
        raise FlywheelError("topology render gitlab-values needs a RUNNER "
                            f"(one of: {', '.join(g.name for g in topo.gitlab_runners)})", exit_code=ExitCode.USAGE)
    needs_name = args.target in ("pod", "helm-values")
    if needs_name and not args.scale_set:
        raise FlywheelError(f"topology render {args.target} needs a SCALE_SET "
                            f"(one of: {', '.join(s.name for s in topo.scale_sets)})", exit_code=ExitCode.USAGE)
    # Target -> the documents it renders, each from the model alone.
    renderers: dict[str, Callable[[], list[object]]] = {
        "pod": lambda: [render.pod(topo, args.scale_set)],
        "helm-values": lambda: [render.helm_values(topo, args.scale_set, github_config_url=args.github_config_url)],
        "controller-values": lambda: [render.controller_values(topo)],
        "scale-sets": lambda: list(render.autoscaling_runner_sets(topo)),
        "listeners": lambda: [render.listener_pod(topo, s.name) for s in topo.scale_sets],
        "kind-config": lambda: [render.kind_config(topo)],
        "nodes": lambda: list(render.node_objects(topo)),
        "gitlab": lambda: list(render.gitlab_deployments(topo)),
        "gitlab-values": lambda: [render.gitlab_values(topo, args.scale_set,
                                                       gitlab_url=args.gitlab_url or render.GITLAB_URL_PLACEHOLDER)],
        "warm-pool": lambda: list(render.warm_pool_cronjobs(topo)),
        "cleanup": lambda: [render.cleanup_cronjob(topo)],
        "storage": lambda: list(render.storage_classes(topo)),
        "rbac": lambda: list(render.operator_rbac(topo)),
        "admission": lambda: list(render.device_admission(topo)) + list(render.warm_pool_admission(topo)),
        "network-policy": lambda: list(render.network_policies(topo)),
        # least privilege, whole: device classes and their admission, the jobs' RBAC and admission, NetworkPolicies
        "posture": lambda: (list(runtime_classes(topo)) + list(render.device_admission(topo))
                            + list(render.warm_pool_admission(topo)) + list(render.operator_rbac(topo))
                            + list(render.network_policies(topo))),
        "cluster": lambda: list(render.cluster_objects(topo)),
        # an actionlint.yaml (not a manifest): the self-hosted labels the scale sets publish
        "actionlint": lambda: [actionlint.config(topo)],
        "all": lambda: (list(render.cluster_objects(topo)) + list(render.autoscaling_runner_sets(topo))
                        + [render.pod(topo, s.name) for s in topo.scale_sets]),
    }
    docs = renderers[args.target]()
    if args.target == "pod":
        sys.stdout.write(render.arc_additions_comment(topo, args.scale_set))
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=len(docs) > 1))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from flywheel_runtime.topology.schema import json_schema

    if args.topology:
        from flywheel_runtime.topology import load

        load(args.topology)
    print(json.dumps(json_schema(), indent=2))
    return 0


def _show(args: argparse.Namespace) -> int:
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    for ss in topo.scale_sets:
        devices = ",".join(sorted(ss.devices)) or "-"
        print(f"{ss.name:<34} label={ss.label:<22} overlay={ss.overlay:<9} node={ss.node} "
              f"min={ss.min_runners} max={ss.max_runners} devices={devices}")
    return 0
