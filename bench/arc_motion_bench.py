#!/usr/bin/env python3
"""A job's life per lane through the real ARC 0.14.0 controller on kind, beside
the design document's cold-start table (runner-topology.txt).

Per lane, one job queued on the Actions service double (in the cluster) and
followed, polling every 0.1 s: queued -> runner pod created -> job started
(the runner stand-in took it and reported it) -> job completed -> runner gone
(the EphemeralRunner deleted).  Cold: minRunners 0, the controller creates the
runner when the listener sees the job.  Warm: tinyland-nix at minRunners 1 (its
business-hours warm pool), the job taken by the idle runner.  Runner images
are loaded in the nodes (cached: no pull).  The Nix overflow lane's /nix seed
time is its seed-nix init container's run (kubelet seconds).

Context for the document's table: it counts image pulls and GitHub
registration; here the images are loaded and the "service" is the double on
the cluster network, and the runner is the test-only stand-in
(tests/e2e/runner_standin/actions_runner.py), not the .NET runner.  This
machine: 2 shared CPUs, runner envelopes scaled to them (harness/fit.py).

Needs the ARC controller image ($FLYWHEEL_ARC_CONTROLLER_IMAGE); without it
the document says so and no row is measured.

    .venv/bin/python bench/arc_motion_bench.py [--cluster NAME] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from flywheel_runtime.kube import ARC_SCALE_SET_LABEL

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "e2e" / "runner_standin" / "actions_runner.py"
STANDIN_CM = "flywheel-actions-runner-standin"
RUNNERS_NS = "arc-runners"
WARM_TARGET_S = 2.0
COLD_DOCKER_TARGET_S = 10.0
NIX_SEED_MARGIN_S = 5.0
JSON_STDOUT = True
# The design document's cold-start table (runner-topology.txt), for the side-by-side rows.
DOCUMENT = {
    "tinyland-docker": "~20-30 s cold (image pull + registration)",
    "tinyland-dind": "~25-35 s cold (larger image, DinD setup)",
    "tinyland-nix": "~90-120 s cold (cache misses dominate)",
    "tinyland-nix warm": "~5-10 s (warm pool)",
}
LANES = ("tinyland-docker", "tinyland-dind", "tinyland-nix", "tinyland-nix-compute-expansion", "tinyland-nix-heavy",
         "tinyland-nix-kvm")


def _ts(value: Any) -> float | None:
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def follow(kube: Any, actions: Any, queue: str, *, timeout: float = 300) -> dict[str, Any]:
    """Queue one job and time its life: every figure is seconds after the queue call."""
    t0 = time.time()
    (job,) = actions.queue(queue, 1, False, "true")
    jid, pod_seen, runner, gone, done = job["id"], None, None, None, None
    stages: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    known = {p.metadata.name for p in kube.core.list_namespaced_pod(RUNNERS_NS).items}
    while time.monotonic() < deadline:
        j = actions.job(jid)
        runner = runner or j.get("runner")
        now = time.time()
        if pod_seen is None:
            fresh = [p for p in kube.core.list_namespaced_pod(RUNNERS_NS).items if p.metadata.name not in known
                     and (p.metadata.labels or {}).get("app.kubernetes.io/component") == "runner"]
            mine = [p for p in fresh if p.metadata.name == runner] if runner else fresh
            if mine:
                pod_seen = now
        if j["state"] in ("started", "completed") and runner and not stages:
            stages = pod_stages(kube, runner, t0)
        if j["state"] == "completed" and done is None:
            done = j
        if done is not None and runner and kube.get_arc("ephemeralrunners", RUNNERS_NS, runner) is None:
            gone = now
            break
        time.sleep(0.1)
    if done is None or gone is None:
        raise SystemExit(f"job {jid} ({queue}) did not finish within {timeout:.0f} s: {actions.job(jid)}")
    out = {"scale_set": done["scale_set"], "node": done["node"], "runner": runner,
           "pod_created_s": round(pod_seen - t0, 2) if pod_seen else None,
           "started_s": round(done["started_at"] - t0, 2), "completed_s": round(done["completed_at"] - t0, 2),
           "gone_s": round(gone - t0, 2), "result": done["result"], "pod_conditions_s": stages}
    return out


def pod_stages(kube: Any, name: str, t0: float) -> dict[str, float]:
    """The runner pod's conditions (the kubelet's whole seconds) after the queue call:
    where a cold start's time goes (scheduling, claims, init containers, containers)."""
    from kubernetes.client.rest import ApiException

    try:
        p = kube.core.read_namespaced_pod(name, RUNNERS_NS)
    except ApiException:
        return {}
    out = {c.type: round((_ts(c.last_transition_time) or t0) - t0, 1) for c in p.status.conditions or []
           if c.status == "True"}
    out["created"] = round((_ts(p.metadata.creation_timestamp) or t0) - t0, 1)
    return out


