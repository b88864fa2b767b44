"""The runner image's entrypoint: ``flywheel-runtime entrypoint -- CMD ...``.

1. Seed /nix when the pod asks for it (FLYWHEEL_SEED_NIX_SOURCE and
   FLYWHEEL_SEED_NIX_TARGET, through :func:`flywheel_runtime.nixseed.seed`);
   a failed seed fails the pod: a lane that asked for a seeded store must not
   run jobs on half of one.
2. Write the hints file atomically (FLYWHEEL_HINTS_FILE, default
   /run/flywheel/hints.json, else $RUNNER_TEMP or the temp dir when /run is
   not writable; temp file + fsync + rename, so a reader sees the old file or
   the new one) and export its path as FLYWHEEL_HINTS_FILE.  Failing to write
   it only warns: the job-started hook probes again.
3. ``os.execvpe`` CMD: it replaces this process, so the kubelet's SIGTERM
   reaches the runner directly and the runner's exit code is the pod's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import ExitCode, FlywheelError
from flywheel_runtime.hooks.redact import redact_doc, redact_text

DEFAULT_HINTS_FILE = "/run/flywheel/hints.json"
# The shell's codes: what a pod's status shows elsewhere for the same mistake.
EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = ExitCode.NOT_FOUND, ExitCode.NOT_EXECUTABLE


def write_hints(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (secret-shaped values masked)."""
    from flywheel_runtime._files import write_atomic

    # 0644: jobs run as another uid may read it.
    write_atomic(path, json.dumps(redact_doc(doc), indent=2) + "\n", mode=0o644, fsync=True)


def hints_paths(env: dict[str, str]) -> list[Path]:
    """Where to try writing the hints file, in order."""
    if env.get("FLYWHEEL_HINTS_FILE"):
        return [Path(env["FLYWHEEL_HINTS_FILE"])]
    fallback = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "flywheel-hints.json"
    return [Path(DEFAULT_HINTS_FILE), fallback]


def seed_if_asked(env: dict[str, str]) -> None:
    src, dst = env.get("FLYWHEEL_SEED_NIX_SOURCE"), env.get("FLYWHEEL_SEED_NIX_TARGET")
    if not (src or dst):
        return
    if not (src and dst):
        raise FlywheelError("entrypoint: FLYWHEEL_SEED_NIX_SOURCE and FLYWHEEL_SEED_NIX_TARGET must be set together",
                            exit_code=ExitCode.USAGE)
    from flywheel_runtime.nixseed import seed

    report = seed(src, dst)
    what = "unchanged" if report.skipped else f"{report.files} files copied"
    print(redact_text(f"flywheel: {dst} seeded from {src} ({what}) in {report.seconds:.2f}s"), file=sys.stderr,
          flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Seed, write hints, exec ``cmd``; returns only when exec failed (it raises then)."""
    env = dict(os.environ if env is None else env)
    if not cmd:
        raise FlywheelError("entrypoint needs a command after --, e.g. entrypoint -- /home/runner/run.sh",
                            exit_code=ExitCode.USAGE)
    seed_if_asked(env)
    from flywheel_runtime.probe import collect

    doc = collect(env.get("FLYWHEEL_ROOT") or "/", environ=env)
    errors = []
    for path in hints_paths(env):
        try:
            write_hints(path, doc)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            errors.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
            continue
        env["FLYWHEEL_HINTS_FILE"] = str(path)
        break
    else:
        print(redact_text(" ".join(f"flywheel: hints file not written ({'; '.join(errors)}); continuing".splitlines())),
              file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        raise FlywheelError(redact_text(f"entrypoint: command not found: {cmd[0]}"),
                            exit_code=EXIT_NOT_FOUND) from None
    except (OSError, ValueError) as exc:
        # EACCES (no x bit, a directory), ENOEXEC (no interpreter line, a foreign binary),
        # ENOTDIR, ELOOP, ...: the command is there but cannot be run. ValueError: a NUL.
        why = getattr(exc, "strerror", None) or str(exc)
        raise FlywheelError(redact_text(f"entrypoint: command not executable: {cmd[0]} ({why})"),
                            exit_code=EXIT_NOT_EXECUTABLE) from None
    return 0  # pragma: no cover - exec does not return
