#!/usr/bin/env python3
"""Canary benchmarks, beside the stack's own tool (``vulkaninfo --summary``) as context.

``vulkaninfo`` is not a peer doing the same work (it runs no compute and no
render); it shows what merely touching the Vulkan stack costs on this machine.

Whole-process wall time per command (what a CI step pays), median of N runs,
plus the in-process KVM guest round trip.  Targets from the issue: KVM round
trip < 50 ms in-process; each GPU canary < 3 s whole-process on lavapipe.

    .venv/bin/python bench/canary_bench.py [--runs 5] [--kvm-runs 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGETS_S = {"kvm (in-process)": 0.050, "canary vulkan": 3.0, "canary webgpu": 3.0, "canary dawn": 3.0}


def commands() -> dict[str, list[str]]:
    py = [sys.executable, "-m", "flywheel_runtime", "canary"]
    cmds = {"vulkaninfo --summary": ["vulkaninfo", "--summary"]}
    if not shutil.which("vulkaninfo"):
        cmds.pop("vulkaninfo --summary")
    cmds |= {"canary kvm": py + ["kvm"], "canary vulkan": py + ["vulkan"], "canary webgpu": py + ["webgpu"],
             "canary dawn": py + ["dawn"]}
    return cmds


def whole_process(cmd: list[str], runs: int) -> dict[str, object]:
    times, rcs = [], set()
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
        times.append(time.perf_counter() - t0)
        rcs.add(p.returncode)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs,
            "exit_codes": sorted(rcs)}


def kvm_in_process(runs: int) -> dict[str, object]:
    from flywheel_runtime.canary.kvm import run_guest

    run_guest()  # warm: ctypes/libc setup, first VM creation
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = run_guest()
        times.append(time.perf_counter() - t0)
        assert r.io_value == r.expected, r
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs,
            "exit_codes": [0]}


def rows(doc: dict) -> list[dict]:
    """The ratio-table rows (bench/run.py) from this script's --json document.

    ``vulkaninfo --summary`` is context (the stack's own tool, run where the
    canaries run), not a peer: it proves no compute or render.
    """
    ctx = doc.get("vulkaninfo --summary", {}).get("median_s")
    out = []
    for name, r in doc.items():
        if name == "vulkaninfo --summary":
            continue
        target, med = TARGETS_S.get(name), r["median_s"]
        gpu = name in ("canary vulkan", "canary webgpu", "canary dawn")
        out.append({"figure": f"{name}, median of {r['runs']}" + ("" if r["exit_codes"] == [0] else
                                                                   f" (exit {r['exit_codes']})"),
                    "ours": f"{med * 1000:.1f} ms", "vs": f"vulkaninfo --summary {ctx * 1000:.0f} ms (context)"
                    if gpu and ctx else "-", "ratio": round(med / ctx, 2) if gpu and ctx else None,
                    "target": f"< {target * 1000:.0f} ms" if target else None,
                    "met": (med < target and r["exit_codes"] == [0]) if target else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="whole-process runs per command (default 5)")
    ap.add_argument("--kvm-runs", type=int, default=200, help="in-process KVM guest runs (default 200)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    rows = {name: whole_process(cmd, args.runs) for name, cmd in commands().items()}
    rows["kvm (in-process)"] = kvm_in_process(args.kvm_runs)
    print(f"{'command':<24} {'median':>9} {'min':>9} {'max':>9}  runs  rc    target")
    ok = True
    for name, r in rows.items():
        target = TARGETS_S.get(name)
        verdict = ""
        if target is not None:
            hit = r["median_s"] < target and r["exit_codes"] == [0]
            ok &= hit
            verdict = f"< {target * 1000:.0f} ms {'ok' if hit else 'MISSED'}"
        print(f"{name:<24} {r['median_s'] * 1000:>7.1f}ms {r['min_s'] * 1000:>7.1f}ms {r['max_s'] * 1000:>7.1f}ms "
              f"{r['runs']:>5}  {','.join(map(str, r['exit_codes'])):<4}  {verdict}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
