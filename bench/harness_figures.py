#!/usr/bin/env python3
"""Print the harness's figures side by side: cluster up cold/warm/down, pod
create -> scheduled -> Running per scale set, and the capacity-table
scenarios (admitted vs queued, time to drain), plus the first-time build
time read from the build logs.

    .venv/bin/python bench/harness_figures.py [--rounds N] [--max] [--json]

Uses a throwaway sim cluster of its own (binaries must be built: ./dev setup).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import uuid


def build_times() -> dict[str, float | None]:
    """Seconds each cached build took: first build.log write -> .complete stamp."""
    from flywheel_runtime import toolchain

    out: dict[str, float | None] = {}
    for sub, version in (("kubernetes", toolchain.KUBERNETES_VERSION), ("etcd", toolchain.ETCD_VERSION),
                         ("kwok", toolchain.KWOK_VERSION)):
        base = toolchain.component_dir(sub, version)
        try:
            # The version dir is created as the build starts; the stamp written last.
            start = min(p.stat().st_mtime for p in (base / "src", base / "build.log") if p.exists())
            out[sub] = round((base / ".complete").stat().st_mtime - start, 1)
        except (OSError, ValueError):
            out[sub] = None
    return out


COLD_UP_TARGET_S = 20.0
JSON_STDOUT = True  # bench/run.py: --json prints the document instead of taking a file


def rows(doc: dict) -> list[dict]:
    """The ratio-table rows (bench/run.py) from this script's --json document (no peer: targets only)."""
    up = doc["up"]
    return [{"figure": "cluster up, binaries cached, cold", "ours": f"{up['cold_up_s']:.1f} s",
             "vs": f"reuse {up['warm_up_s']:.2f} s, down {up['down_s']:.1f} s (context)", "ratio": None,
             "target": f"< {COLD_UP_TARGET_S:.0f} s", "met": up["cold_up_s"] < COLD_UP_TARGET_S}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="pod latency rounds per scale set (default 3)")
    ap.add_argument("--max", action="store_true", help="also run every scale set at maxRunners at once")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flywheel_runtime.harness.benchmarks import pod_latency, run_scenario, time_up
    from flywheel_runtime.harness import quiet_log
    from flywheel_runtime.harness.sim import SimCluster
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load

    topo = load()
    report: dict[str, object] = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                 "build_seconds": build_times()}
    report["up"] = time_up(f"figures-up-{uuid.uuid4().hex[:6]}", topo)
    cluster = SimCluster(name=f"figures-{uuid.uuid4().hex[:6]}", log=quiet_log)
    try:
        kube = connect(cluster.up(topo), check=False)
        kube.ensure_namespace("figures")
        lat = {}
        for ss in topo.scale_sets:
            runs = [pod_latency(kube, topo, "figures", ss.name) for _ in range(args.rounds)]
            # medians of the timings; pod_latency also names the node (a string)
            lat[ss.name] = {k: round(statistics.median(r[k] for r in runs), 3) if isinstance(v, float) else v
                            for k, v in runs[0].items()}
        report["pod_latency_median_s"] = lat
        scen = {}
        for name in ["quiet", "normal", "burst"] + (["max"] if args.max else []):
            kube.ensure_namespace(f"figures-{name}")
            scen[name] = run_scenario(kube, topo, f"figures-{name}", name).as_dict()
        report["scenarios"] = scen
    finally:
        cluster.down(quiet=True)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    b = report["build_seconds"]
    print(f"first-time build (from cache stamps): " + ", ".join(f"{k} {v}s" for k, v in b.items()))  # type: ignore[union-attr]
    u = report["up"]
    print(f"cluster up: cold {u['cold_up_s']}s (target < {COLD_UP_TARGET_S:.0f} s), warm {u['warm_up_s']}s, down {u['down_s']}s")  # type: ignore[index]
    print(f"\n{'scale set':<34}{'-> scheduled':>14}{'-> Running':>12}")
    for name, r in lat.items():
        print(f"{name:<34}{r['scheduled_s']:>13.3f}s{r['running_s']:>11.3f}s")
    print(f"\n{'scenario':<10}{'pods':>6}{'admitted':>10}{'queued':>8}{'verdict':>10}{'drain':>9}  queued because")
    for name, r in scen.items():
        print(f"{name:<10}{r['pods']:>6}{r['admitted']:>10}{r['queued']:>8}{r['seconds_to_verdict']:>9.2f}s"
              f"{r['seconds_to_drain']:>8.2f}s  {r['queued_reasons'] or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
