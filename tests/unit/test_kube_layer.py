"""One Kubernetes client layer, under one name: ``flywheel_runtime.kube.Client``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import flywheel_runtime
from flywheel_runtime import kube

SRC = Path(flywheel_runtime.__file__).parent
REPO = SRC.parents[1]


def test_the_client_has_the_whole_surface() -> None:
    for name in ("list_arc", "patch_arc", "apply_arc", "server_side_apply", "create_pod", "wait_scheduled"):
        assert callable(getattr(kube.Client, name))


@pytest.mark.parametrize("module", ["flywheel_runtime.audit.kube", "flywheel_runtime.harness.kube"])
def test_the_old_aliases_are_gone(module: str) -> None:
    """The audits' ``Cluster`` and the harness's ``Kube`` were other names for the same client."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_no_other_name_for_the_client() -> None:
    """Nothing subclasses Client or binds it to another name (``import Client as X``, ``X = Client``),
    in the package, its tests or the bench scripts; a test's stand-in may subclass it."""
    offenders = []
    for path in [*SRC.rglob("*.py"), *(REPO / "bench").glob("*.py"), *(REPO / "tests").rglob("*.py")]:
        if path.parent == SRC / "kube":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flywheel_runtime.kube"):
                offenders += [f"{path}:{node.lineno} as {a.asname}" for a in node.names
                              if a.name == "Client" and a.asname not in (None, "Client")]
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id == "Client":
                offenders.append(f"{path}:{node.lineno} = Client")
            if isinstance(node, ast.ClassDef) and path.is_relative_to(SRC) and any(
                    getattr(b, "id", getattr(b, "attr", None)) == "Client" for b in node.bases):
                offenders.append(f"{path}:{node.lineno} class {node.name}(Client)")
    assert offenders == []


def test_the_public_api_is_small() -> None:
    assert set(kube.__all__) == {"ARC_GROUP", "ARC_SCALE_SET_LABEL", "ARC_VERSION", "IN_CLUSTER",
                                    "JOB_RESULT_ANNOTATION",
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
