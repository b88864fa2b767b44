"""metrics-server's objects are its module's manifests: ``manifests/base``
through its kustomization (the ``k8s-app`` label on every object, selector and
pod template), the release image, plus ``--kubelet-insecure-tls`` for kind."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime import toolchain
from flywheel_runtime.harness import metrics

VERSION = toolchain.KIND_TOOLS["metrics-server"].version


@pytest.fixture(scope="module")
def module() -> Path:
    """The module proxy's copy of sigs.k8s.io/metrics-server at the pinned version."""
    return toolchain.module_dir("sigs.k8s.io/metrics-server", VERSION)


def _kustomized(module: Path) -> list[dict[str, Any]]:
    base = module / "manifests" / "base"
    kz = yaml.safe_load((base / "kustomization.yaml").read_text())
    labels = kz["commonLabels"]
    out = []
    for f in kz["resources"]:
        for d in yaml.safe_load_all((base / f).read_text()):
            if not d:
                continue
            d = copy.deepcopy(d)
            d["metadata"]["labels"] = {**d["metadata"].get("labels", {}), **labels}
            if d["kind"] == "Deployment":
                d["spec"]["selector"] = {"matchLabels": dict(labels)}
                d["spec"]["template"].setdefault("metadata", {})["labels"] = dict(labels)
            if d["kind"] == "Service":
                d["spec"]["selector"] = dict(labels)
            out.append(d)
    release = yaml.safe_load((module / "manifests/components/release/kustomization.yaml").read_text())
    (img,) = release["images"]
    for d in out:
        if d["kind"] == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                if c["image"].split(":")[0] == img["name"]:
                    c["image"] = f"{img['newName']}:{img['newTag']}"
    return out


def _key(d: dict[str, Any]) -> tuple[str, str]:
    return d["kind"], d["metadata"]["name"]


def test_objects_are_the_module_manifests_plus_insecure_tls(module) -> None:
    upstream = {_key(d): d for d in _kustomized(module)}
    ours = {_key(d): d for d in metrics.objects(extra_args=())}
    assert ours.keys() == upstream.keys()
    for k in ours:
        assert ours[k] == upstream[k], k
    (dep,) = [d for d in metrics.objects() if d["kind"] == "Deployment"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][-1] == "--kubelet-insecure-tls" and c["image"] == metrics.image()
    assert metrics.image() == f"registry.k8s.io/metrics-server/metrics-server:{VERSION}"


def test_the_api_service_comes_after_what_serves_it() -> None:
    kinds = [d["kind"] for d in metrics.objects()]
    assert kinds[-1] == "APIService" and kinds.index("Deployment") < kinds.index("APIService")
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")
