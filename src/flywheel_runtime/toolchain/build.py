"""The Go build path: the Kubernetes, etcd, kwok and pause builds, and ``go install`` tools.

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
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.errors import BuildError
from flywheel_runtime.toolchain.cache import Step, cache_root, component_dir, stamp_ok, write_stamp
from flywheel_runtime.toolchain.pins import (
    ETCD_VERSION,
    KIND_TOOLS,
    KUBE_COMMANDS,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    PAUSE_VERSION,
    GoTool,
)

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


def build_kubernetes(version: str = KUBERNETES_VERSION, root: Path | None = None) -> Path:
    """Build kube-apiserver, -scheduler, -controller-manager and kubectl; return bin dir."""
    base = component_dir("kubernetes", version, root)
    bindir = base / "bin"
    if stamp_ok(base, KUBE_COMMANDS):
        return bindir
    go, env = _go(), _go_env()
    work = base / "src"
    work.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    with Step(f"kubernetes {version} ({', '.join(KUBE_COMMANDS)})"):
        _build_kubernetes(go, env, version, work, log, bindir)
    write_stamp(base, version)
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
    base = component_dir("etcd", version, root)
    bindir = base / "bin"
    if stamp_ok(base, ["etcd"]):
        return bindir
    go, env = _go(), _go_env()
    work = base / "src"
    work.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    (work / "go.mod").write_text(f"module flywheel.local/etcdbuild\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {version}\n")
    (work / "tools.go").write_text('//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n')
    with Step(f"etcd {version}"):
        _run([go, "mod", "tidy"], work, env, f"etcd {version} (go mod tidy)", log)
        bindir.mkdir(parents=True, exist_ok=True)
        _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(bindir / "etcd"), "go.etcd.io/etcd/server/v3"],
             work, env, f"etcd {version}", log)
    write_stamp(base, version)
    return bindir


def build_kwok(version: str = KWOK_VERSION, root: Path | None = None) -> Path:
    base = component_dir("kwok", version, root)
    bindir = base / "bin"
    if stamp_ok(base, ["kwok"]):
        return bindir
    go, env = _go(), _go_env()
    env.pop("GOFLAGS", None)
    base.mkdir(parents=True, exist_ok=True)
    bindir.mkdir(parents=True, exist_ok=True)
    env["GOBIN"] = str(bindir)
    with Step(f"kwok {version}"):
        _run([go, "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{version}"],
             base, env, f"kwok {version}", base / "build.log")
    write_stamp(base, version)
    return bindir


def build_tool(tool: GoTool, root: Path | None = None) -> Path:
    """Build (or reuse) one :class:`GoTool`; return its bin dir."""
    base = component_dir(tool.name, tool.version, root)
    bindir = base / "bin"
    if stamp_ok(base, tool.outputs):
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
    with Step(f"{tool.name} {tool.version}"):
        _run(cmd, base, env, f"{tool.name} {tool.version}", base / "build.log")
        missing = [o for o in tool.outputs if not (bindir / o).is_file()]
        if missing:
            raise BuildError(f"building {tool.name} {tool.version} produced no {', '.join(missing)} "
                             f"(log: {base / 'build.log'})")
    write_stamp(base, tool.version)
    return bindir


def module_key(source: Path) -> str:
    """The cache key of a project Go module: a hash of go.mod, go.sum and every ``*.go``."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted([source / "go.mod", source / "go.sum", *source.glob("*.go")]):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_module(source: Path, name: str, root: Path | None = None) -> Path:
    """Build (or reuse) a Go main module of the project's own (e.g. ``conformance/actions``);
    return the binary.  Keyed on go.mod, go.sum and every ``*.go``: an unchanged program
    builds once per machine; builds of earlier sources are pruned."""
    key = module_key(source)
    base = (root or cache_root()) / name / key
    binary, stamp = base / "bin" / name, base / ".complete"
    if stamp.is_file() and binary.is_file():
        return binary
    go, env = _go(), _go_env()
    env["GOFLAGS"] = "-mod=readonly"  # go.sum is committed: a drift is a build error, never a silent update
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f".{name}.partial")
    with Step(f"{name} ({source.name})"):
        _run([go, "build", "-trimpath", "-o", str(tmp), "."], source, env, name, base / "build.log")
        tmp.replace(binary)
    stamp.write_text(key + "\n")
    for old in base.parent.iterdir():  # builds of earlier sources: nothing reads them again
        if old != base and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return binary


def module_dir(module: str, version: str) -> Path:
    """The module proxy's copy of ``module@version`` (downloaded once into the Go module cache)."""
    env = _go_env()
    env.pop("GOFLAGS", None)
    out = subprocess.run([_go(), "mod", "download", "-json", f"{module}@{version}"], env=env,
                         capture_output=True, text=True, cwd=cache_root())
    if out.returncode != 0:
        raise BuildError(f"cannot download {module}@{version}: {(out.stderr or out.stdout).strip()[-300:]}")
    return Path(json.loads(out.stdout)["Dir"])


