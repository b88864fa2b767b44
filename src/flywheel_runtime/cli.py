"""The ``flywheel-runtime`` command: a thin dispatcher over the packages.

Each capability package owns a ``_cli`` module exposing ``register(subparsers)``
which adds its commands (argparse only, no heavy imports) and binds each to a
handler via ``set_defaults(handler=callable)``.  Handlers import what they need
lazily and return an exit code; they raise :class:`FlywheelError` for errors a
user can act on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flywheel_runtime import __version__
from flywheel_runtime.errors import ExitCode, FlywheelError

# Order is the order of ``--help``.
_COMMAND_MODULES = (
    "flywheel_runtime.topology._cli",
    "flywheel_runtime.harness._cli",
    "flywheel_runtime.nixseed._cli",
    "flywheel_runtime.probe._cli",
    "flywheel_runtime.hooks._cli",
    "flywheel_runtime.canary._cli",
    "flywheel_runtime.audit._cli",
    "flywheel_runtime.mainjob",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel-runtime",
        description="Runtime library, canaries, topology model and cluster harness for the flywheel runner platform.",
    )
    parser.add_argument("--version", action="version", version=f"flywheel-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FlywheelError as exc:
        print(f"flywheel-runtime: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
