"""The runner pod's entrypoint: seed /nix when the pod asks, write the hints
file atomically, then exec the runner (signals reach it; its exit code is the
pod's)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flywheel_runtime.errors import ExitCode, FlywheelError

DEFAULT_HINTS_FILE = "/run/flywheel/hints.json"


def write_hints(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)  # readers see the old file or the new one, never half


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    if not cmd:
        raise FlywheelError("entrypoint needs a command after --", exit_code=ExitCode.USAGE)
    src, dst = env.get("FLYWHEEL_SEED_NIX_SOURCE"), env.get("FLYWHEEL_SEED_NIX_TARGET")
    if src and dst:
        from flywheel_runtime.nixseed import seed

        report = seed(src, dst)
        print(f"flywheel: /nix seeded ({'unchanged' if report.skipped else f'{report.files} files'}) "
              f"in {report.seconds:.2f}s", file=sys.stderr, flush=True)
    from flywheel_runtime.probe import collect

    root = env.get("FLYWHEEL_ROOT") or "/"
    write_hints(Path(env.get("FLYWHEEL_HINTS_FILE") or DEFAULT_HINTS_FILE), collect(root, environ=env))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        raise FlywheelError(f"entrypoint: command not found: {cmd[0]}", exit_code=127) from None  # type: ignore[arg-type]
    return 0  # pragma: no cover - exec does not return
