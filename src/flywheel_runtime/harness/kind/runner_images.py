"""The runner images, built offline where kind runs (no registry to pull from).

``images/Dockerfile`` is the production recipe (upstream ARC runner base,
pinned installers).  Here its base images are swapped through build arguments
for images made on this machine, nothing pulled:

* ``runner-base``: ``debootstrap`` bookworm with Debian's python3.11, nix-bin,
  docker.io (the CLI the runner base carries; the daemon for the DinD stand-in)
  and the upstream runner's user layout (``runner`` 1001, ``docker`` 123,
  ``/home/runner/externals``): ``RUNNER_BASE`` and ``PYTHON_IMAGE``;
* ``node``: this host's ``node`` binary: ``NODE_IMAGE``;
* ``NIX_INSTALL=debian``: the nix target initialises the base's nix-bin store.

Packages the stages install come from Debian and PyPI through ``docker build
--network host`` (the host's own traffic, to the registries only).  The
DinD daemon image the topology names (upstream ``docker:27-dind``) gets an
offline stand-in under the same tag: the base's dockerd behind an entrypoint
that runs what the pod's args ask.

Each image is cached: a stamp per target holds the key of its inputs (the
build context's bytes, the Dockerfile, the bases, the build arguments) and the
image id; a second run only compares them.  Every build prints a start line
and one with its elapsed time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain
from flywheel_runtime.errors import BuildError

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.harness.kind import KindBackend
    from flywheel_runtime.harness.kind.engine import Engine
    from flywheel_runtime.harness.kind.nodeimage import ArchiveImage
    from flywheel_runtime.topology import Topology

# Bump when the base's layout below changes: it is part of every key.
LAYOUT = "1"
BASE_PACKAGES = (
    "python3.11", "python3.11-venv", "python3-pip", "ca-certificates", "curl", "git", "jq", "procps",
    "iproute2", "nix-bin", "docker.io", "tini",
    # debootstrap resolves no virtual packages: perl-dbdabi-94 (nix-bin -> libdbd-sqlite3-perl) is this one
    "libdbi-perl",
)
RUNNER_UID, DOCKER_GID = 1001, 123  # the upstream actions-runner image's ids
REPO = Path(__file__).resolve().parents[4]
# What the build context holds (images/Dockerfile.dockerignore lets in the same).
CONTEXT_PATHS = ("pyproject.toml", "README.md", "src", "images/Dockerfile", "images/hooks",
                 "canaries/install-mesa-backports.sh", "canaries/dawn")
# Dawn's prebuilt bindings for other platforms: 110 MB the image never loads.
CONTEXT_SKIP = ("__pycache__", ".pyc", ".egg-info", "dist/darwin-", "dist/win32-", "dist/linux-arm64")
DAEMON_KEY = "dind-daemon"
DAEMON_ENTRYPOINT = """#!/bin/sh
# Offline stand-in for docker:dind's dockerd-entrypoint.sh (flywheel test image):
# run what the pod's args ask (dockerd ...); bare flags go to dockerd.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- dockerd "$@"; fi
exec "$@"
"""


def runner_targets(topo: Topology) -> dict[str, str]:
    """images/Dockerfile's targets: the topology's images that are ours, by key."""
    return {k: v for k, v in topo.images.items() if "/flywheel-runner-" in v}


def host_cas() -> list[Path]:
    """The CA certificates this host adds to Debian's set (update-ca-certificates' local dir)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


