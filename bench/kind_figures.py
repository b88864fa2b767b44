#!/usr/bin/env python3
"""The kind backend's figures beside the sim's, in one run:

* ``cluster up`` of a throwaway three-node kind cluster (toolchain and node
  image cached), a reusing ``up`` and ``down``;
* per lane, pod create -> scheduled on real kubelets beside the same lane on a
  throwaway sim cluster (kind: envelopes scaled to this machine's nodes), and
  on kind create -> the kubelet taking the pod on;
* first-time build times of the kind toolchain and node image, read from the
  cache's build logs and stamps (a rebuild would cost half an hour).

    .venv/bin/python bench/kind_figures.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid

KIND_UP_TARGET_S = 60.0  # kind's usual 30-60 s with a network, for three nodes
JSON_STDOUT = True


def build_times() -> dict[str, float | None]:
    """Seconds each first build took: the version dir's first file -> its .complete stamp."""
    from flywheel_runtime import toolchain

    out: dict[str, float | None] = {}
    dirs = {name: toolchain.component_dir(name, t.version) for name, t in toolchain.KIND_TOOLS.items()}
    dirs["kubelet+kubeadm+kube-proxy (with the sim's 4)"] = toolchain.component_dir("kubernetes", toolchain.KUBERNETES_VERSION)
    dirs["etcd"] = toolchain.component_dir("etcd", toolchain.ETCD_VERSION)
    for name, base in dirs.items():
        try:
            start = min(p.stat().st_mtime for p in (base / "build.log", base / "src") if p.exists())
            out[name] = round((base / ".complete").stat().st_mtime - start, 1)
        except (OSError, ValueError):
            out[name] = None
    from flywheel_runtime.harness.kind import nodeimage

    for node in sorted((toolchain.cache_root() / "kind-node").glob("*/.complete")):
        for k, v in nodeimage.timings(node.parent).items():
            out[f"node image {k}"] = v
    return out


def rows(doc: dict) -> list[dict]:
    up = doc["kind_up"]
    out = [{"figure": "kind cluster up, 3 nodes, image cached", "ours": f"{up['cold_up_s']:.1f} s",
            "vs": f"sim {doc['sim_up']['cold_up_s']:.1f} s (context)", "ratio": None,
            "target": f"< {KIND_UP_TARGET_S:.0f} s", "met": up["cold_up_s"] < KIND_UP_TARGET_S}]
    for lane, r in doc["lanes"].items():
        out.append({"figure": f"{lane}: create -> scheduled, kind", "ours": f"{r['kind_scheduled_s']:.3f} s",
                    "vs": f"sim {r['sim_scheduled_s']:.3f} s", "ratio": None, "target": None, "met": None})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flywheel_runtime.harness import get_backend, quiet_log
    from flywheel_runtime.harness.benchmarks import pod_latency, time_up
    from flywheel_runtime.harness.fit import scale_to_cluster
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load, render

    topo = load()
    doc: dict = {"build_seconds": build_times()}
    doc["kind_up"] = time_up(f"fig-{uuid.uuid4().hex[:6]}", topo, "kind")
    doc["sim_up"] = time_up(f"fig-{uuid.uuid4().hex[:6]}", topo, "sim")
    lanes: dict[str, dict] = {}
    for backend in ("sim", "kind"):
        cluster = get_backend(backend, f"fig-{backend}-{uuid.uuid4().hex[:6]}", log=quiet_log)
        try:
            kube = connect(cluster.up(topo), check=False)
            kube.ensure_namespace("figures")
            for ss in topo.scale_sets:
                pod = render.pod(topo, ss.name)
                if backend == "kind":
                    pod = scale_to_cluster(pod, topo, kube)
                until = "Running" if backend == "sim" else "kubelet"
                runs = [pod_latency(kube, topo, "figures", ss.name, manifest=pod, until=until)
                        for _ in range(args.rounds)]
                r = lanes.setdefault(ss.name, {})
                r[f"{backend}_scheduled_s"] = round(statistics.median(x["scheduled_s"] for x in runs), 3)
                key = "running_s" if backend == "sim" else "kubelet_s"
                r[f"{backend}_{key}"] = round(statistics.median(x[key] for x in runs), 3)
        finally:
            cluster.down(quiet=True)
    doc["lanes"] = lanes
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print("first-time builds (cache stamps): " + ", ".join(f"{k} {v}s" for k, v in doc["build_seconds"].items()))
    k, s = doc["kind_up"], doc["sim_up"]
    print(f"kind cluster up: cold {k['cold_up_s']}s (target < {KIND_UP_TARGET_S:.0f}s), reuse {k['warm_up_s']}s, "
          f"down {k['down_s']}s; sim: cold {s['cold_up_s']}s, reuse {s['warm_up_s']}s, down {s['down_s']}s")
    print(f"\n{'lane':<34}{'kind sched':>12}{'kind kubelet':>14}{'sim sched':>11}{'sim Running':>13}")
    for lane, r in lanes.items():
        print(f"{lane:<34}{r['kind_scheduled_s']:>11.3f}s{r['kind_kubelet_s']:>13.3f}s"
              f"{r['sim_scheduled_s']:>10.3f}s{r['sim_running_s']:>12.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
