"""In-cluster Job manifests from the topology, and the GitHub workflows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel_runtime.canary.jobs import LANES, job_manifest, lane_scale_set
from flywheel_runtime.topology import load
from flywheel_runtime.topology.render import pod

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((ROOT / "canaries" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("lane", ["kvm", "gpu"])
def test_job_keeps_the_lane_pod_and_runs_the_canary(lane: str) -> None:
    topo = load()
    ss = lane_scale_set(topo, lane)
    assert ss.label == LANES[lane]["label"]
    base = pod(topo, ss.name)["spec"]
    job = job_manifest(topo, lane)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["spec"]["backoffLimit"] == 0
    spec = job["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "volumes"):
        assert spec.get(key) == base.get(key), key
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    runner = next(x for x in base["containers"] if x["name"] == "runner")
    assert c["image"] == runner["image"] and c["resources"] == runner["resources"]
    assert c.get("volumeMounts") == runner.get("volumeMounts")
    assert c["command"][:3] == ["flywheel-runtime", "canary", "kvm" if lane == "kvm" else "gpu"]
    if lane == "gpu":
        assert "--require-hardware" in c["command"]
    env = {e["name"] for e in c["env"]}
    assert "ACTIONS_RUNNER_HOOK_JOB_STARTED" not in env and "FLYWHEEL_NODE_NAME" in env
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["flywheel.tinyland.dev/canary"] == lane
    assert "actions.github.com/scale-set-name" not in labels
    # what the device admission policy asks of a pod naming the lane's class
    assert (job["metadata"]["namespace"], spec["serviceAccountName"], labels["flywheel.tinyland.dev/scale-set"]) == (
        ss.namespace, f"{ss.name}-gha-rs-no-permission", ss.name)
    assert spec["runtimeClassName"] == base["runtimeClassName"] and spec["automountServiceAccountToken"] is False


def test_job_manifest_cli(cli) -> None:
    run = cli("canary", "job-manifest", "gpu", "--image", "example.org/runner:test")
    assert run.rc == 0, run.stderr
    doc = yaml.safe_load(run.stdout)
    assert doc["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/runner:test"
    assert "&id" not in run.stdout  # plain YAML, no anchors


def test_job_manifest_bad_topology_exit_3(cli, tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("nodes: [")
    assert cli("canary", "job-manifest", "kvm", "--topology", str(bad)).rc == 3


def test_workflows_validate_against_githubs_schema() -> None:
    assert {p.name for p in WORKFLOWS} >= {"gpu-canary.yml", "kvm-canary.yml"}
    exe = Path(sys.executable).with_name("check-jsonschema")
    p = subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: tinyland-nix-gpu\n    stepz: []\n")
    exe = Path(sys.executable).with_name("check-jsonschema")
    assert subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", str(bad)],
                          capture_output=True).returncode != 0


def test_workflows_target_published_lanes_on_schedule_and_dispatch() -> None:
    published = {lab for ss in load().scale_sets for lab in ss.labels}
    want = {"gpu-canary.yml": ("tinyland-nix-gpu", "--require-hardware"), "kvm-canary.yml": ("tinyland-nix-kvm", "")}
    for path in WORKFLOWS:
        wf = yaml.safe_load(path.read_text())
        on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads a bare `on` key as True
        assert "schedule" in on and "workflow_dispatch" in on
        label, flag = want[path.name]
        (job,) = wf["jobs"].values()
        assert job["runs-on"] == label and label in published
        steps = " ".join(s.get("run", "") for s in job["steps"])
        assert "flywheel-runtime canary" in steps and flag in steps
        assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in job["steps"])