def seed_seconds(kube: Any, lane: str) -> float | None:
    """The lane's last seed-nix init container run, from the kubelet's times (whole seconds)."""
    best = None
    for p in kube.core.list_namespaced_pod(RUNNERS_NS).items:
        if (p.metadata.labels or {}).get(ARC_SCALE_SET_LABEL) != lane:
            continue
        for s in p.status.init_container_statuses or []:
            t = s.state.terminated
            if s.name == "seed-nix" and t is not None:
                best = (_ts(t.finished_at) or 0) - (_ts(t.started_at) or 0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", default="arc-bench", help="kind cluster name (a running one is reused)")
    ap.add_argument("--keep", action="store_true", help="leave a cluster this run started")
    ap.add_argument("--json", action="store_true", help="print the document (bench/run.py reads it) instead of the table")
    args = ap.parse_args()
    image = os.environ.get("FLYWHEEL_ARC_CONTROLLER_IMAGE", "")
    if not image:
        skipped = {"skipped": "needs the ARC 0.14.0 controller image: set FLYWHEEL_ARC_CONTROLLER_IMAGE"}
        print(json.dumps(skipped) if args.json else f"skipped: {skipped['skipped']}")
        return 0

    from flywheel_runtime import toolchain
    from flywheel_runtime.actions import ActionsClient
    from flywheel_runtime.harness import get_backend
    from flywheel_runtime.harness.kind import arc, engine
    from flywheel_runtime.kube import connect, wait_for
    from flywheel_runtime.topology import load

    topo = load()
    say = lambda m: print(f"bench: {m}", file=sys.stderr, flush=True)  # noqa: E731
    backend = get_backend("kind", args.cluster, log=say)
    started = not backend.status().running
    backend.up(topo)
    doc: dict[str, Any] = {"cluster": args.cluster, "lanes": {}}
    try:
        kube = connect(backend.kubeconfig, check=False)
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STANDIN_CM, "namespace": RUNNERS_NS},
                    "data": {"actions_runner.py": STANDIN.read_text()}})
        eng = engine.start(toolchain.cache_root())
        hook = arc.mount_over_run_sh(STANDIN_CM, "actions_runner.py")
        res = arc.install(backend, eng, kube, topo, image, values_hook=hook, log=say)  # type: ignore[arg-type]
        doc["install"] = res.seconds
        actions = ActionsClient(res.double_url)
        time.sleep(10)  # listeners recreated by the install's spec change settle into their sessions
        # Cold means no idle runner: the warm pool's minimum (business hours) off for the cold rows.
        nix_set = kube.get_arc("autoscalingrunnersets", RUNNERS_NS, "tinyland-nix")
        if nix_set is None:
            raise SystemExit("the install left no tinyland-nix AutoscalingRunnerSet")
        warm_min = int(nix_set["spec"].get("minRunners") or 0)
        kube.patch_arc("autoscalingrunnersets", RUNNERS_NS, "tinyland-nix", {"spec": {"minRunners": 0}})
        wait_for(lambda: not [r for r in kube.list_arc("ephemeralrunners", RUNNERS_NS)
                              if r["metadata"]["labels"].get(ARC_SCALE_SET_LABEL) == "tinyland-nix"],
                 300, "no idle tinyland-nix runner", interval=0.5)
        for lane in LANES:
            say(f"cold: {lane}")
            r = follow(kube, actions, lane)
            if lane == "tinyland-nix-compute-expansion":
                r["seed_nix_s"] = seed_seconds(kube, lane)
            doc["lanes"][lane] = r
        # Warm: the business-hours minimum, the idle runner up, then the job.
        kube.patch_arc("autoscalingrunnersets", RUNNERS_NS, "tinyland-nix", {"spec": {"minRunners": 1}})
        wait_for(lambda: any((p.metadata.labels or {}).get(ARC_SCALE_SET_LABEL) == "tinyland-nix"
                             and p.status.phase == "Running" for p in kube.core.list_namespaced_pod(RUNNERS_NS).items),
                 300, "the warm runner", interval=0.5)
        time.sleep(5)  # the stand-in is polling the double for a job
        say("warm: tinyland-nix")
        doc["lanes"]["tinyland-nix warm"] = follow(kube, actions, "tinyland-nix")
        kube.patch_arc("autoscalingrunnersets", RUNNERS_NS, "tinyland-nix", {"spec": {"minRunners": warm_min}})
    finally:
        if started and not args.keep:
            backend.down(quiet=True)
    print(json.dumps(doc, indent=2) if args.json else table(doc))
    return 0


