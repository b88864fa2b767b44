"""Build the upstream control-plane binaries the sim backend runs.

Kubernetes refuses ``go install`` (its go.mod carries replace directives for
its staging modules), so we build through a throwaway wrapper module that
requires ``k8s.io/kubernetes`` and replaces each staging module with its
published ``v0.Y.Z`` twin.  The replace list is read from the release's own
go.mod so that a version bump needs no hand edits.  Outputs land in a
versioned cache directory; a finished build is marked by a stamp file written
last, so an interrupted build is simply redone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.errors import BuildError

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"  # what kubeadm pins for Kubernetes 1.36 (image tag 3.6.8-0): both backends run it
KWOK_VERSION = "v0.8.0"

# The sim runs the first four; the kind node image adds the node agents and kubeadm.
KUBE_COMMANDS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl",
                 "kubelet", "kubeadm", "kube-proxy")


def cache_root() -> Path:
    """Where built binaries live: ``$FLYWHEEL_CACHE_DIR`` or the XDG cache."""
    explicit = os.environ.get("FLYWHEEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flywheel-runtime"


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every binary the sim backend needs."""

    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path
    etcd: Path
    kwok: Path

    def as_dict(self) -> dict[str, str]:
        return {k.replace("_", "-"): str(v) for k, v in self.__dict__.items()}


def progress(msg: str) -> None:
    """One progress line on stderr: builds run for minutes on a fresh machine."""
    print(f"build: {msg}", file=sys.stderr, flush=True)


class _Step:
    """``with _Step("etcd v3.6.8"):`` prints a start line and one with the elapsed time."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> _Step:
        self.t0 = time.monotonic()
        progress(f"{self.what} ...")
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        dt = time.monotonic() - self.t0
        progress(f"{self.what} {'failed' if exc_type else 'built'} in {dt:.0f} s")


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is not on PATH; install Go >= 1.26 to build the sim cluster binaries")
    return go


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str, log: Path) -> None:
    with log.open("ab") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"building {what} failed (exit {proc.returncode}): {tail[0][:300]} (full log: {log})")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def _staging_replaces(go: str, version: str, workdir: Path, env: dict[str, str], log: Path) -> tuple[str, list[str]]:
    """Return (go directive block, replace lines) for a Kubernetes release."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=workdir, env=env, capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"cannot download k8s.io/kubernetes@{version}: {out.stderr.strip().splitlines()[-1:]}")
    gomod = Path(json.loads(out.stdout)["GoMod"]).read_text()
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    mods = re.findall(r"^\s*(\S+)\s*=>\s*\./staging/src/\S+\s*$", gomod, re.M)
    if not mods:
        raise BuildError(f"k8s.io/kubernetes@{version} go.mod lists no staging modules")
    header = []
    m = re.search(r"^go\s+(\S+)$", gomod, re.M)
    if m:
        header.append(f"go {m.group(1)}")
    m = re.search(r"^godebug\s+(.+)$", gomod, re.M)
    if m:  # godebug only counts in the main module, so carry it over
        header.append(f"godebug {m.group(1)}")
    return "\n".join(header), [f"{mod} => {mod} {staging_version}" for mod in mods]


def _stamp_ok(stamp: Path, names: list[str], bindir: Path) -> bool:
    return stamp.exists() and all((bindir / n).is_file() for n in names)


def build_kubernetes(version: str = KUBERNETES_VERSION, root: Path | None = None) -> Path:
    """Build kube-apiserver, -scheduler, -controller-manager and kubectl; return bin dir."""
    root = root or cache_root()
    base = root / "kubernetes" / version
    bindir, stamp = base / "bin", base / ".complete"
    if _stamp_ok(stamp, list(KUBE_COMMANDS), bindir):
        return bindir
    go, env = _go(), _go_env()
    work = base / "src"
    work.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    with _Step(f"kubernetes {version} ({', '.join(KUBE_COMMANDS)})"):
        _build_kubernetes(go, env, version, work, log, bindir)
    stamp.write_text(version + "\n")
    return bindir


def _build_kubernetes(go: str, env: dict[str, str], version: str, work: Path, log: Path, bindir: Path) -> None:
    header, replaces = _staging_replaces(go, version, work, env, log)
    major, minor = version.lstrip("v").split(".")[:2]
    (work / "go.mod").write_text(
        "module flywheel.local/kubebuild\n\n" + header + "\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n\t" + "\n\t".join(replaces) + "\n)\n"
    )
    (work / "tools.go").write_text(
        "//go:build tools\n\npackage tools\n\n"
        + "".join(f'import _ "k8s.io/kubernetes/cmd/{c}"\n' for c in KUBE_COMMANDS)
    )
    _run([go, "mod", "tidy"], work, env, f"kubernetes {version} (go mod tidy)", log)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    xs = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, val in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor),
                         ("gitCommit", "flywheel-offline-build"), ("gitTreeState", "clean"),
                         ("buildDate", date)):
            xs.append(f"-X {pkg}.{key}={val}")
    bindir.mkdir(parents=True, exist_ok=True)
    for cmd in KUBE_COMMANDS:
        _run([go, "build", "-trimpath", "-tags", "selinux,notest", "-ldflags", "-s -w " + " ".join(xs),
              "-o", str(bindir / cmd), f"k8s.io/kubernetes/cmd/{cmd}"], work, env, f"{cmd} {version}", log)


