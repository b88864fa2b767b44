"""The container engine the kind backend runs on, and the host it must leave as found.

Where a Docker engine already answers (``DOCKER_HOST`` or the default socket) the
harness uses it and touches nothing but its own network and rules.  Where none
does (these machines) it starts Debian's ``dockerd`` itself, with pid, socket
and state under ``<cache>/engine``, and stops it by pid at ``cluster down``.

Three host facts shape it (see ``kind-offline-facts.md``):

* capabilities: a capability missing from this process's bounding set makes
  runc fail every privileged container (``unable to apply caps``), so dockerd's
  default runtime is a wrapper that drops, from each OCI spec, exactly the
  capabilities ``/proc/self/status`` says the bounding set lacks;
* egress: before any node container starts, a reject rule covers everything
  the kind bridge forwards off the bridge (IPv4 and IPv6); no rule, no cluster;
* side effects: dockerd and the kubelets in privileged node containers rewrite
  host state (iptables tables and policy, ``ip_forward``, ``kernel.panic``, ...);
  :class:`HostState` records it before and puts it back after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime._files import pid_alive
from flywheel_runtime.errors import ClusterError

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log

# Kernel settings the engine or the kubelets (sharing this kernel from their
# privileged node containers) are known to rewrite.
WATCHED_SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.ipv4.conf.all.route_localnet",
)

NETWORK_NAME = "kind"  # kind joins an existing network of this name instead of making its own
BRIDGE_NAME = "flywheel-kind0"
DEFAULT_SUBNET = "172.30.250.0/24"
GUARD_COMMENT = "flywheel-runtime: no packet from the kind network leaves this machine"


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = WATCHED_SYSCTLS) -> dict[str, str]:
    """Current values of ``names`` that exist on this kernel."""
    out = {}
    for n in names:
        try:
            out[n] = _sysctl_path(n).read_text().strip()
        except OSError:
            continue
    return out


def write_sysctls(values: dict[str, str]) -> list[str]:
    """Write ``values`` back; return the names that could not be written (one line each)."""
    failed = []
    for n, v in values.items():
        p = _sysctl_path(n)
        try:
            if p.read_text().strip() != v:
                p.write_text(v + "\n")
        except OSError as exc:
            failed.append(f"{n}: {exc.strerror}")
    return failed


# ---------------------------------------------------------------- capabilities

# Linux capability numbers (include/uapi/linux/capability.h); runc's spec names them.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def missing_capabilities(status_text: str | None = None) -> list[str]:
    """Capabilities this kernel knows that the bounding set (``CapBnd``) lacks."""
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    bnd = next((int(line.split()[1], 16) for line in text.splitlines() if line.startswith("CapBnd:")), None)
    if bnd is None:
        raise ClusterError("cannot read CapBnd from /proc/self/status")
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except OSError:
        last = len(CAPABILITIES) - 1
    return [CAPABILITIES[i] for i in range(min(last + 1, len(CAPABILITIES))) if not bnd >> i & 1]


# The wrapper is standalone (dockerd execs it for every container) and reads the
# bounding set itself each time, so it never drifts from the host it runs on.
_RUNC_WRAPPER = r'''#!/usr/bin/python3
# flywheel-runtime: runc wrapper for dockerd.  Drops from the OCI spec every
# capability missing from this host's bounding set, then execs the real runc.
import json, os, sys
REAL = {real!r}
NAMES = {names!r}
def missing():
    bnd = next(int(l.split()[1], 16) for l in open("/proc/self/status") if l.startswith("CapBnd:"))
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    return {{NAMES[i] for i in range(min(last + 1, len(NAMES))) if not bnd >> i & 1}}
def strip(path, key):
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return
    proc = spec.get("process", spec) if key == "process" else spec
    caps = proc.get("capabilities") or {{}}
    drop = missing()
    if any(set(v or ()) & drop for v in caps.values()):
        for k, v in caps.items():
            caps[k] = [c for c in (v or ()) if c not in drop]
        with open(path, "w") as f:
            json.dump(spec, f)
args = sys.argv[1:]
for i, a in enumerate(args):
    if a in ("--bundle", "-b") and i + 1 < len(args):
        strip(os.path.join(args[i + 1], "config.json"), "process")
    elif a.startswith("--bundle="):
        strip(os.path.join(a.split("=", 1)[1], "config.json"), "process")
    elif a == "--process" and i + 1 < len(args):
        strip(args[i + 1], "exec")
    elif a.startswith("--process="):
        strip(a.split("=", 1)[1], "exec")
os.execv(REAL, [REAL] + args)
'''


def write_runc_wrapper(path: Path, real_runc: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_RUNC_WRAPPER.format(real=real_runc, names=CAPABILITIES))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- engine


def _docker(*args: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    docker = shutil.which("docker")
    if docker is None:
        raise ClusterError("the docker CLI is not on PATH: install docker.io (./dev does)")
    proc = subprocess.run([docker, *args], env=env, capture_output=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise ClusterError(f"docker {' '.join(args[:3])} failed: {(err[-1] if err else '?')[:300]}")
    return proc


def answers(env: dict[str, str] | None = None) -> bool:
    """A Docker engine answers on ``env``'s DOCKER_HOST (or the default socket)."""
    if shutil.which("docker") is None:
        return False
    try:
        return _docker("version", "--format", "{{.Server.Version}}", env=env, check=False,
                       timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _iptables(family: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = "iptables" if family == 4 else "ip6tables"
    proc = subprocess.run([tool, "-w", "5", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ClusterError(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()[:300]}")
    return proc


def _save_tables(family: int) -> str:
    tool = "iptables-save" if family == 4 else "ip6tables-save"
    proc = subprocess.run([tool], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def parse_tables(text: str) -> dict[str, list[str]]:
    """``*-save`` text as {table: lines}, counters and comments dropped; a table
    with no rules and every built-in chain at ACCEPT counts as absent."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif line == "COMMIT":
            current = None
        elif current is not None:
            current.append(re.sub(r"\s*\[\d+:\d+\]$", "", line))
    return {t: lines for t, lines in tables.items()
            if any(not ln.startswith(":") or not ln.endswith((" ACCEPT", " -")) for ln in lines)}


def _nf_tables() -> bool:
    proc = subprocess.run(["iptables", "--version"], capture_output=True, text=True)
    return "nf_tables" in proc.stdout


def restore_tables(family: int, saved: str) -> None:
    """Put a family's tables back as ``saved`` had them, deleting tables created since."""
    before = set(parse_tables(saved))
    now = parse_tables(_save_tables(family))
    for table in sorted(set(now) - before):
        if _nf_tables() and shutil.which("nft"):
            subprocess.run(["nft", "delete", "table", "ip" if family == 4 else "ip6", table], capture_output=True)
        else:
            _iptables(family, "-t", table, "-F", check=False)
            _iptables(family, "-t", table, "-X", check=False)
    if before:
        tool = "iptables-restore" if family == 4 else "ip6tables-restore"
        proc = subprocess.run([tool], input=saved, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"{tool} could not put the host's rules back: {proc.stderr.strip()[:300]}")
    left = set(parse_tables(_save_tables(family))) - before
    if left:
        raise ClusterError(f"ip{'' if family == 4 else '6'}tables tables {sorted(left)} are still there after down")


def host_snapshot() -> dict[str, Any]:
    """What a cluster may change on this host, for before/after comparison."""
    procs = sorted(p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) in ENGINE_COMMS
                   and pid_alive(int(p.name)))
    return {
        "sysctls": read_sysctls(),
        "iptables": parse_tables(_save_tables(4)),
        "ip6tables": parse_tables(_save_tables(6)),
        "links": sorted(os.listdir("/sys/class/net")),
        "lib_modules": Path("/lib/modules").exists(),
        "engine_processes": procs,
    }


ENGINE_COMMS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "kubelet")


def _engine_children(root: Path) -> list[int]:
    """Live processes of our engine (its containerd and shims name our state dir)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _comm(p) in ENGINE_COMMS:
            try:
                cmdline = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(root) in cmdline and pid_alive(int(p.name)):
                out.append(int(p.name))
    return out


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text().strip()
    except OSError:
        return ""


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per difference between two :func:`host_snapshot` results."""
    out = []
    for key in before:
        a, b = before[key], after.get(key)
        if a == b:
            continue
        if isinstance(a, dict):
            for k in sorted(set(a) | set(b or {})):
                if a.get(k) != (b or {}).get(k):
                    out.append(f"{key} {k}: {a.get(k)!r} -> {(b or {}).get(k)!r}")
        else:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


@dataclass
class HostState:
    """What ``up`` found, so ``down`` can put it back."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, str] = field(default_factory=dict)  # "4"/"6" -> *-save text (own engine only)
    lib_modules_created: bool = False
    links: list[str] = field(default_factory=list)

    @classmethod
    def capture(cls, *, tables: bool) -> HostState:
        state = cls(sysctls=read_sysctls(), lib_modules_created=not Path("/lib/modules").exists(),
                    links=sorted(os.listdir("/sys/class/net")))
        if tables:
            state.iptables = {"4": _save_tables(4), "6": _save_tables(6)}
        return state


_GUARD_RULES = (
    # Forwarded off the kind bridge to anything else: rejected.  Traffic between
    # nodes stays on the bridge and traffic to the host itself is INPUT, not FORWARD.
    (4, "DOCKER-USER"),
    (6, "FORWARD"),
)


def _guard_spec(bridge: str) -> list[str]:
    return ["-i", bridge, "!", "-o", bridge, "-m", "comment", "--comment", GUARD_COMMENT, "-j", "REJECT"]


def guard_present(bridge: str = BRIDGE_NAME) -> bool:
    """Both egress rules are in place (checked with ``-C``, never by sending traffic)."""
    return all(_iptables(fam, "-C", chain, *_guard_spec(bridge), check=False).returncode == 0
               for fam, chain in _GUARD_RULES)


def install_guard(bridge: str = BRIDGE_NAME) -> None:
    for fam, chain in _GUARD_RULES:
        if _iptables(fam, "-n", "-L", chain, check=False).returncode != 0:
            _iptables(fam, "-N", chain)
            _iptables(fam, "-I", "FORWARD", "-j", chain)
        if _iptables(fam, "-C", chain, *_guard_spec(bridge), check=False).returncode != 0:
            _iptables(fam, "-I", chain, "1", *_guard_spec(bridge))
    if not guard_present(bridge):
        raise ClusterError("the egress guard for the kind network is not in place; refusing to start nodes")


def remove_guard(bridge: str = BRIDGE_NAME) -> None:
    for fam, chain in _GUARD_RULES:
        while _iptables(fam, "-D", chain, *_guard_spec(bridge), check=False).returncode == 0:
            pass


@dataclass
class Engine:
    """A Docker engine for the harness: the host's, or one this harness started."""

    root: Path
    env: dict[str, str]
    owned: bool  # started here: stopped (and its host changes undone) at down

    @property
    def state_file(self) -> Path:
        return self.root / "engine.json"

    def docker(self, *args: str, check: bool = True, timeout: float = 600,
               input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return _docker(*args, env=self.env, check=check, timeout=timeout, input=input)

    # -- the kind network ------------------------------------------------

    def ensure_network(self, subnet: str = DEFAULT_SUBNET) -> str:
        """Create the IPv4-only kind network (ours, so its bridge name is known) and guard it."""
        have = self.docker("network", "inspect", NETWORK_NAME, "--format", "{{json .}}", check=False)
        if have.returncode == 0:
            info = json.loads(have.stdout)
            bridge = info.get("Options", {}).get("com.docker.network.bridge.name")
            if bridge != BRIDGE_NAME or info.get("EnableIPv6"):
                raise ClusterError(f"a docker network {NETWORK_NAME!r} exists that flywheel did not create "
                                   f"(bridge {bridge!r}); remove it or use the host's kind as is")
        else:
            self.docker("network", "create", "--driver", "bridge", "--subnet", subnet,
                        "-o", f"com.docker.network.bridge.name={BRIDGE_NAME}",
                        "-o", "com.docker.network.bridge.enable_ip_masquerade=true",
                        "-o", "com.docker.network.driver.mtu=1500", NETWORK_NAME)
        install_guard(BRIDGE_NAME)
        return BRIDGE_NAME

    def remove_network(self) -> None:
        self.docker("network", "rm", NETWORK_NAME, check=False)
        remove_guard(BRIDGE_NAME)


def engine_root(cache: Path) -> Path:
    return cache / "engine"


def _own_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DOCKER_HOST"] = f"unix://{root / 'docker.sock'}"
    return env


def start(cache: Path, *, log: Log | None = None) -> Engine:
    """The host's engine when one answers, else a dockerd of our own."""
    say = log or (lambda m: print(f"engine: {m}", file=sys.stderr, flush=True))
    root = engine_root(cache)
    own = _own_env(root)
    state_file = root / "engine.json"
    if state_file.exists():
        st = json.loads(state_file.read_text())
        if pid_alive(int(st["pid"])) and answers(own):
            return Engine(root=root, env=own, owned=True)
    if os.environ.get("FLYWHEEL_OWN_DOCKERD") != "1" and answers(None):
        say("using the Docker engine that answers on this host")
        return Engine(root=root, env=dict(os.environ), owned=False)
    dockerd = shutil.which("dockerd")
    real_runc = shutil.which("runc") or "/usr/sbin/runc"
    if dockerd is None or not Path(real_runc).exists():
        raise ClusterError("no Docker engine answers and dockerd/runc are not installed: "
                           "install docker.io (./dev does)")
    root.mkdir(parents=True, exist_ok=True)
    host = HostState.capture(tables=True)
    missing = missing_capabilities()
    wrapper = write_runc_wrapper(root / "runc-wrapper", real_runc)
    say(f"starting dockerd (state {root}; runc wrapper drops {', '.join(missing) or 'nothing'})")
    logf = (root / "dockerd.log").open("ab")
    cmd = [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
           "--pidfile", str(root / "dockerd.pid"), "-H", own["DOCKER_HOST"],
           "--add-runtime", f"flywheel-runc={wrapper}", "--default-runtime", "flywheel-runc",
           # no default bridge: every container network is ours and guarded
           "--bridge", "none", "--ip6tables=false", "--userland-proxy=false",
           "--storage-driver", "overlay2", "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    state = {"pid": proc.pid, "host": asdict(host), "missing_capabilities": missing}
    state_file.write_text(json.dumps(state))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace").strip().splitlines()[-1:]
            stop(cache)
            raise ClusterError(f"dockerd exited ({proc.returncode}): {tail[0][:300] if tail else '?'} "
                               f"(log: {root / 'dockerd.log'})")
        if answers(own):
            return Engine(root=root, env=own, owned=True)
        time.sleep(0.5)
    stop(cache)
    raise ClusterError(f"dockerd did not answer within 60 s (log: {root / 'dockerd.log'})")


def stop(cache: Path, *, log: Log | None = None) -> bool:
    """Stop our dockerd by pid and put the host back as ``start`` found it."""
    root = engine_root(cache)
    state_file = root / "engine.json"
    if not state_file.exists():
        return False
    st = json.loads(state_file.read_text())
    pid = int(st["pid"])
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    try:  # reap, if it is our child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    # dockerd's own containerd may outlive it by a moment: wait for it (bounded), then end it.
    deadline = time.monotonic() + 20
    while _engine_children(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    for child in _engine_children(root):
        os.kill(child, signal.SIGKILL)
    host = HostState(**st["host"])
    problems = []
    for fam in (4, 6):
        if str(fam) in host.iptables:
            try:
                restore_tables(fam, host.iptables[str(fam)])
            except ClusterError as exc:
                problems.append(str(exc))
    problems += write_sysctls(host.sysctls)
    for link in sorted(set(os.listdir("/sys/class/net")) - set(host.links)):
        # bridges and veths the engine left behind (normally none once it has stopped)
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
    if host.lib_modules_created:
        try:
            Path("/lib/modules").rmdir()
        except OSError:
            pass
    state_file.unlink()
    if problems:
        raise ClusterError("the host could not be put back as found: " + "; ".join(problems))
    return True
