"""An offline kind node image for the topology's pinned Kubernetes version.

Nothing is pulled.  The pieces:

* a Debian rootfs from ``debootstrap`` with what kind's base image installs,
  plus kind's own ``images/base/files`` (entrypoint, units, helpers) read from
  the kind module in the Go module cache, and containerd, runc, crictl and the
  CNI plugins: loaded into the engine as the *base image*;
* every image the node must hold (the control plane, kube-proxy, etcd, CoreDNS,
  pause, the local-path provisioner and its helper), written here as
  docker-archive tars of the binaries built from the Go module proxy;
* ``kind build node-image --type file`` over a release-layout tarball of those,
  with ``--base-image`` the local base image.

The images kubeadm wants are read from the built ``kubeadm config images
list``, not written here.  Names use the ``localhost/`` registry so that the
pull kind attempts for its base image goes nowhere but this machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain
from flywheel_runtime.errors import BuildError

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.harness.kind.engine import Engine

# Bump when the image layout below changes: it is part of the cache key.
LAYOUT = "3"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# kind v0.33.0's images/base/Dockerfile list (less nfs-common/open-iscsi), plus
# Debian's CNI plugins (ptp, host-local, loopback, portmap) for the static CNI.
NODE_PACKAGES = (
    "systemd", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount", "kmod",
    "libseccomp2", "pigz", "fuse-overlayfs", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
    "containernetworking-plugins",
)
CNI_PLUGINS = ("ptp", "host-local", "loopback", "portmap", "bridge")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NO_REGISTRY = "http://127.0.0.1:1"
NO_REGISTRY_HOSTS_TOML = (f'# flywheel-runtime: images are loaded, never pulled (offline; no packet leaves)\n'
                          f'server = "{NO_REGISTRY}"\n\n[host."{NO_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n')

# Images kind v0.33.0 preloads besides kubeadm's list (pkg/build/nodeimage/const_*.go).
KINDNETD_IMAGE = "docker.io/kindest/kindnetd:v20260820-69b56db7"
LPP_IMAGE = "docker.io/kindest/local-path-provisioner:v20260820-69b56db7"
LPP_HELPER_IMAGE = "docker.io/kindest/local-path-helper:v20260131-7181c60a"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- docker archives


@dataclass
class ArchiveImage:
    """One image for a docker-archive: its tags, layer tars (bottom first) and config."""

    tags: list[str]
    layers: list[Path]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    user: str | None = None

    def config(self, diff_ids: list[str]) -> dict[str, Any]:
        cfg: dict[str, Any] = {"Env": self.env, "Labels": self.labels}
        if self.entrypoint is not None:
            cfg["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            cfg["Cmd"] = self.cmd
        if self.stop_signal:
            cfg["StopSignal"] = self.stop_signal
        if self.user:
            cfg["User"] = self.user
        return {
            "architecture": "amd64", "os": "linux", "config": cfg,
            "created": "1970-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "flywheel-runtime nodeimage"}
                        for _ in diff_ids],
        }


def _split_tag(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        raise BuildError(f"image reference {ref!r} has no tag")
    return repo, tag


def write_archive(path: Path, images: list[ArchiveImage]) -> Path:
    """A docker-archive holding ``images``, fully qualified ``repositories`` first.

    kind reads an archive's tags from whichever of ``repositories`` and
    ``manifest.json`` comes first (and only the first manifest entry), so the
    legacy file leads; ``docker load`` and ``ctr import`` read ``manifest.json``.
    """
    diff: dict[Path, str] = {}
    for img in images:
        for layer in img.layers:
            if layer not in diff:
                diff[layer] = _sha256_file(layer)
    repositories: dict[str, dict[str, str]] = {}
    manifest, configs = [], {}
    for img in images:
        ids = [diff[layer] for layer in img.layers]
        blob = json.dumps(img.config(ids), sort_keys=True).encode()
        cid = hashlib.sha256(blob).hexdigest()
        configs[f"{cid}.json"] = blob
        manifest.append({"Config": f"{cid}.json", "RepoTags": img.tags,
                         "Layers": [f"{i}/layer.tar" for i in ids]})
        for ref in img.tags:
            repo, tag = _split_tag(ref)
            repositories.setdefault(repo, {})[tag] = ids[-1]

    def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tf.addfile(info, io.BytesIO(data))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        add_bytes(tf, "repositories", json.dumps(repositories).encode())
        add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
        for name, blob in configs.items():
            add_bytes(tf, name, blob)
        for layer, lid in diff.items():
            add_bytes(tf, f"{lid}/VERSION", b"1.0")
            add_bytes(tf, f"{lid}/json", json.dumps({"id": lid}).encode())
            tf.add(layer, arcname=f"{lid}/layer.tar")
    tmp.rename(path)
    return path


def archive_tags(path: Path) -> list[str]:
    """Tags as kind reads them: from the first of ``repositories``/``manifest.json``."""
    with tarfile.open(path) as tf:
        for m in tf:
            if m.name in ("repositories", "manifest.json"):
                data = json.load(tf.extractfile(m))  # type: ignore[arg-type]
                if m.name == "repositories":
                    return [f"{r}:{t}" for r, tags in data.items() for t in tags]
                return list(data[0]["RepoTags"])
    raise BuildError(f"{path}: not a docker archive (no repositories or manifest.json)")


def binary_layer(out: Path, files: dict[str, Path], *, passwd: bool = True) -> Path:
    """A layer of static binaries at the given image paths, plus /etc/passwd and /tmp."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        seen: set[str] = set()

        def dirs(p: str) -> None:
            parts = p.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tf.addfile(info)

        for name, src in sorted(files.items()):
            dirs(name)
            info = tf.gettarinfo(str(src), arcname=name.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with src.open("rb") as fh:
                tf.addfile(info, fh)
        if passwd:
            dirs("etc/passwd")
            data = b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
            info = tarfile.TarInfo("etc/passwd")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo("tmp")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777, 0
            tf.addfile(info)
    return out


def dir_layer(out: Path, root: Path) -> Path:
    """A layer of a whole directory tree (numeric owners, devices, links kept)."""
    tmp = out.with_suffix(".partial")
    proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tmp), "."],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"tar of {root} failed: {proc.stderr.strip()[-300:]}")
    tmp.rename(out)
    return out


