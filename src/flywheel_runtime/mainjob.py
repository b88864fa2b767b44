"""``flywheel-runtime main``: the project's main job, end to end.

Probe this machine, run every canary, bring the three-node cluster up and show
where every runner class lands.  Each step is the public command a platform
engineer would run by hand, run as a child process so its output and exit
code are exactly what that command reports on its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

from flywheel_runtime.errors import ExitCode


class Step(NamedTuple):
    title: str
    argv: tuple[str, ...]
    # Exit codes that are an honest, expected outcome on some machines (e.g.
    # Dawn rejecting a software adapter): reported, but they do not fail the job.
    tolerated: frozenset[int] = frozenset()


def steps(backend: str | None) -> list[Step]:
    cluster = ("--backend", backend) if backend else ()
    return [
        Step("Probe: runtime hints for this machine", ("hints", "--format", "markdown", "--deep")),
        Step("Canary: KVM guest execution", ("canary", "kvm")),
        Step("Canary: Vulkan compute + render", ("canary", "vulkan")),
        Step("Canary: WebGPU (wgpu) compute + render", ("canary", "webgpu")),
        Step("Canary: WebGPU (Dawn) compute + render", ("canary", "dawn"),
             tolerated=frozenset({int(ExitCode.UNSUPPORTED)})),
        Step("Topology: contract check", ("topology", "check")),
        Step("Cluster: bring the three-node cluster up", ("cluster", "up", *cluster)),
        Step("Cluster: where every runner class lands", ("cluster", "placement", *cluster)),
    ]


def run(args: argparse.Namespace) -> int:
    import subprocess
    import time

    results: list[tuple[Step, int, float]] = []
    for step in steps(args.backend):
        print(f"\n=== {step.title}: flywheel-runtime {' '.join(step.argv)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", "flywheel_runtime", *step.argv])
        results.append((step, rc, time.monotonic() - t0))
    print("\n=== Summary")
    failed = 0
    for step, rc, secs in results:
        if rc == 0:
            verdict = "ok"
        elif rc in step.tolerated:
            verdict = f"unsupported here (exit {rc})"
        else:
            verdict = f"FAILED (exit {rc})"
            failed += 1
        print(f"{verdict:<26} {secs:6.1f}s  {step.title}")
    return int(ExitCode.FAILED) if failed else int(ExitCode.OK)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("main", help="probe, run the canaries, bring the cluster up and show runner placement")
    p.add_argument("--backend", choices=("sim", "kind"), default=None,
                   help="cluster backend (default: kind where Docker works, else sim)")
    p.set_defaults(handler=run)
