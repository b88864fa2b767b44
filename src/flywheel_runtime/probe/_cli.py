"""``flywheel-runtime hints`` (argparse only)."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("hints", help="probe KVM, DRI, NVIDIA, Vulkan and Nix; print the runtime hints")
    p.add_argument("--format", choices=("json", "env", "markdown"), default="json")
    p.add_argument("--deep", action="store_true", help="also enumerate Vulkan physical devices (loads the driver)")
    p.add_argument("--root", default=None,
                   help="probe a captured tree: read /dev, /sys, /proc, /usr under DIR (default: $FLYWHEEL_ROOT or /)")
    p.set_defaults(handler=_hints)


def _hints(args: argparse.Namespace) -> int:
    import json
    import os

    from flywheel_runtime.probe import collect, to_env, to_markdown

    root = args.root or os.environ.get("FLYWHEEL_ROOT") or "/"
    if not os.path.isdir(root):
        from flywheel_runtime.errors import SourceMissingError

        raise SourceMissingError(f"hints: probe root {root} is not a directory (--root / $FLYWHEEL_ROOT)")
    doc = collect(root, deep=args.deep)
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    elif args.format == "env":
        print(to_env(doc), end="")
    else:
        print(to_markdown(doc), end="")
    return 0
