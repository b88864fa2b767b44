"""The ``flywheel-runtime`` command: a thin dispatcher over the packages.

Each capability package owns a ``_cli`` module exposing ``register(subparsers)``
which adds its commands (argparse only, no heavy imports) and binds each to a
handler via ``set_defaults(handler=callable)``.  Handlers import what they need
lazily and return an exit code; they raise :class:`FlywheelError` for errors a
user can act on.  Whatever else escapes a handler is a bug: one line and exit
70, the traceback only with ``--debug`` or ``FLYWHEEL_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from flywheel_runtime import __version__
from flywheel_runtime.errors import ExitCode, FlywheelError

# Order is the order of ``--help``.
_COMMAND_MODULES = (
    "flywheel_runtime.topology._cli",
    "flywheel_runtime.harness._cli",
    "flywheel_runtime.toolchain._cli",
    "flywheel_runtime.nixseed._cli",
    "flywheel_runtime.probe._cli",
    "flywheel_runtime.hooks._cli",
    "flywheel_runtime.canary._cli",
    "flywheel_runtime.audit._cli",
    "flywheel_runtime.actions._cli",
    "flywheel_runtime.mainjob",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel-runtime",
        description="Runtime library, canaries, topology model and cluster harness for the flywheel runner platform.",
    )
    parser.add_argument("--version", action="version", version=f"flywheel-runtime {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error, print the traceback (also: FLYWHEEL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _say(message: str) -> None:
    """The one line an error gets: redacted, line breaks folded, never failing to print."""
    try:
        from flywheel_runtime.hooks.redact import redact_text

        line = " ".join(redact_text(message).splitlines())
    except Exception:  # noqa: BLE001 - never print what could not be checked
        line = "(the message is withheld: redacting it failed)"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    # A name that is not valid UTF-8 arrives as surrogates: shown escaped, never a UnicodeEncodeError.
    line = line.encode(encoding, errors="backslashreplace").decode(encoding, errors="replace")
    try:
        print(f"flywheel-runtime: {line}", file=sys.stderr)
    except OSError:
        pass


def _exit_for(exc: BaseException) -> tuple[int, str] | None:
    """A documented code for an OSError a user can meet anywhere (no space, permission)."""
    import errno

    if isinstance(exc, OSError):
        what = f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or str(exc))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return int(ExitCode.NO_SPACE), what
        if exc.errno in (errno.EACCES, errno.EPERM):
            return int(ExitCode.PERMISSION), what
    return None


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 name is printed escaped, never a UnicodeEncodeError
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("FLYWHEEL_DEBUG", "") not in ("", "0", "false", "no")
    try:
        return int(args.handler(args) or 0)
    except FlywheelError as exc:
        _say(str(exc))
        return int(exc.exit_code)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        return int(ExitCode.KEYBOARD_INTERRUPT)
    except Exception as exc:  # noqa: BLE001 - the contract: one line, a documented code
        if debug:
            import traceback

            traceback.print_exc()
        known = _exit_for(exc)
        if known is not None:
            _say(known[1])
            return known[0]
        _say(f"internal error: {type(exc).__name__}: {exc} (a bug; rerun with --debug or FLYWHEEL_DEBUG=1 "
             "for the traceback)")
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
