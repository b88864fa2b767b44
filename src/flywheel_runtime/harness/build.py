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
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.errors import BuildError

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

KUBE_COMMANDS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl")


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
    stamp.write_text(version + "\n")
    return bindir


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
    _run([go, "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{version}"],
         base, env, f"kwok {version}", base / "build.log")
    stamp.write_text(version + "\n")
    return bindir


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
    except BuildError as exc:
        print(f"flywheel-runtime: {exc}", file=sys.stderr)
        sys.exit(1)