def build_etcd(version: str = ETCD_VERSION, root: Path | None = None) -> Path:
    root = root or cache_root()
    base = root / "etcd" / version
    bindir, stamp = base / "bin", base / ".complete"
    if _stamp_ok(stamp, ["etcd"], bindir):
        return bindir
    go, env = _go(), _go_env()
    work = base / "src"
    work.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    (work / "go.mod").write_text(f"module flywheel.local/etcdbuild\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {version}\n")
    (work / "tools.go").write_text('//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n')
    with _Step(f"etcd {version}"):
        _run([go, "mod", "tidy"], work, env, f"etcd {version} (go mod tidy)", log)
        bindir.mkdir(parents=True, exist_ok=True)
        _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(bindir / "etcd"), "go.etcd.io/etcd/server/v3"],
             work, env, f"etcd {version}", log)
    stamp.write_text(version + "\n")
    return bindir


def build_kwok(version: str = KWOK_VERSION, root: Path | None = None) -> Path:
    root = root or cache_root()
    base = root / "kwok" / version
    bindir, stamp = base / "bin", base / ".complete"
    if _stamp_ok(stamp, ["kwok"], bindir):
        return bindir
    go, env = _go(), _go_env()
    env.pop("GOFLAGS", None)
    base.mkdir(parents=True, exist_ok=True)
    bindir.mkdir(parents=True, exist_ok=True)
    env["GOBIN"] = str(bindir)
    with _Step(f"kwok {version}"):
        _run([go, "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{version}"],
             base, env, f"kwok {version}", base / "build.log")
    stamp.write_text(version + "\n")
    return bindir


@dataclass(frozen=True)
class GoTool:
    """A tool ``go install`` builds straight from the module proxy at a pinned version."""

    name: str
    version: str
    packages: tuple[str, ...]  # import paths, all in one module, installed at ``version``
    outputs: tuple[str, ...]  # the binaries those packages produce
    cgo: bool = False
    tags: str = ""
    ldflags: str = ""  # extra -X flags; ``{v}`` is the version without its leading "v"