def build_pause(root: Path | None = None) -> Path:
    """The pod sandbox's pause binary: kubernetes' own build/pause/linux/pause.c, static."""
    base = component_dir("pause", f"{PAUSE_VERSION}-k8s{KUBERNETES_VERSION}", root)
    bindir = base / "bin"
    if stamp_ok(base, ["pause"]):
        return bindir
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise BuildError("no C compiler on PATH: install gcc to build the pause binary")
    src = module_dir("k8s.io/kubernetes", KUBERNETES_VERSION) / "build" / "pause" / "linux" / "pause.c"
    bindir.mkdir(parents=True, exist_ok=True)
    with Step(f"pause {PAUSE_VERSION}"):
        _run([cc, "-Os", "-static", "-Wall", f"-DVERSION=v{PAUSE_VERSION}-flywheel", "-o", str(bindir / "pause"), str(src)],
             base, dict(os.environ), "pause", base / "build.log")
    write_stamp(base, PAUSE_VERSION)
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


# kube-network-policies sends the packets it judges to user space with nftables'
# ``queue`` expression, which needs the kernel's nft_queue (CONFIG_NFT_QUEUE);
# kernels built without it refuse the whole ruleset.  The xtables NFQUEUE target
# (xt_NFQUEUE, revision 3) queues to the same queue through nft_compat, so the
# build swaps one for the other: same queue number, same fail-open bypass flag.
# These are the only lines changed; the anchor must match exactly where upstream
# builds its queue verdict, or the build stops (a bump re-checks the patch).
_NFT_QUEUE = """	queue := &expr.Queue{Num: uint16(c.config.QueueID)}
	if c.config.FailOpen {
		queue.Flag = expr.QueueFlagBypass
	}
"""
_XT_NFQUEUE = """	// flywheel: xt_NFQUEUE v3 (queuenum, queues_total, flags, pad) through nft_compat: no nft_queue needed.
	nfqFlags := uint16(0)
	if c.config.FailOpen {
		nfqFlags = 1 // NFQ_FLAG_BYPASS
	}
	nfqInfo := xt.Unknown(append(append(append(binaryutil.NativeEndian.PutUint16(uint16(c.config.QueueID)),
		binaryutil.NativeEndian.PutUint16(1)...), binaryutil.NativeEndian.PutUint16(nfqFlags)...), 0, 0))
	queue := &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &nfqInfo}
"""
_NFT_QUEUE_USES = 2
_CONTROLLER = Path("pkg/networkpolicy/controller.go")


def patch_network_policies(source: str) -> str:
    """kube-network-policies' controller.go with its nft ``queue`` verdicts replaced by the
    xtables NFQUEUE target (see above).  Raises BuildError when upstream's code moved."""
    found = source.count(_NFT_QUEUE)
    if found != _NFT_QUEUE_USES:
        raise BuildError(f"kube-network-policies: expected {_NFT_QUEUE_USES} nft queue verdicts to patch in "
                         f"{_CONTROLLER}, found {found}: check the patch against this version")
    imports = '\t"github.com/google/nftables/expr"\n'
    if imports not in source:
        raise BuildError(f"kube-network-policies: {_CONTROLLER} no longer imports nftables/expr as expected")
    source = source.replace(imports, imports + '\t"github.com/google/nftables/xt"\n', 1)
    return source.replace(_NFT_QUEUE, _XT_NFQUEUE)


def build_network_policies(root: Path | None = None) -> Path:
    """kube-network-policies (the kind backend's NetworkPolicy engine), patched (see
    :func:`patch_network_policies`) and built static; return its bin dir."""
    from flywheel_runtime.toolchain.pins import NETWORK_POLICIES_MODULE, NETWORK_POLICIES_VERSION

    name = "kube-network-policies"
    base = component_dir(name, NETWORK_POLICIES_VERSION, root)
    bindir = base / "bin"
    if stamp_ok(base, [name]):
        return bindir
    upstream = module_dir(NETWORK_POLICIES_MODULE, NETWORK_POLICIES_VERSION)
    work = base / "src"
    if work.exists():
        shutil.rmtree(work)
    # The module cache is read-only: build a writable copy.
    shutil.copytree(upstream, work, copy_function=shutil.copyfile)
    controller = work / _CONTROLLER
    controller.write_text(patch_network_policies(controller.read_text()))
    go, env = _go(), _go_env()
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=readonly"  # upstream's go.sum holds every dependency
    bindir.mkdir(parents=True, exist_ok=True)
    with Step(f"{name} {NETWORK_POLICIES_VERSION} (patched: xt NFQUEUE)"):
        _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(bindir / name), "./cmd"], work, env,
             f"{name} {NETWORK_POLICIES_VERSION}", base / "build.log")
    write_stamp(base, NETWORK_POLICIES_VERSION)
    return bindir