def _sha(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _chroot(rootfs: Path, *cmd: str) -> None:
    proc = subprocess.run(["chroot", str(rootfs), *cmd], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if proc.returncode != 0:
        raise BuildError(f"chroot {' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


@dataclass(frozen=True)
class Built:
    target: str
    tag: str
    seconds: float
    cached: bool


class Builder:
    """Builds the runner images ``topo`` names into one Docker engine (:mod:`.engine`)."""

    def __init__(self, eng: Engine, topo: Topology, root: Path | None = None, *, log: Log | None = None) -> None:
        self.eng = eng
        self.work = (root or toolchain.cache_root()) / "runner-images"
        self.say: Log = log or toolchain.progress
        self.topo = topo

    # -- bases -----------------------------------------------------------

    def _loaded(self, tag: str) -> str | None:
        proc = self.eng.docker("image", "inspect", "--format", "{{.Id}}", tag, check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def _load(self, archive_name: str, images: list[ArchiveImage]) -> None:
        from flywheel_runtime.harness.kind import nodeimage

        tar = nodeimage.write_archive(self.work / archive_name, images)
        try:
            self.eng.docker("load", "-i", str(tar), timeout=900)
        finally:
            tar.unlink(missing_ok=True)

    def base(self) -> str:
        """The debootstrap runner base, loaded; its tag carries its key."""
        from flywheel_runtime.harness.kind import nodeimage

        cas = host_cas()
        rootfs_key = _sha(nodeimage.DEBIAN_SUITE, " ".join(BASE_PACKAGES))
        key = _sha(LAYOUT, rootfs_key, str(RUNNER_UID), str(DOCKER_GID),
                   *(f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in cas))
        tag = f"localhost/flywheel/runner-base:{key}"
        if self._loaded(tag):
            return tag
        rootfs = self.work / f"rootfs-{rootfs_key}"
        t0 = time.monotonic()
        if not (self.work / f".rootfs-{rootfs_key}.complete").exists():
            self.say(f"runner base: debootstrap {nodeimage.DEBIAN_SUITE} with {len(BASE_PACKAGES)} packages "
                     "(about 2-4 min) ...")
        nodeimage.debian_rootfs(rootfs, BASE_PACKAGES)
        prepared = self.work / f".base-{key}.prepared"
        if not prepared.exists():
            # The upstream runner image's layout: uid 1001 `runner`, group `docker` 123.
            _chroot(rootfs, "groupmod", "-g", str(DOCKER_GID), "docker")
            if "runner:" not in (rootfs / "etc/passwd").read_text():
                _chroot(rootfs, "useradd", "-m", "-u", str(RUNNER_UID), "-U", "-G", "docker", "-s", "/bin/bash",
                        "runner")
            ext = rootfs / "home/runner/externals"
            ext.mkdir(parents=True, exist_ok=True)
            # The chart's init-dind-externals copies this directory; the real runner's
            # holds node20 and friends, which a stand-in has no use for.
            (ext / "README").write_text("flywheel offline runner base: no runner externals\n")
            (rootfs / "home/runner/_work").mkdir(exist_ok=True)
            for p in [rootfs / "home/runner", *(rootfs / "home/runner").rglob("*")]:
                os.lchown(p, RUNNER_UID, RUNNER_UID)
            # The build's package traffic is this host's own: it trusts what the host
            # trusts (a TLS-inspecting egress proxy's CA, where there is one).
            dest = rootfs / "usr/local/share/ca-certificates"
            for old in dest.glob("*.crt"):
                old.unlink()
            for ca in cas:
                shutil.copyfile(ca, dest / ca.name)
            _chroot(rootfs, "update-ca-certificates", "--fresh")
            prepared.write_text("ok\n")
        layer = self.work / f"base-{key}.tar"
        if not layer.exists():
            nodeimage.dir_layer(layer, rootfs)
        self._load("base.tar", [nodeimage.ArchiveImage(
            [tag], [layer], env=[nodeimage.PATH_ENV, "LANG=C.UTF-8"], cmd=["/bin/bash"])])
        self.say(f"runner base {tag} ready in {time.monotonic() - t0:.0f} s")
        return tag

    def node(self) -> str:
        """An image holding this host's ``node`` at /usr/local/bin/node (where the node image has it)."""
        from flywheel_runtime.harness.kind import nodeimage

        exe = shutil.which("node")
        if exe is None:
            raise BuildError("node is not installed: the GPU image needs Node.js >= 18 (./dev installs nodejs)")
        real = Path(os.path.realpath(exe))
        version = subprocess.run([str(real), "--version"], capture_output=True, text=True).stdout.strip()
        major = int(version.lstrip("v").split(".")[0] or 0)
        if major < 18:
            raise BuildError(f"node {version} is too old for Dawn's bindings (>= 18 needed)")
        tag = f"localhost/flywheel/node:{version.lstrip('v')}-{nodeimage._sha256_file(real)[:8]}"
        if self._loaded(tag):
            return tag
        layer = nodeimage.binary_layer(self.work / f"node-{version}.tar", {"/usr/local/bin/node": real},
                                       passwd=False)
        self._load("node.tar", [nodeimage.ArchiveImage([tag], [layer])])
        layer.unlink()
        return tag

    # -- the build context -------------------------------------------------

    def context(self) -> tuple[Path, str]:
        """A build context with only :data:`CONTEXT_PATHS` (the legacy builder
        reads no ``Dockerfile.dockerignore``); returns it and its content key."""
        dawn = REPO / "canaries/dawn"
        if not (dawn / "node_modules/webgpu/package.json").is_file():
            self.say("npm ci in canaries/dawn (Dawn's bindings for the GPU image) ...")
            proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=dawn, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise BuildError(f"npm ci in {dawn} failed: {proc.stderr.strip()[-300:]}")
        ctx = self.work / "context"
        shutil.rmtree(ctx, ignore_errors=True)
        h = hashlib.sha256()
        for rel in CONTEXT_PATHS:
            src = REPO / rel
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file() or p.is_symlink())
            for f in files:
                r = f.relative_to(REPO).as_posix()
                if any(s in r for s in CONTEXT_SKIP):
                    continue
                dst = ctx / r
                dst.parent.mkdir(parents=True, exist_ok=True)
                if f.is_symlink():
                    os.symlink(os.readlink(f), dst)
                    h.update(f"{r} -> {os.readlink(f)}\n".encode())
                    continue
                shutil.copy2(f, dst)
                h.update(f"{r} {f.stat().st_mode & 0o777:o} ".encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
        return ctx, h.hexdigest()[:12]

    # -- images ------------------------------------------------------------

    def _stamp(self, target: str) -> Path:
        return self.work / "stamps" / f"{target}.json"

    def _cached(self, target: str, tag: str, key: str) -> bool:
        try:
            st = json.loads(self._stamp(target).read_text())
        except (OSError, ValueError):
            return False
        return st.get("key") == key and st.get("id") == self._loaded(tag)

    def _record(self, target: str, tag: str, key: str, seconds: float) -> None:
        p = self._stamp(target)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"key": key, "id": self._loaded(tag), "tag": tag, "seconds": round(seconds, 1)}))

    def build_all(self, targets: list[str] | None = None) -> list[Built]:
        """Every runner target (or ``targets``) and the DinD daemon stand-in."""
        ours = runner_targets(self.topo)
        wanted = targets or [*ours, DAEMON_KEY]
        unknown = [t for t in wanted if t not in ours and t != DAEMON_KEY]
        if unknown:
            raise BuildError(f"no runner image target {', '.join(unknown)}: known {', '.join([*ours, DAEMON_KEY])}")
        self.work.mkdir(parents=True, exist_ok=True)
        base = self.base()
        out: list[Built] = []
        if DAEMON_KEY in wanted:
            out.append(self.daemon(base))
        runner = [t for t in wanted if t in ours]
        if not runner:
            return out
        node = self.node()
        ctx, ctx_key = self.context()
        args = {"RUNNER_BASE": base, "PYTHON_IMAGE": base, "NODE_IMAGE": node, "NIX_INSTALL": "debian"}
        for target in runner:
            tag = ours[target]
            key = _sha(ctx_key, target, json.dumps(args, sort_keys=True))
            if self._cached(target, tag, key):
                out.append(Built(target, tag, 0.0, True))
                continue
            t0 = time.monotonic()
            self.say(f"runner image {target} ({tag}) ...")
            log = self.work / "logs" / f"{target}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            cmd = ["docker", "build", "--network", "host", "-f", str(ctx / "images/Dockerfile"),
                   "--target", target, "-t", tag]
            for k, v in args.items():
                cmd += ["--build-arg", f"{k}={v}"]
            env = {**self.eng.env, "DOCKER_BUILDKIT": "0"}  # dockerd 20.10, no buildx: the legacy builder
            with log.open("wb") as fh:
                proc = subprocess.run([*cmd, str(ctx)], env=env, stdout=fh, stderr=subprocess.STDOUT)
            dt = time.monotonic() - t0
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                self.say(f"runner image {target} failed after {dt:.0f} s")
                raise BuildError(f"docker build --target {target} failed: {tail[0][:300]} (log: {log})")
            self._record(target, tag, key, dt)
            self.say(f"runner image {target} built in {dt:.0f} s")
            out.append(Built(target, tag, dt, False))
        return out

    def daemon(self, base: str) -> Built:
        """The DinD daemon stand-in under the topology's tag (upstream: docker:27-dind)."""
        from flywheel_runtime.harness.kind import nodeimage

        tag = self.topo.images[DAEMON_KEY]
        key = _sha(base, DAEMON_ENTRYPOINT)
        if self._cached(DAEMON_KEY, tag, key):
            return Built(DAEMON_KEY, tag, 0.0, True)
        t0 = time.monotonic()
        self.say(f"dind daemon stand-in ({tag}) ...")
        base_key = base.rsplit(":", 1)[1]
        script = self.work / "dockerd-entrypoint.sh"
        script.write_text(DAEMON_ENTRYPOINT)
        script.chmod(0o755)
        entry = nodeimage.binary_layer(self.work / "daemon-entry.tar",
                                       {"/usr/local/bin/dockerd-entrypoint.sh": script}, passwd=False)
        self._load("daemon.tar", [nodeimage.ArchiveImage(
            [tag], [self.work / f"base-{base_key}.tar", entry], entrypoint=["/usr/local/bin/dockerd-entrypoint.sh"],
            env=[nodeimage.PATH_ENV], labels={"flywheel.tinyland.dev/stand-in": "docker:dind"})])
        entry.unlink()
        dt = time.monotonic() - t0
        self._record(DAEMON_KEY, tag, key, dt)
        self.say(f"dind daemon stand-in built in {dt:.0f} s")
        return Built(DAEMON_KEY, tag, dt, False)


