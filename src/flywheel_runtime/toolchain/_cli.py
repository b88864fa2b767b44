"""``flywheel-runtime toolchain ensure [NAME...]`` (argparse only).

The one way the cache is warmed (``./dev`` calls it once): every toolchain
component, and where the kind backend can run, the builds only that backend
makes from them (its node image and the runner images, from
:mod:`flywheel_runtime.harness.kind`).  Like every ``_cli`` module this one
sits at the CLI's floor, so it may reach the harness; the toolchain itself
never does.
"""

from __future__ import annotations

import argparse
import sys

# Builds the kind backend makes from the toolchain; not toolchain components themselves.
KIND_BUILDS = ("node-image", "runner-images")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from flywheel_runtime.toolchain.pins import COMPONENT_NAMES as COMPONENTS  # not the registry: keeps every command light

    p = sub.add_parser("toolchain", help="what is built offline (cluster binaries, operator tools, kind images)")
    tsub = p.add_subparsers(dest="toolchain_command", metavar="SUBCOMMAND")
    tsub.required = True
    e = tsub.add_parser("ensure", help="build what is missing, check the stamps of the rest; print NAME<TAB>PATH")
    e.add_argument("names", nargs="*", metavar="NAME", type=_name,
                   help=f"components (default: all; {', '.join(KIND_BUILDS)} and the kind parts only where "
                        f"the kind backend can run): {', '.join([*COMPONENTS, *KIND_BUILDS])}")
    e.add_argument("--kind", dest="kind", action="store_true", default=None,
                   help="build the kind parts, node image and runner images without asking whether kind can run "
                        "here (the images still need a Docker engine, or root with docker.io to start one)")
    e.add_argument("--no-kind", dest="kind", action="store_false",
                   help="skip the kind parts, node image and runner images ($FLYWHEEL_KIND=0 does too)")
    e.set_defaults(handler=_ensure)


def _name(value: str) -> str:
    from flywheel_runtime.toolchain.pins import COMPONENT_NAMES as COMPONENTS

    if value not in COMPONENTS and value not in KIND_BUILDS:
        raise argparse.ArgumentTypeError(f"unknown component {value!r} (known: "
                                         f"{', '.join([*COMPONENTS, *KIND_BUILDS])})")
    return value


def _ensure(args: argparse.Namespace) -> int:
    from flywheel_runtime import toolchain

    names: list[str] = list(args.names)
    kind = args.kind
    if kind is None and (not names or any(n in KIND_BUILDS for n in names)):
        from flywheel_runtime.harness import kind as kind_backend

        kind = kind_backend.available()
    if names:
        parts = [n for n in names if n not in KIND_BUILDS]
        extra = [n for n in names if n in KIND_BUILDS] if kind else []
        for n in sorted(set(names) & set(KIND_BUILDS) - set(extra)):
            print(f"toolchain: skipping {n}: the kind backend cannot run here", file=sys.stderr)
    else:
        groups = toolchain.GROUPS if kind else tuple(g for g in toolchain.GROUPS if g != "kind")
        parts = [n for n, c in toolchain.COMPONENTS.items() if c.group in groups]
        extra = list(KIND_BUILDS) if kind else []
    for name, path in toolchain.ensure(parts).items():
        print(f"{name}\t{path}", flush=True)
    if "node-image" in extra:
        from flywheel_runtime.harness.kind import prepare

        print(f"node-image\t{prepare()}", flush=True)
    if "runner-images" in extra:
        from flywheel_runtime.harness.kind.runner_images import build_images
        from flywheel_runtime.topology import load

        for b in build_images(load()):
            print(f"runner-images\t{b.tag}", flush=True)
    return 0
