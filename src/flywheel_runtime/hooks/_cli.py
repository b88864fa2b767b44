"""``flywheel-runtime hook ...`` and ``entrypoint`` (argparse only)."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("hook", help="runner job hooks (ACTIONS_RUNNER_HOOK_JOB_STARTED/_COMPLETED)")
    hsub = p.add_subparsers(dest="hook", metavar="HOOK")
    hsub.required = True
    s = hsub.add_parser("job-started", help="publish hints; refuse the job if the lane's devices are missing")
    s.add_argument("--root", default=None, help="probe under DIR (default: $FLYWHEEL_ROOT or /)")
    s.set_defaults(handler=_started)
    c = hsub.add_parser("job-completed", help="record the job's duration; apply the workspace policy")
    c.set_defaults(handler=_completed)

    e = sub.add_parser("entrypoint", help="seed /nix if asked, write the hints file, exec CMD")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    e.set_defaults(handler=_entrypoint)


def _started(args: argparse.Namespace) -> int:
    from flywheel_runtime.hooks.jobhooks import job_started, warn
    from flywheel_runtime.probe.dri import usable

    doc = job_started(root=args.root)
    kvm = f"kvm API {doc['kvm']['api_version']}" if doc["kvm"]["usable"] else "no kvm"
    dri = sum(1 for d in doc["dri"]["devices"] if usable(d))
    warn(f"flywheel: hints published ({kvm}, {dri} usable dri node(s), "
         f"{'nvidia' if doc['nvidia']['present'] else 'no nvidia'})")
    return 0


def _completed(args: argparse.Namespace) -> int:
    from flywheel_runtime.hooks.jobhooks import job_completed, warn

    out = job_completed()
    parts = [f"job ran {out['duration_s']:.1f}s" if out["duration_s"] is not None else "job start not recorded"]
    ws = out["workspace"]
    if ws:
        parts.append(f"workspace cleaned ({ws['removed']} entries"
                     + (f"; left other filesystems: {', '.join(ws['skipped'])}" if ws["skipped"] else "") + ")")
    else:
        parts.append(f"workspace policy {out['policy']}: nothing removed")
    warn("flywheel: " + ", ".join(parts))
    return 0


def _entrypoint(args: argparse.Namespace) -> int:
    from flywheel_runtime.hooks.entrypoint import run

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return run(cmd)
