"""Run canaries by name, turn their outcomes into reports, write artifacts, pick the exit code."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.canary.report import ABSENT, FAILED, PASSED, UNSUPPORTED, Report, write_outputs
from flywheel_runtime.errors import ExitCode, FlywheelError

# name -> module holding `canary(...)`; "all" runs them in this order
CANARIES = {"kvm": "flywheel_runtime.canary.kvm", "vulkan": "flywheel_runtime.canary.vk",
            "webgpu": "flywheel_runtime.canary.webgpu", "dawn": "flywheel_runtime.canary.dawn"}
STATUS_BY_EXIT = {ExitCode.DEVICE_ABSENT: ABSENT, ExitCode.UNSUPPORTED: UNSUPPORTED}


@dataclass(frozen=True)
class Options:
    artifacts: Path | None = None
    require_hardware: bool = False
    device: str = "/dev/kvm"
    qemu: bool = False
    seed: int | None = None


def run_one(name: str, opts: Options) -> Report:
    """Run one canary; a FlywheelError becomes the report's status, reason and exit code."""
    report = Report(name)
    try:
        mod = importlib.import_module(CANARIES[name])
        if name == "kvm":
            mod.canary(opts.device, with_qemu=opts.qemu, report=report)
        else:
            mod.canary(opts.artifacts, require_hardware=opts.require_hardware, report=report, seed=opts.seed)
    except FlywheelError as exc:
        report.exit_code = int(exc.exit_code)
        report.status = STATUS_BY_EXIT.get(exc.exit_code, FAILED)
        report.reason = str(exc)
    return report


def run(names: list[str], opts: Options, label: str | None = None) -> list[Report]:
    reports = [run_one(n, opts) for n in names]
    write_outputs(reports, opts.artifacts, name=label)
    return reports


def outcome(reports: list[Report]) -> FlywheelError | None:
    """None when all passed; else the error to exit with: a failed check outranks everything else."""
    bad = [r for r in reports if r.status != PASSED]
    if not bad:
        return None
    worst = next((r for r in bad if r.exit_code == ExitCode.FAILED), bad[0])
    if len(reports) == 1:
        msg = f"canary {worst.canary}: {worst.reason}" if worst.status == FAILED else worst.reason
    else:
        msg = f"canary {'+'.join(r.canary for r in reports)}: " + "; ".join(f"{r.canary} {r.status}" + (f" ({r.reason})" if r.reason else "")
                                         for r in bad)
    return FlywheelError(msg, exit_code=ExitCode(worst.exit_code))


def summary_line(r: Report) -> str:
    a = r.adapter
    where = f" on {a.device} [{a.kind}, {a.backend}]" if a else ""
    n_ok = sum(c.passed for c in r.checks)
    return f"canary {r.canary}: {r.status}{where}; {n_ok}/{len(r.checks)} checks" + (
        f"; {r.reason}" if r.reason and r.status != PASSED else "")
