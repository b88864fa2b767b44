"""One Kubernetes client layer: the harness's and the audits' names are the same objects."""

from __future__ import annotations

import ast
from pathlib import Path

import flywheel_runtime
from flywheel_runtime import kube
from flywheel_runtime.audit import kube as audit_kube
from flywheel_runtime.harness import kube as harness_kube

SRC = Path(flywheel_runtime.__file__).parent


def test_harness_and_audits_share_the_client() -> None:
    assert issubclass(harness_kube.Kube, audit_kube.Cluster)
    assert audit_kube.Cluster is kube.Client
    assert harness_kube.wait_for is kube.wait_for and audit_kube.connect is kube.connect
    assert harness_kube.PodVerdict is kube.PodVerdict
    for name in ("list_arc", "patch_arc", "apply_arc", "server_side_apply", "create_pod", "wait_scheduled"):
        assert callable(getattr(kube.Client, name))


def test_the_public_api_is_small() -> None:
    assert set(kube.__all__) == {"ARC_GROUP", "ARC_VERSION", "IN_CLUSTER", "JOB_RESULT_ANNOTATION",
                                    "REQUEST_TIMEOUT_S", "START_DELAY_ANNOTATION", "Client", "PodVerdict",
                                    "api_errors", "connect", "in_cluster", "kubeconfig_path", "wait_for"}


def test_only_the_layer_builds_kubernetes_clients() -> None:
    """Nobody outside flywheel_runtime.kube loads a kubeconfig or builds an ApiClient."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if "kube" == path.parent.name and path.parent.parent == SRC:
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("new_client_from_config", "load_kube_config",
                                                                 "load_incluster_config"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            # ... nor its own typed API handle (the provisioner's storage API included): Client has them.
            if isinstance(node, ast.Attribute) and (node.attr.endswith(("V1Api", "V2Api")) or node.attr in (
                    "ApiClient", "CustomObjectsApi", "DynamicClient", "VersionApi")):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.attr}")
    assert offenders == []


def test_importing_the_layer_does_not_import_kubernetes() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, flywheel_runtime.kube; "
                          "print('kubernetes' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
