"""CLI commands of flywheel_runtime.audit (argparse only; heavy imports stay in handlers).

Exit codes (errors.py holds the table; these commands add no new numbers):

=============================  ================================================
``audit imagefs``              0 healthy or warning, 1 critical (``--fail-on
                               warning``: warning exits 1 too); 7 stats file
                               missing; 12 malformed or unavailable summary;
                               4 no kubeconfig / cluster unreachable
``audit labels``               0 report; 1 with ``--fail-on-debt`` when a label
                               has global capacity debt, a cap its fast-local
                               pool cannot back, or live cap, envelope
                               or placement drift / a topology scale set
                               missing live; 3 topology
                               invalid; 4 kubeconfig / unreachable
``audit pod-slots``            0 report; 1 with ``--fail-on-ceiling`` when
                               the pods outside the contract already reach
                               a lane's pod ceiling; 7 ``--pods-file``
                               missing; 12 malformed; 3 topology; 4 / 12
                               cluster
``audit alert-rules``          0 printed (``--check``: promtool accepted); 1
                               promtool rejected the rules; 9 promtool build
``prove listener-caps``        0 every listener reflects its set's caps; 1 a
                               stable drift on a settled listener; 13 still
                               unresolved at ``--deadline``; 4 / 12 cluster
``reap leaked-runners``        0 dry run, or all deletions done and settled;
                               13 deleted CRs still present after
                               ``--settle-timeout``; 4 / 12 cluster
``cleanup runner-pods``        0; 4 / 12 cluster
``warm-pool reconcile``        0; 3 unknown scale set or no warm pool;
                               4 / 12 cluster
``managed-apply plan``         0 the plan view (nothing changed); 16 it would
                               run on a lane it quiesces; 4 / 12 cluster
``managed-apply run``          0 applied, caps restored from the topology,
                               listeners proven (or nothing to apply); 1 the
                               listener proof failed; 13 the drain (or the
                               proof) ran out of time; 14 the fresh plan
                               changed under it; 15 interrupted (SIGINT or
                               SIGTERM); 16 scope conflict; 3 / 4 / 12
                               (13, 14, 15: caps restored from the snapshot)
=============================  ================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # datetime is imported when a time is parsed, not on every CLI start
    import datetime as dt
    from pathlib import Path


def _iso(value: str) -> dt.datetime:
    from flywheel_runtime._files import parse_time

    try:
        t = parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2026-05-04T13:00:00Z)") from exc
    if t is None:
        raise argparse.ArgumentTypeError("an empty time (e.g. 2026-05-04T13:00:00Z)")
    return t


def _seconds(value: str) -> float:
    try:
        v = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from exc
    if v < 0:
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {value}")
    return v


def _percent(value: str) -> float:
    v = _seconds(value)
    if v > 100:
        raise argparse.ArgumentTypeError(f"percent must be within 0-100, got {value}")
    return v


def _common(p: argparse.ArgumentParser, *, cluster: bool = True, topology: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if cluster:
        p.add_argument("--kubeconfig", metavar="FILE", default=None,
                       help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster service account)")
    if topology:
        p.add_argument("--topology", metavar="FILE", default=None,
                       help="topology file (default: $FLYWHEEL_TOPOLOGY or the shipped topology.yaml)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``audit``, ``prove``, ``reap``, ``cleanup`` and ``warm-pool``."""
    top = sub.add_parser("audit", help="read-only operator audits: kubelet imagefs, shared labels, alert rules")
    asub = top.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True

    p = asub.add_parser("imagefs", help="kubelet rootfs/imagefs/containerfs headroom: healthy, warning, critical")
    p.add_argument("--node", required=True, help="node name")
    p.add_argument("--stats-file", metavar="FILE", help="offline: a saved /stats/summary JSON instead of the cluster")
    p.add_argument("--fail-on", choices=("critical", "warning"), default="critical",
                   help="lowest status that exits 1 (default: critical)")
    p.add_argument("--nodefs-threshold", type=_percent, default=None, metavar="PCT",
                   help="nodefs.available eviction threshold (default 10)")
    p.add_argument("--imagefs-threshold", type=_percent, default=None, metavar="PCT",
                   help="imagefs.available (and containerfs) eviction threshold (default 15)")
    p.add_argument("--warning-percent", type=_percent, default=None, metavar="PCT",
                   help="warn below this much free (default 20)")
    _common(p)
    p.set_defaults(handler=_imagefs)

    p = asub.add_parser("labels", help="per workflow-facing label: publishing scale sets, caps, global capacity debt")
    p.add_argument("--offline", action="store_true", help="from the topology only, no cluster")
    p.add_argument("--fail-on-debt", action="store_true",
                   help="exit 1 on global capacity debt or live drift (default: report only)")
    p.add_argument("--all-namespaces", action="store_true",
                   help="look for scale sets in every namespace (default: the topology's scale-set namespaces)")
    _common(p, topology=True)
    p.set_defaults(handler=_labels)

    p = asub.add_parser("pod-slots", help="live pods per node, in and outside the contract: where the pod "
                                          "ceiling stands for each lane (2026-05-11)")
    p.add_argument("--pods-file", metavar="FILE",
                   help="offline: saved `kubectl get pods -A -o json` output instead of the cluster")
    p.add_argument("--fail-on-ceiling", action="store_true",
                   help="exit 1 when pods outside the contract already reach a lane's ceiling")
    _common(p, topology=True)
    p.set_defaults(handler=_pod_slots)

    p = asub.add_parser("alert-rules", help="the ARC controller's PrometheusRule, rendered from the topology")
    p.add_argument("--format", choices=("prometheusrule", "rule-file"), default="prometheusrule",
                   help="a PrometheusRule object, or a plain Prometheus rule file")
    p.add_argument("--check", action="store_true", help="run `promtool check rules` (builds promtool if needed)")
    _common(p, cluster=False, topology=True)
    p.set_defaults(handler=_alert_rules)

    top = sub.add_parser("prove", help="settle-aware post-apply proofs")
    psub = top.add_subparsers(dest="prove_command", metavar="SUBCOMMAND")
    psub.required = True
    p = psub.add_parser("listener-caps", help="every AutoscalingListener reflects its scale set's min/max")
    p.add_argument("--grace", type=_seconds, default=60.0, metavar="S",
                   help="a listener or config secret younger than this is still settling (default 60)")
    p.add_argument("--deadline", type=_seconds, default=300.0, metavar="S",
                   help="fail whatever is unresolved after this long (default 300)")
    p.add_argument("--interval", type=_seconds, default=2.0, metavar="S", help="poll interval (default 2)")
    p.add_argument("--namespace", default=None, help="scale sets' namespace (default: all)")
    p.add_argument("--listener-namespace", default=None, help="listeners' namespace (default: all)")
    _common(p)
    p.set_defaults(handler=_prove_listener_caps)

    top = sub.add_parser("reap", help="delete provably leaked ARC objects (dry run unless --apply)")
    rsub = top.add_subparsers(dest="reap_command", metavar="SUBCOMMAND")
    rsub.required = True
    p = rsub.add_parser("leaked-runners", help="idle EphemeralRunners with no job beyond their set's desired count")
    p.add_argument("--apply", action="store_true", help="delete (default: dry run)")
    p.add_argument("--namespace", default=None, help="runners' namespace (default: all)")
    p.add_argument("--settle-timeout", type=_seconds, default=60.0, metavar="S",
                   help="bounded wait for deleted runners to go (default 60)")
    _common(p)
    p.set_defaults(handler=_reap)

    top = sub.add_parser("cleanup", help="the runner cleanup policy (the runner-cleanup CronJob)")
    csub = top.add_subparsers(dest="cleanup_command", metavar="SUBCOMMAND")
    csub.required = True
    p = csub.add_parser("runner-pods", help="delete old Succeeded/Failed pods, force-delete long-Terminating ones")
    p.add_argument("--now", type=_iso, default=None, metavar="ISO", help="evaluate at this instant (default: now)")
    p.add_argument("--apply", action="store_true", help="delete (default: dry run)")
    p.add_argument("--namespace", action="append", default=None,
                   help="namespace to clean (repeatable; default: the topology's runner namespaces)")
    _common(p, topology=True)
    p.set_defaults(handler=_cleanup)

    _register_managed_apply(sub)

    top = sub.add_parser("warm-pool", help="scheduled minRunners override (the warm-pool CronJobs)")
    wsub = top.add_subparsers(dest="warm_pool_command", metavar="SUBCOMMAND")
    wsub.required = True
    p = wsub.add_parser("reconcile", help="patch each warm-pool scale set's minRunners to its schedule")
    p.add_argument("--now", type=_iso, default=None, metavar="ISO", help="evaluate at this instant (default: now)")
    p.add_argument("--apply", action="store_true", help="patch (default: dry run)")
    p.add_argument("--scale-set", default=None, help="only this scale set")
    _common(p, topology=True)
    p.set_defaults(handler=_warm_pool)