def load_into_kind(eng: Engine, backend: KindBackend, tags: list[str]) -> float:
    """All ``tags`` into every node of the kind ``backend`` from one archive; return seconds.

    One ``docker save`` of every image holds their shared base layers once, where
    ``kind load docker-image`` per image streams the whole base again for each
    (measured: 51-99 s per image, about 7.5 min for the six)."""
    from flywheel_runtime.errors import ClusterError

    work = Path(backend.cache) / "runner-images"
    work.mkdir(parents=True, exist_ok=True)
    tar = work / "all-images.tar"
    t0 = time.monotonic()
    try:
        eng.docker("save", "-o", str(tar), *tags, timeout=900)
        kind_bin = toolchain.component_dir("kind", toolchain.KIND_TOOLS["kind"].version, backend.cache) / "bin" / "kind"
        proc = subprocess.run([str(kind_bin), "load", "image-archive", "--name", backend.name, str(tar)],
                              env={**os.environ, **eng.env}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"kind load image-archive failed: {proc.stderr.strip()[-300:]}")
    finally:
        tar.unlink(missing_ok=True)
    return time.monotonic() - t0


def build_images(topo: Topology, targets: list[str] | None = None, *, root: Path | None = None,
                 log: Log | None = None) -> list[Built]:
    """Start (or reuse) the harness's engine and build; a dockerd started only
    for this is stopped again, leaving the host as it was."""
    from flywheel_runtime.harness.kind import engine

    cache = root or toolchain.cache_root()
    running = (engine.engine_root(cache) / "engine.json").exists()
    eng = engine.start(cache, log=log)
    try:
        return Builder(eng, topo, root, log=log).build_all(targets)
    finally:
        if eng.owned and not running:
            engine.stop(cache)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flywheel_runtime.harness.kind.runner_images",
                                description="Build the runner images offline (debootstrap bases) into the "
                                            "harness's Docker engine, tagged as the topology names them.")
    p.add_argument("targets", nargs="*", help="targets (default: every runner image and the DinD daemon)")
    p.add_argument("--if-kind", action="store_true", help="do nothing where the kind backend cannot run")
    a = p.parse_args(argv)
    from flywheel_runtime.errors import FlywheelError
    from flywheel_runtime.harness import kind
    from flywheel_runtime.topology import load

    if a.if_kind and not kind.available():
        return 0
    try:
        for b in build_images(load(), a.targets or None):
            print(f"{b.target}\t{b.tag}\t{'cached' if b.cached else f'{b.seconds:.0f} s'}")
    except FlywheelError as exc:
        print(f"flywheel-runtime: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