# What the kind node image runs besides the Kubernetes binaries, pinned to what
# kind v0.33.0's own base image pins (images/base/Dockerfile), except where the
# proxy refuses that version (local-path-provisioner v0.0.34: v0.0.30 is served).
KIND_TOOLS: dict[str, GoTool] = {t.name: t for t in (
    GoTool("kind", "v0.33.0", ("sigs.k8s.io/kind",), ("kind",)),
    GoTool("containerd", "v2.3.4",
           tuple(f"github.com/containerd/containerd/v2/cmd/{c}" for c in ("containerd", "ctr", "containerd-shim-runc-v2")),
           ("containerd", "ctr", "containerd-shim-runc-v2"),
           tags="no_btrfs no_devmapper no_zfs no_aufs",
           ldflags="-X github.com/containerd/containerd/v2/version.Version={v}"),
    # cgo for libseccomp: the node image is Debian bookworm, as this host, so it links the same libseccomp2.
    GoTool("runc", "v1.4.3", ("github.com/opencontainers/runc",), ("runc",), cgo=True, tags="seccomp",
           ldflags="-X main.version={v}"),
    GoTool("crictl", "v1.36.0", ("sigs.k8s.io/cri-tools/cmd/crictl",), ("crictl",),
           ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version={v}"),
    GoTool("coredns", "v1.14.2", ("github.com/coredns/coredns",), ("coredns",)),
    GoTool("local-path-provisioner", "v0.0.30", ("github.com/rancher/local-path-provisioner",),
           ("local-path-provisioner",)),
)}


def build_tool(tool: GoTool, root: Path | None = None) -> Path:
    """Build (or reuse) one :class:`GoTool`; return its bin dir."""
    base = (root or cache_root()) / tool.name / tool.version
    bindir, stamp = base / "bin", base / ".complete"
    if _stamp_ok(stamp, list(tool.outputs), bindir):
        return bindir
    go, env = _go(), _go_env()
    env.pop("GOFLAGS", None)  # go install pkg@version builds in module mode on its own
    env["CGO_ENABLED"] = "1" if tool.cgo else "0"
    env["GOBIN"] = str(bindir)
    bindir.mkdir(parents=True, exist_ok=True)
    ldflags = ("-s -w " + tool.ldflags.format(v=tool.version.lstrip("v"))).strip()
    cmd = [go, "install", "-trimpath", "-ldflags", ldflags]
    if tool.tags:
        cmd += ["-tags", tool.tags.replace(" ", ",")]
    cmd += [f"{pkg}@{tool.version}" for pkg in tool.packages]
    with _Step(f"{tool.name} {tool.version}"):
        _run(cmd, base, env, f"{tool.name} {tool.version}", base / "build.log")
        missing = [o for o in tool.outputs if not (bindir / o).is_file()]
        if missing:
            raise BuildError(f"building {tool.name} {tool.version} produced no {', '.join(missing)} "
                             f"(log: {base / 'build.log'})")
    stamp.write_text(tool.version + "\n")
    return bindir


def module_dir(module: str, version: str) -> Path:
    """The module proxy's copy of ``module@version`` (downloaded once into the Go module cache)."""
    env = _go_env()
    env.pop("GOFLAGS", None)
    out = subprocess.run([_go(), "mod", "download", "-json", f"{module}@{version}"], env=env,
                         capture_output=True, text=True, cwd=cache_root())
    if out.returncode != 0:
        raise BuildError(f"cannot download {module}@{version}: {(out.stderr or out.stdout).strip()[-300:]}")
    return Path(json.loads(out.stdout)["Dir"])


PAUSE_VERSION = "3.10"


def build_pause(root: Path | None = None) -> Path:
    """The pod sandbox's pause binary: kubernetes' own build/pause/linux/pause.c, static."""
    base = (root or cache_root()) / "pause" / f"{PAUSE_VERSION}-k8s{KUBERNETES_VERSION}"
    bindir, stamp = base / "bin", base / ".complete"
    if _stamp_ok(stamp, ["pause"], bindir):
        return bindir
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise BuildError("no C compiler on PATH: install gcc to build the pause binary")
    src = module_dir("k8s.io/kubernetes", KUBERNETES_VERSION) / "build" / "pause" / "linux" / "pause.c"
    bindir.mkdir(parents=True, exist_ok=True)
    with _Step(f"pause {PAUSE_VERSION}"):
        _run([cc, "-Os", "-static", "-Wall", f"-DVERSION=v{PAUSE_VERSION}-flywheel", "-o", str(bindir / "pause"), str(src)],
             base, dict(os.environ), "pause", base / "build.log")
    stamp.write_text(PAUSE_VERSION + "\n")
    return bindir


@dataclass(frozen=True)
class KindToolchain:
    """Everything the kind backend builds: node-image parts and the kind CLI."""

    kube: Path  # bin dir with every KUBE_COMMANDS binary
    etcd: Path
    pause: Path
    tools: dict[str, Path]  # KIND_TOOLS name -> bin dir

    @property
    def kind(self) -> Path:
        return self.tools["kind"] / "kind"

    @property
    def kubectl(self) -> Path:
        return self.kube / "kubectl"


def ensure_kind_toolchain(root: Path | None = None) -> KindToolchain:
    """Build (or reuse) every binary the kind node image and CLI need."""
    kube = build_kubernetes(root=root)
    etcd = build_etcd(root=root)
    pause = build_pause(root=root)
    tools = {name: build_tool(t, root=root) for name, t in KIND_TOOLS.items()}
    return KindToolchain(kube=kube, etcd=etcd, pause=pause, tools=tools)


def ensure_binaries(root: Path | None = None) -> Binaries:
    """Build (or reuse from the cache) every binary the sim backend runs."""
    kube = build_kubernetes(root=root)
    etcd = build_etcd(root=root)
    kwok = build_kwok(root=root)
    return Binaries(
        kube_apiserver=kube / "kube-apiserver",
        kube_scheduler=kube / "kube-scheduler",
        kube_controller_manager=kube / "kube-controller-manager",
        kubectl=kube / "kubectl",
        etcd=etcd / "etcd",
        kwok=kwok / "kwok",
    )


if __name__ == "__main__":  # pragma: no cover - convenience for warming the cache
    try:
        print(json.dumps(ensure_binaries().as_dict(), indent=2))
        from flywheel_runtime.audit.promtool import ensure_promtool

        ensure_promtool()
        if "--kind" in sys.argv or "--kind-if-available" in sys.argv:
            from flywheel_runtime.harness import kind

            if "--kind" in sys.argv or kind.available():
                kind.prepare()
    except BuildError as exc:
        print(f"flywheel-runtime: {exc}", file=sys.stderr)
        sys.exit(1)