def _register_managed_apply(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    top = sub.add_parser("managed-apply", help="the managed ARC apply: scope, reap, freeze, drain, guard, apply, "
                                               "restore, prove")
    msub = top.add_subparsers(dest="managed_apply_command", metavar="SUBCOMMAND")
    msub.required = True
    for name, help_ in (("plan", "dry run: what the procedure would scope, freeze, drain, apply and restore"),
                        ("run", "run the procedure (exit codes: see `flywheel-runtime managed-apply run -h`)")):
        p = msub.add_parser(name, help=help_)
        p.add_argument("--runs-on", metavar="LABEL", default=None,
                       help="the runner class this runs on (default: $FLYWHEEL_RUNNER_CLASS); refused when quiesced")
        p.add_argument("--drain-timeout", type=_seconds, default=None, metavar="S",
                       help="bounded drain for busy shared runners (default: the topology's, 1200)")
        p.add_argument("--settle-timeout", type=_seconds, default=None, metavar="S",
                       help="bounded wait for sets and listeners after the reap (default: the topology's, 120)")
        p.add_argument("--interval", type=_seconds, default=2.0, metavar="S", help="poll interval (default 2)")
        p.add_argument("--listener-namespace", default=None, help="listeners' namespace (default: all)")
        if name == "run":
            p.add_argument("--snapshot", metavar="FILE", default=None,
                           help="also write the cap snapshot here (the failure rollback)")
            p.add_argument("--prove-grace", type=_seconds, default=60.0, metavar="S",
                           help="listener proof grace window (default 60)")
            p.add_argument("--prove-deadline", type=_seconds, default=300.0, metavar="S",
                           help="listener proof deadline (default 300)")
            p.add_argument("--chart", metavar="DIR", default=None,
                           help="the gha-runner-scale-set chart the apply upgrades each changed set's Helm release "
                                "with (default: $FLYWHEEL_ARC_CHARTS/gha-runner-scale-set)")
            p.add_argument("--apply-command", metavar="CMD", default=None,
                           help="apply with this instead of helm: run by sh -c once per changed set, with "
                                "FLYWHEEL_APPLY_SCALE_SET, _NAMESPACE, _ACTION, _VALUES (the chart values file, caps "
                                "0 while frozen) and _MANIFEST (the AutoscalingRunnerSet the chart makes of them)")
        _common(p, topology=True)
        p.set_defaults(handler=_managed_apply)


def _managed_apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flywheel_runtime.audit import managed_apply as ma
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    cfg = topo.arc.managed_apply if topo.arc else None
    opts = ma.Options(
        runs_on=args.runs_on or ma.default_runs_on(),
        drain_timeout_s=args.drain_timeout if args.drain_timeout is not None else
        (cfg.drain_timeout_s if cfg else 1200.0),
        settle_timeout_s=args.settle_timeout if args.settle_timeout is not None else
        (cfg.settle_timeout_s if cfg else 120.0),
        interval_s=args.interval, listener_namespace=args.listener_namespace, topology_path=args.topology,
        snapshot_path=Path(args.snapshot) if getattr(args, "snapshot", None) else None,
        prove_grace_s=getattr(args, "prove_grace", 60.0), prove_deadline_s=getattr(args, "prove_deadline", 300.0),
        apply_command=getattr(args, "apply_command", None), chart=_chart(getattr(args, "chart", None)),
    )
    proc = ma.Procedure(connect(args.kubeconfig), topo, opts)
    try:
        proc.plan_view() if args.managed_apply_command == "plan" else proc.run()
    finally:  # the report, also when a step fails (its error line and exit code follow)
        report = getattr(proc, "last_report", None)
        if report is not None:
            _emit(args, report.to_dict(), ma.render_text(report))
    return 0


def _chart(given: str | None) -> Path | None:
    import os
    from pathlib import Path

    if given:
        return Path(given)
    charts = os.environ.get("FLYWHEEL_ARC_CHARTS")
    return Path(charts) / "gha-runner-scale-set" if charts else None


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


def _now(args: argparse.Namespace) -> dt.datetime:
    import datetime as dt

    return args.now or dt.datetime.now(dt.timezone.utc)


def _imagefs(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import imagefs

    th = imagefs.Thresholds()
    th = imagefs.Thresholds(
        nodefs_percent=th.nodefs_percent if args.nodefs_threshold is None else args.nodefs_threshold,
        imagefs_percent=th.imagefs_percent if args.imagefs_threshold is None else args.imagefs_threshold,
        containerfs_percent=th.containerfs_percent if args.imagefs_threshold is None else args.imagefs_threshold,
        warning_percent=th.warning_percent if args.warning_percent is None else args.warning_percent,
    )
    conditions: dict[str, str] = {}
    if args.stats_file:
        summary = imagefs.load_stats_file(args.stats_file)
    else:
        from flywheel_runtime.kube import connect

        cluster = connect(args.kubeconfig)
        summary = imagefs.fetch_summary(cluster, args.node)
        conditions = imagefs.fetch_conditions(cluster, args.node)
    report = imagefs.audit_summary(summary, th, node=args.node)
    if conditions:
        report = imagefs.with_conditions(report, conditions)
    _emit(args, report.to_dict(), imagefs.render_text(report))
    failing = {"critical": {imagefs.CRITICAL}, "warning": {imagefs.CRITICAL, imagefs.WARNING}}[args.fail_on]
    return 1 if report.status in failing else 0


def _labels(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import labels
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    live = None
    if not args.offline:
        from flywheel_runtime.kube import connect

        cluster = connect(args.kubeconfig)
        if args.all_namespaces:
            live = cluster.list_arc("autoscalingrunnersets")
        else:
            live = [a for ns in sorted({ss.namespace for ss in topo.scale_sets})
                    for a in cluster.list_arc("autoscalingrunnersets", ns)]
    report = labels.audit(topo, live)
    _emit(args, report, labels.render_text(report))
    flagged = any(lbl["flags"] for lbl in report["labels"]) or bool(report["unknown_scale_sets"])
    return 1 if args.fail_on_debt and flagged else 0


def _pod_slots(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import podslots
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    if args.pods_file:
        from pathlib import Path

        from flywheel_runtime.errors import ClusterError, SourceMissingError

        path = Path(args.pods_file)
        if not path.is_file():
            raise SourceMissingError(f"audit pod-slots: no pods file at {path}")
        try:
            pods = json.loads(path.read_text())["items"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ClusterError(f"audit pod-slots: {path} is not `kubectl get pods -o json` output "
                               f"({exc.__class__.__name__}: {exc})") from exc
    else:
        from flywheel_runtime.kube import api_errors, connect

        cluster = connect(args.kubeconfig)
        with api_errors(cluster, "listing pods"):
            items = cluster.core.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed").items
        pods = [cluster.api_client.sanitize_for_serialization(p) for p in items]
    doc = podslots.report(topo, pods)
    _emit(args, doc, podslots.render_text(doc))
    return 1 if args.fail_on_ceiling and any(n["reached"] for n in doc["nodes"]) else 0


def _alert_rules(args: argparse.Namespace) -> int:
    import yaml

    from flywheel_runtime.audit import alerts
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    obj = alerts.prometheus_rule(topo) if args.format == "prometheusrule" else alerts.rule_file(topo)
    rc = 0
    check: dict[str, Any] | None = None
    if args.check:
        from flywheel_runtime import toolchain
        from flywheel_runtime.audit import promtool

        res = promtool.check_rules(yaml.safe_dump(alerts.rule_file(topo), sort_keys=False),
                                   toolchain.binary("promtool"))
        check = {"tool": "promtool", "version": toolchain.GO_TOOLS["promtool"].version, "ok": res.ok,
                 "output": res.output}
        rc = 0 if res.ok else 1
    if args.json:
        _emit(args, {"rules": obj, "check": check}, "")
    else:
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))
        if check is not None:
            print(f"# promtool check rules: {'ok' if check['ok'] else 'FAILED'}: "
                  f"{check['output'].splitlines()[-1] if check['output'] else ''}", file=sys.stderr)
    return rc


def _prove_listener_caps(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import listener
    from flywheel_runtime.kube import connect
    from flywheel_runtime.errors import DeadlineError

    cluster = connect(args.kubeconfig)
    outcome = listener.prove(lambda: listener.live_snapshots(cluster, args.namespace, args.listener_namespace),
                             grace_s=args.grace, deadline_s=args.deadline, interval_s=args.interval)
    lines = [f"{v.namespace}/{v.name}: {v.state}: {v.reason}" for v in outcome.verdicts]
    if not outcome.verdicts:
        lines.append("no AutoscalingRunnerSets found")
    _emit(args, outcome.to_dict(), "\n".join(lines))
    if outcome.ok:
        return 0
    if outcome.timed_out:
        raise DeadlineError(f"{len(outcome.failures)} listener(s) unresolved after {args.deadline:g}s: "
                            f"{outcome.failures[0]}")
    print(f"flywheel-runtime: {outcome.failures[0]}", file=sys.stderr)
    return 1


def _reap(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import reaper
    from flywheel_runtime.kube import connect
    from flywheel_runtime.errors import DeadlineError

    result = reaper.reap(connect(args.kubeconfig), args.namespace, apply=args.apply,
                         settle_timeout_s=args.settle_timeout)
    mode = "apply" if args.apply else "dry run"
    lines = [f"reap leaked-runners ({mode}): {len(result.plan.leaks)} provably leaked"]
    lines += [f"  {'deleted' if f'{x.namespace}/{x.name}' in result.deleted else 'would delete'} "
              f"{x.namespace}/{x.name} ({x.reason} of {x.owner})" for x in result.plan.leaks
              if not args.apply or f"{x.namespace}/{x.name}" in result.deleted]
    lines += [f"  spared {s['name']}: {s['why']}" for s in result.spared]
    lines += [f"  set {s.namespace}/{s.name}: replicas {s.replicas}, current {s.current}, with job {s.with_job}: "
              f"{s.verdict}" for s in result.plan.sets]
    _emit(args, {"mode": mode, **result.to_dict()}, "\n".join(lines))
    if not result.settled:
        raise DeadlineError(f"{len(result.unsettled)} deleted EphemeralRunner(s) still present after "
                            f"{args.settle_timeout:g}s (e.g. {result.unsettled[0]}): check the ARC controller "
                            "and the runners' finalizers")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import cleanup
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    namespaces = args.namespace or cleanup.runner_namespaces(topo)
    now = _now(args)
    actions = cleanup.run(connect(args.kubeconfig), topo.cleanup, now, namespaces, apply=args.apply)
    mode = "apply" if args.apply else "dry run"
    lines = [f"cleanup runner-pods ({mode}) at {now.isoformat()}: {len(actions)} action(s) in "
             f"{', '.join(namespaces)}"]
    lines += [f"  {a['kind']} {a['namespace']}/{a['name']}: {a['why']}" for a in actions]
    _emit(args, {"mode": mode, "now": now.isoformat(), "namespaces": namespaces, "actions": actions},
          "\n".join(lines))
    return 0


def _warm_pool(args: argparse.Namespace) -> int:
    from flywheel_runtime.audit import warmpool
    from flywheel_runtime.kube import connect
    from flywheel_runtime.errors import TopologyError
    from flywheel_runtime.topology import load

    topo = load(args.topology)
    if args.scale_set:
        ss = topo.scale_set(args.scale_set)
        if ss.warm_pool is None:
            raise TopologyError(f"scale set {ss.name!r} has no warm pool in {topo.source}")
    now = _now(args)
    cluster = connect(args.kubeconfig)
    from flywheel_runtime.kube import api_errors

    with api_errors(cluster, "reconciling warm-pool minRunners"):
        changes = warmpool.reconcile(cluster.custom, topo, now, apply=args.apply, only=args.scale_set)
    mode = "apply" if args.apply else "dry run"
    lines = [f"warm-pool reconcile ({mode}) at {now.isoformat()}"]
    lines += [f"  {c['namespace']}/{c['scale_set']}: minRunners {c['from']} -> {c['to']}"
              f"{' (patched)' if c['applied'] else '' if c['from'] != c['to'] else ' (already)'}" for c in changes]
    _emit(args, {"mode": mode, "now": now.isoformat(), "changes": changes}, "\n".join(lines))
    return 0
