#!/usr/bin/env python3
"""Whole-process timing of the hints path, side by side with `vulkaninfo --summary`.

    .venv/bin/python bench/probe_bench.py [--runs 40] [--warmup 3] [--json out.json]

Rows (each a fresh process, median of --runs):
  hints            `flywheel-runtime hints` end to end (target: median < 150 ms)
  hints --format env
  probe only       collect() + JSON dump without the CLI dispatcher (what the
                   probe itself costs; the rest of `hints` is the dispatcher
                   importing every package's _cli module)
  import probe     `import flywheel_runtime.probe` (target: median < 50 ms)
  python           bare interpreter start (the floor under all of the above)
  vulkaninfo       `vulkaninfo --summary`: context, not a peer doing the same
                   work (it loads every ICD and queries each device; `hints`
                   only reads their manifests): what a job would otherwise run

Uses hyperfine (--export-json) when installed, else subprocess timing.  Exit 1
when a target is missed, so CI can run it as a check on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = os.environ.get("FLYWHEEL_BENCH_PYTHON") or sys.executable
CLI = str(Path(PY).with_name("flywheel-runtime"))
TARGETS_MS = {"hints": 150.0, "import probe": 50.0}


def commands() -> dict[str, list[str]]:
    rows = {
        "hints": [CLI, "hints"],
        "hints --format env": [CLI, "hints", "--format", "env"],
        "probe only": [PY, "-c", "import sys, json; from flywheel_runtime.probe import collect; "
                                  "json.dump(collect('/'), sys.stdout)"],
        "import probe": [PY, "-c", "import flywheel_runtime.probe"],
        "python": [PY, "-c", "pass"],
    }
    if shutil.which("vulkaninfo"):
        rows["vulkaninfo --summary"] = ["vulkaninfo", "--summary"]
    return rows


def _hyperfine(rows: dict[str, list[str]], runs: int, warmup: int) -> dict[str, dict[str, float]]:
    import shlex

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hf.json"
        cmd = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs),
               "--export-json", str(out)]
        for name, argv in rows.items():
            cmd += ["-n", name, shlex.join(argv)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())
    return {r["command"]: {"median_ms": r["median"] * 1e3, "mean_ms": r["mean"] * 1e3, "min_ms": r["min"] * 1e3,
                           "max_ms": r["max"] * 1e3} for r in data["results"]}


def _subprocess(rows: dict[str, list[str]], runs: int, warmup: int) -> dict[str, dict[str, float]]:
    res = {}
    for name, argv in rows.items():
        times = []
        for i in range(warmup + runs):
            t = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
        res[name] = {"median_ms": statistics.median(times), "mean_ms": statistics.fmean(times),
                     "min_ms": min(times), "max_ms": max(times)}
    return res


def rows(doc: dict) -> list[dict]:
    """The ratio-table rows (bench/run.py) from this script's --json document."""
    res, out = doc["results"], []
    for name, floor in (("hints", "vulkaninfo --summary"), ("import probe", "python")):
        if name not in res:
            continue
        ours, ref = res[name]["median_ms"], res.get(floor, {}).get("median_ms")
        role = "context" if floor.startswith("vulkaninfo") else "floor"
        target = doc["targets_ms"].get(name)
        out.append({"figure": f"{name}, whole process, median of {doc['runs']}", "ours": f"{ours:.1f} ms",
                    "vs": f"{floor} {ref:.1f} ms ({role})" if ref else "-",
                    "ratio": round(ours / ref, 2) if ref else None,
                    "target": f"< {target:.0f} ms" if target else None,
                    "met": ours < target if target else None})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--no-hyperfine", action="store_true", help="time with subprocess even if hyperfine exists")
    args = ap.parse_args()
    rows = commands()
    tool = "hyperfine" if shutil.which("hyperfine") and not args.no_hyperfine else "subprocess"
    res = (_hyperfine if tool == "hyperfine" else _subprocess)(rows, args.runs, args.warmup)
    load = os.getloadavg()[0]
    print(f"# {args.runs} runs each via {tool}; load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"{'command':<22} {'median':>9} {'min':>9} {'max':>9}  target")
    failed = False
    for name, r in res.items():
        target = TARGETS_MS.get(name)
        verdict = ""
        if target is not None:
            ok = r["median_ms"] < target
            failed |= not ok
            verdict = f"< {target:.0f} ms {'ok' if ok else 'MISSED'}"
        print(f"{name:<22} {r['median_ms']:>7.1f}ms {r['min_ms']:>7.1f}ms {r['max_ms']:>7.1f}ms  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"tool": tool, "runs": args.runs, "loadavg": load, "results": res,
                                         "targets_ms": TARGETS_MS}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
