"""``flywheel-runtime actions serve|queue|jobs|release`` (argparse only)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flywheel_runtime.actions._client import ActionsClient

_FIND = ("the double's base URL; default: $FLYWHEEL_ACTIONS_URL, else the URL that `actions serve` "
         "(or the cluster running a double) recorded in $FLYWHEEL_CACHE_DIR/actions/double.json")
_FIELDS = ("id", "label", "state", "runner", "node", "queued_at", "assigned_at", "started_at", "completed_at")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("actions", help="the GitHub Actions service double ARC's controller and listener talk to",
                       description="A GitHub Actions service double speaking what ARC 0.14.0's controller and "
                                   "listener call, with a job queue per label. Exit 20: no double found, it "
                                   "cannot be reached, or serve cannot listen.")
    asub = p.add_subparsers(dest="actions", metavar="ACTION")
    asub.required = True

    s = asub.add_parser("serve", help="run a double in the foreground (records its URL for the other commands)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)")
    s.add_argument("--port", type=int, default=0, help="port (default 0: any free port, printed)")
    s.add_argument("--public-url", default=None,
                   help="base of every URL handed to clients (default: the address each client used, its Host header)")
    s.add_argument("--log", default=None, help="request log, JSON lines, appended (default: stderr)")
    s.add_argument("--long-poll", type=float, default=1.0,
                   help="seconds an empty message-queue poll waits before its 202 (default 1)")
    s.set_defaults(handler=_serve)

    q = asub.add_parser("queue", help="queue jobs for a label; prints their ids")
    q.add_argument("label", help="a label a scale set publishes (or its name)")
    q.add_argument("--count", type=int, default=1, help="how many jobs (default 1)")
    q.add_argument("--hold", action="store_true", help="once started, the jobs run until released")
    q.add_argument("--script", default="", help="what the runner stand-in runs as the job (bash -e)")
    q.add_argument("--json", action="store_true", help="the job objects, as `jobs --json` gives them")
    q.add_argument("--url", default=None, help=_FIND)
    q.set_defaults(handler=_queue)

    j = asub.add_parser("jobs", help="every job: id, label, state, runner, node and its times (epoch seconds)")
    j.add_argument("--json", action="store_true", help="a JSON list of job objects")
    j.add_argument("--url", default=None, help=_FIND)
    j.set_defaults(handler=_jobs)

    r = asub.add_parser("release", help="end held jobs: a started one completes (with its runner's result, "
                                        "else canceled: also for a job whose runner pod is gone); one not "
                                        "started yet loses its hold")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="job ids")
    which.add_argument("--all", action="store_true", help="every held job")
    r.add_argument("--json", action="store_true", help="the released job objects")
    r.add_argument("--url", default=None, help=_FIND)
    r.set_defaults(handler=_release)


def _client(args: argparse.Namespace) -> ActionsClient:
    from flywheel_runtime.actions import ActionsClient, find_url  # lazy: keeps --help light

    return ActionsClient(find_url(args.url))


def _serve(args: argparse.Namespace) -> int:
    import os
    import signal
    import sys

    from flywheel_runtime.actions import ActionsDouble, clear_state, write_state

    double = ActionsDouble(args.host, args.port, public_url=args.public_url, long_poll=args.long_poll, log=args.log)

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    state = write_state(double.url, os.getpid())
    print(f"actions double: {double.url} (githubConfigUrl {double.config_url('ORG')}; recorded in {state})",
          flush=True)
    try:
        double.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        double.close()
        clear_state(os.getpid())
    print("actions double: stopped", file=sys.stderr)
    return 0


def _print_jobs(jobs: list[dict], as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(jobs, indent=2))
        return
    rows = [list(_FIELDS)] + [[_cell(job.get(f)) for f in _FIELDS] for job in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_FIELDS))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _queue(args: argparse.Namespace) -> int:
    import json

    from flywheel_runtime.errors import ExitCode, FlywheelError

    if args.count < 1:
        raise FlywheelError("--count must be at least 1", exit_code=ExitCode.USAGE)
    jobs = _client(args).queue(args.label, args.count, args.hold, args.script)
    if args.json:
        print(json.dumps(jobs, indent=2))
    else:
        for job in jobs:
            print(job["id"])
    return 0


def _jobs(args: argparse.Namespace) -> int:
    _print_jobs(_client(args).jobs(), args.json)
    return 0


def _release(args: argparse.Namespace) -> int:
    jobs = _client(args).release(args.ids, every=args.all)
    if args.json:
        _print_jobs(jobs, True)
    else:
        for job in jobs:
            print(f"{job['id']} {job['state']}" + (f" {job['result']}" if job.get("result") else ""))
    return 0
