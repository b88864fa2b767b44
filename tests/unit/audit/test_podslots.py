"""Live pod slots against the capacity model's pod ceiling, from pod objects
(as the API returns them) and from a saved `kubectl get pods -A -o json`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flywheel_runtime.audit import podslots
from flywheel_runtime.topology import load


def _pod(ns: str, node: str | None, phase: str = "Running", name: str | None = None) -> dict:
    return {"metadata": {"namespace": ns, "name": name or f"{ns}-{node}-{phase}"},
            "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


@pytest.fixture(scope="module")
def topo():
    return load()


def test_contract_namespaces(topo) -> None:
    assert podslots.contract_namespaces(topo) == {"arc-systems", "arc-runners", "gitlab-runners"}


def test_counts_live_pods_in_and_outside_the_contract(topo) -> None:
    pods = ([_pod("kube-system", "honey", name=f"sys-{i}") for i in range(70)]
            + [_pod("nix-cache", "honey", name=f"attic-{i}") for i in range(12)]
            + [_pod("arc-runners", "honey", name=f"runner-{i}") for i in range(5)]
            + [_pod("arc-systems", "sting", name="listener")]
            # terminal pods hold no slot; unbound ones are on no node yet
            + [_pod("kube-system", "honey", "Succeeded", name=f"done-{i}") for i in range(30)]
            + [_pod("kube-system", "honey", "Failed", name="failed"), _pod("kube-system", None, "Pending")])
    nodes = {n.node: n for n in podslots.count(topo, pods)}
    honey = nodes["honey"]
    assert (honey.slots, honey.contract, honey.other, honey.free) == (110, 5, 82, 23)
    assert honey.other_by_namespace == {"kube-system": 70, "nix-cache": 12}
    # The capacity model's figures for honey (see the topology capacity tests): 82 pods
    # outside the contract is where tinyland-nix's 16th runner meets "Too many pods".
    assert honey.refused_at["tinyland-nix"] == 82 and honey.refused_at["tinyland-dind"] == 78
    assert honey.reached == ["tinyland-nix", "tinyland-dind"]
    assert (nodes["sting"].contract, nodes["sting"].other, nodes["sting"].reached) == (1, 0, [])
    assert nodes["bumble"].refused_at == {}


def test_cli_from_a_pods_file(tmp_path) -> None:
    items = [_pod("kube-system", "honey", name=f"sys-{i}") for i in range(80)]
    f = tmp_path / "pods.json"
    f.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    cmd = [sys.executable, "-m", "flywheel_runtime", "audit", "pod-slots", "--pods-file", str(f)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first == "honey: 110 pod slots; live 0 in the contract, 80 outside it (kube-system 80); 30 free"
    assert "tinyland-nix at 82 (2 more)" in out.stdout and "tinyland-dind at 78 (reached)" in out.stdout
    failing = subprocess.run(cmd + ["--fail-on-ceiling", "--json"], capture_output=True, text=True)
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["nodes"][0]["reached"] == ["tinyland-dind"]


def test_cli_pods_file_errors(tmp_path) -> None:
    base = [sys.executable, "-m", "flywheel_runtime", "audit", "pod-slots", "--pods-file"]
    missing = subprocess.run(base + [str(tmp_path / "nope.json")], capture_output=True, text=True)
    assert missing.returncode == 7 and len(missing.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = subprocess.run(base + [str(bad)], capture_output=True, text=True)
    assert out.returncode == 12 and "is not `kubectl get pods -o json` output" in out.stderr
