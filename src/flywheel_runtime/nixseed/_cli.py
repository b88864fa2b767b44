"""``flywheel-runtime seed-nix`` (argparse only; the copy is imported in the handler)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("seed-nix", help="seed a /nix volume from the image's baked store, exactly and crash-safely")
    p.add_argument("--source", default="/nix", help="the baked store to copy (default: /nix)")
    p.add_argument("--target", required=True,
                   help="the (mounted) volume to seed: empty, or one seed-nix seeded before (else see --force)")
    p.add_argument("--force", metavar="REASON",
                   help="seed over a non-empty target seed-nix never seeded, replacing or deleting what it holds;"
                        " REASON goes to the log.  Never overrides the other refusals (empty path, overlap with"
                        " the source, special files)")
    p.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes sharing the store paths (default 0: one per usable CPU, at most 8)")
    p.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    p.add_argument("--chown-work", action="append", default=[], metavar="PATH",
                   help="chown this work volume to --work-owner after seeding (repeatable)")
    p.add_argument("--work-owner", default="1001:1001", metavar="UID:GID", help="owner for --chown-work")
    p.add_argument("--progress-interval", type=float, default=5.0, metavar="S",
                   help="seconds between progress lines on stderr (0: none)")
    p.add_argument("--lock-timeout", type=float, default=600.0, metavar="S")
    p.set_defaults(handler=_seed)


def _seed(args: argparse.Namespace) -> int:
    from flywheel_runtime.errors import ExitCode, FlywheelError
    from flywheel_runtime.nixseed import seed

    try:
        uid, gid = (int(x) for x in args.work_owner.split(":"))
    except ValueError:
        raise FlywheelError(f"--work-owner must be UID:GID, got {args.work_owner!r}", exit_code=ExitCode.USAGE)
    report = seed(args.source, args.target, jobs=args.jobs, lock_timeout=args.lock_timeout,
                  progress_interval=args.progress_interval, chown_work=args.chown_work, work_owner=(uid, gid),
                  force=args.force)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        what = "already seeded from this image" if report.skipped else (
            f"{report.files} files, {report.hardlinks} hardlinks, {report.symlinks} symlinks, "
            f"{report.bytes / 1e6:.1f} MB via {report.method}")
        print(f"seed-nix: {args.target}: {what} in {report.seconds:.2f}s ({report.identity[:19]})", file=sys.stderr)
    return 0
