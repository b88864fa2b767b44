"""The audit commands' error contract (no cluster needed to hit it) and the
ARC CRDs shipped for the sim cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel_runtime.errors import ExitCode

CRD_DIR = Path(__file__).resolve().parents[3] / "src" / "flywheel_runtime" / "harness" / "crds"

CLUSTER_COMMANDS = [
    ["audit", "imagefs", "--node", "bumble"],
    ["audit", "labels"],
    ["prove", "listener-caps", "--deadline", "1"],
    ["reap", "leaked-runners"],
    ["cleanup", "runner-pods"],
    ["warm-pool", "reconcile"],
]


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *argv], capture_output=True, text=True,
                          env=env, timeout=60)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    env.update(extra)
    return env


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
           "clusters": [{"name": "t", "cluster": {"server": server}}],
           "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
           "users": [{"name": "u", "user": {"token": "x"}}]}
    p = tmp_path / "kubeconfig"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("argv", CLUSTER_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_kubeconfig_is_exit_4_with_one_line(tmp_path: Path, argv: list[str]) -> None:
    out = cli(*argv, env=_env(tmp_path))
    assert out.returncode == ExitCode.KUBECONFIG, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines == ["flywheel-runtime: no kubeconfig: pass --kubeconfig, set $KUBECONFIG, or create ~/.kube/config"]


@pytest.mark.parametrize("argv", CLUSTER_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_unreachable_cluster_is_exit_4_naming_the_server(tmp_path: Path, argv: list[str]) -> None:
    server = f"https://127.0.0.1:{_closed_port()}"
    out = cli(*argv, "--kubeconfig", str(_kubeconfig(tmp_path, server)), env=_env(tmp_path))
    assert out.returncode == ExitCode.KUBECONFIG, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and server in lines[0] and "unreachable" in lines[0]


def test_unusable_kubeconfig_is_exit_4(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    out = cli("reap", "leaked-runners", env=_env(tmp_path, KUBECONFIG=str(bad)))
    assert out.returncode == ExitCode.KUBECONFIG
    assert len(out.stderr.strip().splitlines()) == 1 and str(bad) in out.stderr


def test_bad_now_is_a_usage_error(tmp_path: Path) -> None:
    out = cli("cleanup", "runner-pods", "--now", "yesterday", env=_env(tmp_path))
    assert out.returncode == ExitCode.USAGE and "not an ISO 8601 time" in out.stderr


def test_warm_pool_for_a_scale_set_without_one_is_a_topology_error(tmp_path: Path) -> None:
    out = cli("warm-pool", "reconcile", "--scale-set", "tinyland-docker", env=_env(tmp_path))
    assert out.returncode == ExitCode.TOPOLOGY_INVALID and "has no warm pool" in out.stderr


def test_offline_commands_and_modules_do_not_import_kubernetes() -> None:
    code = ("import sys, json, flywheel_runtime.audit._cli, flywheel_runtime.audit.imagefs, "
            "flywheel_runtime.audit.reaper, flywheel_runtime.audit.listener, flywheel_runtime.audit.labels, "
            "flywheel_runtime.audit.cleanup, flywheel_runtime.audit.warmpool, flywheel_runtime.audit.alerts, "
            "flywheel_runtime.kube; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not [m for m in json.loads(out.stdout) if m.split(".")[0] == "kubernetes"]


# -- CRDs ------------------------------------------------------------------------

EXPECTED_FIELDS = {
    "AutoscalingRunnerSet": ({"githubConfigUrl", "githubConfigSecret", "runnerGroup", "runnerScaleSetName",
                              "runnerScaleSetLabels", "template", "listenerTemplate", "minRunners", "maxRunners"},
                             {"currentRunners", "phase", "pendingEphemeralRunners", "runningEphemeralRunners",
                              "failedEphemeralRunners"}),
    "EphemeralRunnerSet": ({"replicas", "patchID", "ephemeralRunnerSpec"},
                           {"currentReplicas", "pendingEphemeralRunners", "runningEphemeralRunners",
                            "failedEphemeralRunners", "phase"}),
    "EphemeralRunner": (set(), {"ready", "phase", "reason", "message", "runnerId", "runnerName", "failures",
                                "jobRequestId", "jobId", "jobRepositoryName", "jobWorkflowRef", "workflowRunId",
                                "jobDisplayName"}),
    "AutoscalingListener": ({"githubConfigUrl", "runnerScaleSetId", "autoscalingRunnerSetNamespace",
                             "autoscalingRunnerSetName", "ephemeralRunnerSetName", "minRunners", "maxRunners",
                             "image", "template"}, set()),
}


def _crds() -> dict[str, dict]:
    docs = [d for f in sorted(CRD_DIR.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["spec"]["names"]["kind"]: d for d in docs}


def test_arc_crds_are_namespaced_structural_with_status_subresource() -> None:
    crds = _crds()
    assert set(crds) == set(EXPECTED_FIELDS)
    for kind, crd in crds.items():
        spec = crd["spec"]
        assert spec["group"] == "actions.github.com" and spec["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.actions.github.com"
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        props = schema["properties"]
        want_spec, want_status = EXPECTED_FIELDS[kind]
        assert want_spec <= set((props["spec"].get("properties") or {})), kind
        assert want_status <= set((props["status"].get("properties") or {})), kind


def test_job_id_types_follow_arc() -> None:
    status = _crds()["EphemeralRunner"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    p = status["properties"]
    assert p["jobRequestId"] == {"type": "integer", "format": "int64"}
    assert p["workflowRunId"] == {"type": "integer", "format": "int64"}
    assert p["jobId"]["type"] == "string"
    assert set(p["phase"]["enum"]) == {"Pending", "Running", "Succeeded", "Failed", "Outdated"}
