"""Speed targets: measured in every run, enforced on demand.

Benchmarks always run their workload and check its result (a benchmark whose
code path broke fails like any test).  Their timing targets are recorded in
the benchmark's ``extra_info`` and printed; they fail the run only with
``FLYWHEEL_BENCH_ENFORCE=1`` (as the ``bench/`` scripts and a dedicated
benchmark job use), because absolute times on a shared 2-core machine are
noise and the guide keeps targets out of the default suite's pass/fail.
"""

from __future__ import annotations

import os
import warnings

ENFORCE = os.environ.get("FLYWHEEL_BENCH_ENFORCE") == "1"


def check_target(met: bool, message: str) -> None:
    """Fail when enforcing; otherwise warn so the miss is visible in the summary."""
    if met:
        return
    if ENFORCE:
        raise AssertionError(f"target missed: {message}")
    warnings.warn(f"benchmark target missed (not enforced): {message}", stacklevel=2)
