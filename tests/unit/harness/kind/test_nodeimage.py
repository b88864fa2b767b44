"""nodeimage.py's archive writer and image table, without an engine."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from flywheel_runtime.errors import BuildError
from flywheel_runtime import toolchain
from flywheel_runtime.harness.kind import nodeimage


def _layer(tmp_path: Path, name: str, body: bytes) -> Path:
    src = tmp_path / f"{name}.bin"
    src.write_bytes(body)
    src.chmod(0o755)
    return nodeimage.binary_layer(tmp_path / f"{name}.tar", {f"/usr/local/bin/{name}": src})


def test_archive_leads_with_fully_qualified_repositories(tmp_path: Path) -> None:
    shared = _layer(tmp_path, "base", b"base")
    a = nodeimage.ArchiveImage(["registry.k8s.io/etcd:3.6.8-0"], [shared], entrypoint=["/usr/local/bin/base"])
    b = nodeimage.ArchiveImage(["docker.io/kindest/local-path-helper:v1", "localhost/x/helper:v1"],
                               [shared, _layer(tmp_path, "top", b"top")])
    out = nodeimage.write_archive(tmp_path / "images.tar", [a, b])
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        cfg = json.load(tf.extractfile(manifest[1]["Config"]))  # type: ignore[arg-type]
    assert names[:2] == ["repositories", "manifest.json"]  # kind reads the first of the two
    # every tag of every image, not only the first manifest entry's
    assert sorted(nodeimage.archive_tags(out)) == sorted(a.tags + b.tags)
    assert [m["RepoTags"] for m in manifest] == [a.tags, b.tags]
    # the shared layer is stored once; diff_ids are the layers' own digests
    assert sum(n.endswith("/layer.tar") for n in names) == 2
    digest = hashlib.sha256(shared.read_bytes()).hexdigest()
    assert cfg["rootfs"]["diff_ids"][0] == f"sha256:{digest}" and manifest[0]["Layers"] == [f"{digest}/layer.tar"]
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"


def test_binary_layer_holds_the_binary_passwd_and_tmp(tmp_path: Path) -> None:
    layer = _layer(tmp_path, "etcd", b"\x7fELF")
    with tarfile.open(layer) as tf:
        members = {m.name: m for m in tf}
        assert tf.extractfile("usr/local/bin/etcd").read() == b"\x7fELF"  # type: ignore[union-attr]
    assert members["usr/local/bin/etcd"].mode & 0o111 and members["usr/local/bin/etcd"].uid == 0
    assert "etc/passwd" in members and members["tmp"].mode == 0o1777


def test_stop_signal_and_entrypoint_reach_the_config(tmp_path: Path) -> None:
    img = nodeimage.ArchiveImage(["localhost/flywheel/kind-base:k"], [_layer(tmp_path, "x", b"x")],
                                 entrypoint=["/usr/local/bin/entrypoint", "/sbin/init"], stop_signal="SIGRTMIN+3")
    cfg = img.config(["0" * 64])["config"]
    assert cfg["StopSignal"] == "SIGRTMIN+3" and cfg["Entrypoint"] == ["/usr/local/bin/entrypoint", "/sbin/init"]


SANDBOX = f"registry.k8s.io/pause:{toolchain.PAUSE_VERSION}"


def _images() -> dict[str, nodeimage.ArchiveImage]:
    return {"@etcd": nodeimage.ArchiveImage([], []), "@pause": nodeimage.ArchiveImage([], []),
            "@coredns": nodeimage.ArchiveImage([], []),
            f"registry.k8s.io/kube-apiserver:{toolchain.KUBERNETES_VERSION}": nodeimage.ArchiveImage([], [])}


def test_kubeadm_references_are_taken_when_the_pins_match() -> None:
    images = _images()
    etcd = toolchain.ETCD_VERSION.lstrip("v")
    nodeimage._assign_kubeadm_tags(images, [
        f"registry.k8s.io/kube-apiserver:{toolchain.KUBERNETES_VERSION}", f"registry.k8s.io/etcd:{etcd}-0",
        "registry.k8s.io/pause:3.99",  # kubeadm's own pause is replaced by the sandbox image
        f"registry.k8s.io/coredns/coredns:{toolchain.KIND_TOOLS['coredns'].version}"], SANDBOX)
    assert images["@etcd"].tags == [f"registry.k8s.io/etcd:{etcd}-0"]
    assert images["@pause"].tags == [SANDBOX]
    assert images["@coredns"].tags == [f"registry.k8s.io/coredns/coredns:{toolchain.KIND_TOOLS['coredns'].version}"]


@pytest.mark.parametrize("ref, match", [
    ("registry.k8s.io/etcd:3.9.9-0", "wants registry.k8s.io/etcd:3.9.9-0 but the pinned etcd is"),
    ("registry.k8s.io/coredns/coredns:v9.9.9", "pinned coredns is"),
    ("registry.k8s.io/kube-something:v1", "which the node image does not build"),
])
def test_a_kubeadm_pin_drift_is_one_clear_line(ref: str, match: str) -> None:
    with pytest.raises(BuildError, match=match):
        nodeimage._assign_kubeadm_tags(_images(), [ref], SANDBOX)
    with pytest.raises(BuildError, match="pinned pause is"):
        nodeimage._assign_kubeadm_tags(_images(), [], "registry.k8s.io/pause:9.9")


def test_sandbox_ref_is_read_from_kinds_containerd_config() -> None:
    kind_cfg = (toolchain.module_dir("sigs.k8s.io/kind", toolchain.KIND_TOOLS["kind"].version)
                / "images/base/files/etc/containerd/config.toml").read_text()
    assert nodeimage.sandbox_ref(kind_cfg) == SANDBOX


def test_no_registry_is_a_refused_local_port() -> None:
    import tomllib

    hosts = tomllib.loads(nodeimage.NO_REGISTRY_HOSTS_TOML)
    assert hosts["server"] == nodeimage.NO_REGISTRY and set(hosts["host"]) == {nodeimage.NO_REGISTRY}
    assert nodeimage.NO_REGISTRY.startswith("http://127.0.0.1:")


def test_the_harness_builds_the_topologys_kubernetes() -> None:
    from flywheel_runtime.topology import load

    assert toolchain.KUBERNETES_VERSION == "v" + load().kubernetes_version