# ---------------------------------------------------------------- the node image


@dataclass(frozen=True)
class NodeImage:
    name: str  # the image kind creates nodes from
    key: str
    workdir: Path
    required_images: tuple[str, ...]


def _key(tc: toolchain.KindToolchain) -> str:
    parts = [LAYOUT, DEBIAN_SUITE, " ".join(NODE_PACKAGES), toolchain.KUBERNETES_VERSION, toolchain.ETCD_VERSION,
             toolchain.PAUSE_VERSION, KINDNETD_IMAGE, LPP_IMAGE, LPP_HELPER_IMAGE]
    parts += [f"{t.name}={t.version}" for t in toolchain.KIND_TOOLS.values()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _chroot(rootfs: Path, *cmd: str) -> None:
    proc = subprocess.run(["chroot", str(rootfs), *cmd], capture_output=True, text=True,
                          env={"PATH": PATH_ENV.split("=", 1)[1], "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0:
        raise BuildError(f"chroot {' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


def debian_rootfs(dest: Path, packages: tuple[str, ...], *, variant: str = "minbase") -> Path:
    """``debootstrap`` a Debian rootfs (once: a stamp marks it finished)."""
    stamp = dest.parent / f".{dest.name}.complete"
    if stamp.exists() and dest.is_dir():
        return dest
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed: apt-get install debootstrap (./dev does)")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log = dest.parent / f"{dest.name}.debootstrap.log"
    with log.open("wb") as fh:
        proc = subprocess.run(["debootstrap", f"--variant={variant}", "--include=" + ",".join(packages),
                               DEBIAN_SUITE, str(dest), DEBIAN_MIRROR], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"debootstrap {DEBIAN_SUITE} failed: {tail[0][:300]} (log: {log})")
    # A smaller image: no apt lists, docs or caches are needed at run time.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale"):
        p = dest / junk
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    stamp.write_text(DEBIAN_SUITE + "\n")
    return dest


def _install(src: Path, dest: Path, mode: int = 0o755) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def _prepare_node_rootfs(rootfs: Path, tc: toolchain.KindToolchain) -> None:
    """What kind's base Dockerfile does after installing packages."""
    kind_files = toolchain.module_dir("sigs.k8s.io/kind", toolchain.KIND_TOOLS["kind"].version) / "images" / "base" / "files"
    for src in kind_files.rglob("*"):
        if src.is_dir() or "LICENSES" in src.parts:
            continue
        rel = src.relative_to(kind_files)
        executable = rel.parts[0] == "usr" or rel.parts[:2] == ("kind", "bin")
        _install(src, rootfs / rel, 0o755 if executable else 0o644)
    for d in ("kind", "kind/bin", "etc/kubernetes/manifests", "opt/cni/bin", "etc/cni/net.d"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
        (rootfs / d).chmod(0o755)
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        _install(tc.tools["containerd"] / name, rootfs / "usr/local/bin" / name)
    _install(tc.tools["runc"] / "runc", rootfs / "usr/local/sbin/runc")
    _install(tc.tools["crictl"] / "crictl", rootfs / "usr/local/bin/crictl")
    for plugin in CNI_PLUGINS:
        src = rootfs / "usr/lib/cni" / plugin
        if not src.exists():
            raise BuildError(f"the node rootfs lacks the CNI plugin {plugin} (containernetworking-plugins)")
        link = rootfs / "opt/cni/bin" / plugin
        link.unlink(missing_ok=True)
        link.symlink_to(f"/usr/lib/cni/{plugin}")
    # cri-base.json as kind makes it: ctr's default spec + the product-files hook, no rlimits.
    spec = json.loads(subprocess.run([str(tc.tools["containerd"] / "ctr"), "oci", "spec"],
                                     capture_output=True, text=True, check=True).stdout)
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/kind/bin/mount-product-files.sh"})
    spec.get("process", {}).pop("rlimits", None)
    (rootfs / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2))
    # No registry is reachable from here, and a pull attempt would send packets out:
    # every registry resolves to a refused local port, so a missing image fails at once.
    hosts = rootfs / "etc/containerd/certs.d/_default/hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(NO_REGISTRY_HOSTS_TOML)
    wants = rootfs / "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service"
    wants.unlink(missing_ok=True)
    for pattern in ("lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
                    "lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
                    "lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*"):
        for p in rootfs.glob(pattern):
            p.unlink(missing_ok=True)
    journald = rootfs / "etc/systemd/journald.conf"
    if "ReadKMsg=no" not in journald.read_text():
        with journald.open("a") as fh:
            fh.write("ReadKMsg=no\n")
    init = rootfs / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/usr/lib/systemd/systemd")
    _chroot(rootfs, "systemctl", "enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service")
    _chroot(rootfs, "systemctl", "mask", "systemd-binfmt.service")


def _image_layers(work: Path, tc: toolchain.KindToolchain, rootfs_layer: Path) -> dict[str, ArchiveImage]:
    """Every image the node holds, keyed by the reference kubeadm or kind asks for."""
    kube = tc.kube
    label = {"org.opencontainers.image.source": "built offline by flywheel-runtime from the Go module proxy"}

    def single(name: str, binary: Path, path: str, entry: list[str] | None, version: str) -> Path:
        return binary_layer(work / "layers" / f"{name}-{version}.tar", {path: binary})

    v = toolchain.KUBERNETES_VERSION
    images: dict[str, ArchiveImage] = {}
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        layer = single(comp, kube / comp, f"/usr/local/bin/{comp}", None, v)
        images[f"registry.k8s.io/{comp}:{v}"] = ArchiveImage(
            [f"registry.k8s.io/{comp}:{v}"], [layer], entrypoint=[f"/usr/local/bin/{comp}"], labels=label)
    # kube-proxy programs iptables/nft and conntrack: the node rootfs carries them.
    proxy = single("kube-proxy", kube / "kube-proxy", "/usr/local/bin/kube-proxy", None, v)
    images[f"registry.k8s.io/kube-proxy:{v}"] = ArchiveImage(
        [f"registry.k8s.io/kube-proxy:{v}"], [rootfs_layer, proxy], entrypoint=["/usr/local/bin/kube-proxy"],
        labels=label)
    etcd = binary_layer(work / "layers" / f"etcd-{toolchain.ETCD_VERSION}.tar",
                        {"/usr/local/bin/etcd": tc.etcd / "etcd"})
    pause = binary_layer(work / "layers" / f"pause-{toolchain.PAUSE_VERSION}.tar", {"/pause": tc.pause / "pause"},
                         passwd=False)
    coredns = binary_layer(work / "layers" / f"coredns-{toolchain.KIND_TOOLS['coredns'].version}.tar",
                           {"/coredns": tc.tools["coredns"] / "coredns"})
    lpp = binary_layer(work / "layers" / "local-path-provisioner.tar",
                       {"/usr/local/bin/local-path-provisioner": tc.tools["local-path-provisioner"]
                        / "local-path-provisioner"})
    # Under kubeadm's names: the versions are the ones kubeadm pins (checked in build_node_image).
    extra = {
        "etcd": ArchiveImage([], [etcd], entrypoint=None, labels=label),
        "pause": ArchiveImage([], [pause], entrypoint=["/pause"], labels=label, user="65535:65535"),
        "coredns": ArchiveImage([], [coredns], entrypoint=["/coredns"], labels=label),
    }
    images["@etcd"], images["@pause"], images["@coredns"] = extra["etcd"], extra["pause"], extra["coredns"]
    # kind's default storage runs under kind's tag: the real provisioner, at the newest
    # version the proxy serves (v0.0.30; kind's own build is v0.0.34).
    lpp_v = toolchain.KIND_TOOLS["local-path-provisioner"].version
    images[LPP_IMAGE] = ArchiveImage(
        [LPP_IMAGE, f"localhost/flywheel/local-path-provisioner:{lpp_v}"], [lpp],
        entrypoint=["/usr/local/bin/local-path-provisioner"],
        labels={**label, "flywheel.tinyland.dev/upstream": f"github.com/rancher/local-path-provisioner {lpp_v}"})
    # metrics-server (the HPAs' and `kubectl top`'s metrics.k8s.io) under its release tag,
    # as upstream's image: the static binary at /metrics-server, run as uid 1000.
    from flywheel_runtime.harness import metrics

    ms_v = toolchain.KIND_TOOLS["metrics-server"].version
    ms = binary_layer(work / "layers" / f"metrics-server-{ms_v}.tar",
                      {"/metrics-server": tc.tools["metrics-server"] / "metrics-server"})
    images[metrics.image()] = ArchiveImage(
        [metrics.image()], [ms], entrypoint=["/metrics-server"], labels={
            **label, "flywheel.tinyland.dev/upstream": f"sigs.k8s.io/metrics-server {ms_v}"})
    # The helper runs the provisioner's setup/teardown shell scripts: a shell and coreutils.
    images[LPP_HELPER_IMAGE] = ArchiveImage([LPP_HELPER_IMAGE], [rootfs_layer], labels=label)
    # kindnetd cannot be had offline (its module is refused); kind preloads it anyway, so
    # a stand-in under its tag fails loudly if anything ever runs it.  Pod routes come from
    # the harness (see kind.py), and the cluster config disables the default CNI.
    images[KINDNETD_IMAGE] = ArchiveImage(
        [KINDNETD_IMAGE], [rootfs_layer],
        entrypoint=["/bin/sh", "-c", "echo 'kindnetd is not available offline: flywheel-runtime routes pods "
                    "itself (disableDefaultCNI)' >&2; exit 1"],
        labels={**label, "flywheel.tinyland.dev/stand-in": "kindnetd is not available offline"})
    return images


def _kubeadm_images(tc: toolchain.KindToolchain) -> list[str]:
    proc = subprocess.run([str(tc.kube / "kubeadm"), "config", "images", "list", "--kubernetes-version",
                           toolchain.KUBERNETES_VERSION], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"kubeadm config images list failed: {proc.stderr.strip()[-300:]}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def sandbox_ref(config_toml: str) -> str:
    """The sandbox (pause) image named in kind's containerd config."""
    m = re.search(r'^\s*sandbox(?:_image)?\s*=\s*"([^"]+)"', config_toml, re.M)
    if not m:
        raise BuildError("kind's containerd config names no sandbox image")
    return m.group(1)


def _assign_kubeadm_tags(images: dict[str, ArchiveImage], wanted: list[str], sandbox: str) -> None:
    """Give etcd and CoreDNS kubeadm's references and pause the sandbox one, refusing a version drift."""
    _, pause_tag = _split_tag(sandbox)
    if pause_tag != toolchain.PAUSE_VERSION:
        raise BuildError(f"kind's containerd config wants {sandbox} but the pinned pause is {toolchain.PAUSE_VERSION}: "
                         "bump it in toolchain/pins.py")
    images["@pause"].tags.append(sandbox)
    versions = {"etcd": toolchain.ETCD_VERSION.lstrip("v"), "coredns": toolchain.KIND_TOOLS["coredns"].version}
    for ref in wanted:
        repo, tag = _split_tag(ref)
        comp = repo.rsplit("/", 1)[-1]
        if comp == "pause":
            continue  # kind swaps kubeadm's pause for containerd's sandbox image (sandbox_ref)
        if comp in versions:
            built = versions[comp]
            if not (tag == built or tag.startswith(built + "-")):
                raise BuildError(f"kubeadm {toolchain.KUBERNETES_VERSION} wants {ref} but the pinned {comp} is {built}: "
                                 f"bump it in toolchain/pins.py")
            images[f"@{comp}"].tags.append(ref)
        elif ref not in images:
            raise BuildError(f"kubeadm {toolchain.KUBERNETES_VERSION} wants {ref}, which the node image does not build")


def _timing(work: Path, key: str, seconds: float) -> None:
    """First-build phase times, kept beside the image for the benchmarks (a rebuild costs minutes)."""
    path = work / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = round(seconds, 1)
    path.write_text(json.dumps(data))


def timings(work: Path) -> dict[str, float]:
    path = work / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def build_node_image(engine: Engine, tc: toolchain.KindToolchain, *, root: Path | None = None,
                     log: Log | None = None) -> NodeImage:
    """Build (or reuse) the node image in ``engine``; return its name."""
    say = log or toolchain.progress
    key = _key(tc)
    work = (root or toolchain.cache_root()) / "kind-node" / key
    name = f"localhost/flywheel/kind-node:{toolchain.KUBERNETES_VERSION}-{key}"
    stamp = work / ".complete"
    if stamp.exists() and engine.docker("image", "inspect", name, check=False).returncode == 0:
        return NodeImage(name=name, key=key, workdir=work, required_images=tuple(json.loads(stamp.read_text())))
    work.mkdir(parents=True, exist_ok=True)
    rootfs = work / "rootfs"
    t0 = time.monotonic()
    if not (work / ".rootfs.complete").exists():
        say(f"node rootfs: debootstrap {DEBIAN_SUITE} with {len(NODE_PACKAGES)} packages (about 3 min) ...")
        debian_rootfs(rootfs, NODE_PACKAGES)
        say(f"node rootfs: debootstrap done in {time.monotonic() - t0:.0f} s")
        _timing(work, "debootstrap_s", time.monotonic() - t0)
    if not (work / ".prepared").exists():
        _prepare_node_rootfs(rootfs, tc)
        (work / ".prepared").write_text("ok\n")
    t1 = time.monotonic()
    layers = work / "layers"
    layers.mkdir(exist_ok=True)
    base_layer = layers / "node-rootfs.tar"
    if not base_layer.exists():
        dir_layer(base_layer, rootfs)
    base_name = f"localhost/flywheel/kind-base:{key}"
    if engine.docker("image", "inspect", base_name, check=False).returncode != 0:
        base_tar = write_archive(work / "base.tar", [ArchiveImage(
            [base_name], [base_layer], entrypoint=["/usr/local/bin/entrypoint", "/sbin/init"],
            env=[PATH_ENV, "container=docker"], stop_signal="SIGRTMIN+3")])
        engine.docker("load", "-i", str(base_tar), timeout=900)
        base_tar.unlink()
    say(f"node base image {base_name} loaded in {time.monotonic() - t1:.0f} s")
    # The images, in kind's release layout; every non-kube image rides in kube-proxy.tar.
    t2 = time.monotonic()
    images = _image_layers(work, tc, base_layer)
    wanted = _kubeadm_images(tc)
    _assign_kubeadm_tags(images, wanted, sandbox_ref((rootfs / "etc/containerd/config.toml").read_text()))
    release = work / "release"
    bindir = release / "kubernetes" / "server" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (release / "kubernetes" / "version").write_text(toolchain.KUBERNETES_VERSION + "\n")
    for b in ("kubeadm", "kubelet", "kubectl"):
        _install(tc.kube / b, bindir / b)
    v = toolchain.KUBERNETES_VERSION
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        write_archive(bindir / f"{comp}.tar", [images[f"registry.k8s.io/{comp}:{v}"]])
    rest = [img for ref, img in images.items() if not ref.startswith(("registry.k8s.io/kube-apiserver",
            "registry.k8s.io/kube-controller-manager", "registry.k8s.io/kube-scheduler"))]
    rest.sort(key=lambda i: not i.tags[0].startswith("registry.k8s.io/kube-proxy"))
    write_archive(bindir / "kube-proxy.tar", rest)
    tarball = work / "kubernetes-release.tar.gz"
    proc = subprocess.run(["tar", "-C", str(release), "-czf", str(tarball), "kubernetes"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"packing the release tarball failed: {proc.stderr.strip()[-300:]}")
    shutil.rmtree(release)
    say(f"node image archives written in {time.monotonic() - t2:.0f} s")
    t3 = time.monotonic()
    say(f"kind build node-image {name} ...")
    with tempfile.TemporaryDirectory(prefix="kind-build-") as tmp:
        env = {**engine.env, "TMPDIR": tmp}
        logf = work / "kind-build.log"
        with logf.open("wb") as fh:
            kind_build = subprocess.run([str(tc.kind), "build", "node-image", "--type", "file", str(tarball),
                                         "--base-image", base_name, "--image", name], env=env,
                                        stdout=fh, stderr=subprocess.STDOUT)
    if kind_build.returncode != 0:
        tail = [ln for ln in logf.read_text(errors="replace").splitlines() if "ERROR" in ln or "failed" in ln.lower()]
        raise BuildError(f"kind build node-image failed: {(tail or ['?'])[-1][:300]} (log: {logf})")
    say(f"kind build node-image done in {time.monotonic() - t3:.0f} s")
    _timing(work, "assemble_s", t3 - t1)
    _timing(work, "kind_build_s", time.monotonic() - t3)
    required = sorted({t for img in images.values() for t in img.tags})
    stamp.write_text(json.dumps(required))
    os.sync()
    return NodeImage(name=name, key=key, workdir=work, required_images=tuple(required))