def table(doc: dict[str, Any]) -> str:
    """Per lane: the job's life in seconds from the queue call, the target, the document's row."""
    head = ("lane", "node", "pod", "scheduled by", "started", "completed", "gone", "target", "", "document (context)")
    cells = [head]
    for (lane, r), row in zip(doc["lanes"].items(), rows(doc)):
        verdict = "" if row["met"] is None else ("ok" if row["met"] else "MISSED")
        # The condition carries whole seconds: the pod was scheduled before that second ended.  The
        # warm row's pod was scheduled before its job was queued: no figure.
        at = (r.get("pod_conditions_s") or {}).get("PodScheduled") if r["pod_created_s"] is not None else None
        scheduled = None if at is None else round(at + 1.0, 2)
        cells.append((lane, r["node"] or "", _s(r["pod_created_s"]), _s(scheduled), _s(r["started_s"]),
                      _s(r["completed_s"]), _s(r["gone_s"]), row["target"] or "", verdict,
                      DOCUMENT.get(lane, "no row")))
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    install = ", ".join(f"{k} {v}" for k, v in doc.get("install", {}).items())
    note = ("scheduled by: the end of the second in the pod's PodScheduled condition (the API keeps whole "
            "seconds); a lane with WaitForFirstConsumer claims is scheduled only once the provisioner has made them")
    return "\n".join([*lines, "", note, f"install: {install}"])


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if "skipped" in doc:
        return [{"figure": "ARC in motion (kind)", "ours": "skipped", "vs": doc["skipped"], "ratio": None,
                 "target": None, "met": None}]
    out = []
    for lane, r in doc["lanes"].items():
        target, met = None, None
        if lane == "tinyland-nix warm":
            target, met = f"start < {WARM_TARGET_S:g} s", r["started_s"] < WARM_TARGET_S
        elif lane == "tinyland-docker":
            target, met = f"start < {COLD_DOCKER_TARGET_S:g} s", r["started_s"] < COLD_DOCKER_TARGET_S
        elif r.get("seed_nix_s") is not None:
            limit = r["seed_nix_s"] + NIX_SEED_MARGIN_S
            target, met = f"start < seed {r['seed_nix_s']:g} s + {NIX_SEED_MARGIN_S:g} s", r["started_s"] < limit
        out.append({"figure": f"{lane}: queued -> pod {r['pod_created_s']} s -> started -> completed "
                              f"{r['completed_s']} s -> runner gone {r['gone_s']} s",
                    "ours": f"{r['started_s']:.2f} s to start",
                    "vs": f"document: {DOCUMENT.get(lane, 'no row')} (context)", "ratio": None,
                    "target": target, "met": met})
    return out


if __name__ == "__main__":
    sys.exit(main())
