"""The ``sim`` backend: upstream control-plane processes with KWOK nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from
the Go module proxy by :mod:`flywheel_runtime.toolchain`) run as local processes on loopback with
TLS client certificates and RBAC; kwok simulates the topology's nodes and pod
lifecycle from :file:`stages.yaml`; :mod:`.provisioner` binds the
compute-expansion lanes' WaitForFirstConsumer claims; :mod:`.pki` makes the
certificates.  State (certificates,
kubeconfigs, pids, ports, logs) lives under ``<cache>/clusters/<name>`` so a
second ``up`` reuses a running cluster and ``down`` can clean up after a
crashed one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain
from flywheel_runtime._files import pid_alive
from flywheel_runtime.errors import ClusterError, DeadlineError
from flywheel_runtime.harness import ClusterStatus, Log, stderr_log
from flywheel_runtime.harness.sim.pki import kubeconfig, make_pki

if TYPE_CHECKING:
    from flywheel_runtime.topology import Topology

STAGES = Path(__file__).with_name("stages.yaml")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "provisioner")
KWOK_NODE_LABEL = "type=kwok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(pid: int, grace: float) -> None:
    """SIGTERM the process group, wait up to ``grace`` s, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap our own child so it does not linger as a zombie
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.02)


@dataclass
class SimCluster:
    """One named sim cluster; all of its state is in :attr:`state_dir`."""

    name: str = "flywheel"
    root: Path | None = None
    # ARC's CRD directory (--arc-crds); None: $FLYWHEEL_ARC_CRDS or ../shared (see harness.arc).
    arc_crds: Path | None = None
    log: Log = stderr_log

    @property
    def state_dir(self) -> Path:
        return (self.root or toolchain.cache_root()) / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    # -- state -------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        from flywheel_runtime._files import write_atomic

        write_atomic(self._state_file, json.dumps(state, indent=2))

    def status(self) -> ClusterStatus:
        state = self._read_state()
        if not state:
            return ClusterStatus("sim", self.name, False)
        comps = {c: ("running" if pid_alive(p) else "stopped") for c, p in state.get("pids", {}).items()}
        healthy = bool(comps) and all(v == "running" for v in comps.values()) and self._ready(state)
        return ClusterStatus("sim", self.name, healthy, comps, kubeconfig=self.kubeconfig,
                             server=state.get("server"), ports=state.get("ports"))

    def _ready(self, state: dict[str, Any]) -> bool:
        try:
            return self._get(state["server"], "/readyz") == "ok"
        except Exception:
            return False

    def _ssl(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _get(self, server: str, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(server + path, context=self._ssl(), timeout=timeout) as resp:
            return resp.read().decode()

    # -- lifecycle ---------------------------------------------------------

    def up(self, topo: Topology) -> Path:
        """Bring the cluster up for ``topo`` (or reuse a healthy running one); return the kubeconfig."""
        say = self.log
        st = self.status()
        if st.running:
            say(f"reusing running sim cluster {self.name!r}")
            return self.kubeconfig
        if st.components:
            say("found a stale or partial cluster; cleaning it up first")
        self.down(quiet=True)
        t0 = time.monotonic()
        from flywheel_runtime.harness.arc import crd_source

        crd_source(self.arc_crds)  # a wrong --arc-crds fails before anything starts
        bins = toolchain.ensure_binaries(root=self.root)
        d = self.state_dir
        (d / "logs").mkdir(parents=True, exist_ok=True)
        pki = d / "pki"
        make_pki(pki)
        ports = {k: _free_port() for k in ("etcd", "etcd-peer", "apiserver", "scheduler", "controller-manager",
                                           "kwok")}
        server = f"https://127.0.0.1:{ports['apiserver']}"
        for user in ("admin", "scheduler", "controller-manager", "kwok", "provisioner"):
            kubeconfig(d / f"{user}.kubeconfig", server, pki, user)
        state: dict[str, Any] = {"server": server, "ports": ports, "pids": {}, "started": time.time()}
        self._write_state(state)
        try:
            self._start(state, "etcd", [
                str(bins.etcd), "--name", "flywheel", "--data-dir", str(d / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{ports['etcd']}",
                "--advertise-client-urls", f"http://127.0.0.1:{ports['etcd']}",
                "--listen-peer-urls", f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-cluster", f"flywheel=http://127.0.0.1:{ports['etcd-peer']}",
                # A test cluster: durability is not the point, latency is.
                "--unsafe-no-fsync", "--log-level", "warn",
            ])
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), 30, "etcd health")
            self._start(state, "kube-apiserver", [
                str(bins.kube_apiserver),
                "--etcd-servers", f"http://127.0.0.1:{ports['etcd']}",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(ports["apiserver"]),
                "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--authorization-mode", "Node,RBAC",
                "--allow-privileged=true",  # the DinD daemon sidecar is privileged
                "--profiling=false", "--v=1",
            ])
            self._wait(lambda: self._ready(state), 90, "kube-apiserver /readyz")
            common = ["--bind-address", "127.0.0.1", "--leader-elect=false", "--v=1", "--profiling=false"]

            def identity(user: str) -> list[str]:
                # A component talks to, authenticates and authorizes against the
                # apiserver as its own certificate user.
                kc = str(d / f"{user}.kubeconfig")
                return ["--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc]

            self._start(state, "kube-controller-manager", [
                str(bins.kube_controller_manager), *common,
                *identity("controller-manager"),
                "--secure-port", str(ports["controller-manager"]),
                "--use-service-account-credentials=true",
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--cluster-signing-cert-file", str(pki / "ca.crt"),
                "--cluster-signing-key-file", str(pki / "ca.key"),
                # Simulated kubelets heartbeat every ~5 s: react to changes quickly.
                "--node-monitor-period", "2s", "--node-monitor-grace-period", "40s",
                "--concurrent-gc-syncs", "5",
            ])
            self._start(state, "kube-scheduler", [
                str(bins.kube_scheduler), *common,
                *identity("scheduler"),
                "--secure-port", str(ports["scheduler"]),
            ])
            self._bootstrap(topo)
            self._start(state, "kwok", [
                str(bins.kwok), "--kubeconfig", str(d / "kwok.kubeconfig"),
                "--manage-all-nodes=false", "--manage-nodes-with-label-selector", KWOK_NODE_LABEL,
                "--config", str(STAGES), "--server-address", f"127.0.0.1:{ports['kwok']}",
                "--node-lease-duration-seconds", "40",
            ])
            self._start(state, "provisioner", [
                sys.executable, "-m", "flywheel_runtime.harness.sim.provisioner",
                "--kubeconfig", str(d / "provisioner.kubeconfig"),
            ])
            self._wait_nodes_ready()
        except BaseException:
            say(f"cluster start failed; logs in {d / 'logs'}")
            self.down(quiet=True, keep_logs=True)
            raise
        state["up_seconds"] = round(time.monotonic() - t0, 2)
        self._write_state(state)
        say(f"sim cluster {self.name!r} up in {state['up_seconds']:.1f}s ({server})")
        return self.kubeconfig

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status == 200
        except Exception:
            return False

    def _start(self, state: dict[str, Any], name: str, argv: list[str]) -> None:
        log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=self.state_dir)
        log.close()
        state["pids"][name] = proc.pid
        self._write_state(state)

    def _wait(self, probe: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        state = self._read_state() or {}
        while time.monotonic() < deadline:
            if probe():
                return
            for comp, pid in state.get("pids", {}).items():
                if not pid_alive(pid):
                    tail = self._log_tail(comp)
                    raise ClusterError(f"{comp} exited while waiting for {what}: {tail}")
            time.sleep(0.1)
        raise DeadlineError(f"timed out after {timeout:.0f}s waiting for {what} (logs: {self.state_dir / 'logs'})")

    def _log_tail(self, comp: str) -> str:
        try:
            lines = (self.state_dir / "logs" / f"{comp}.log").read_text(errors="replace").strip().splitlines()
            return lines[-1][:300] if lines else "(empty log)"
        except OSError:
            return "(no log)"

    def _bootstrap(self, topo: Topology) -> None:
        """The topology's nodes, as Node objects kwok will run (label ``type=kwok``), then the shared bootstrap."""
        from flywheel_runtime.harness.bootstrap import bootstrap
        from flywheel_runtime.kube import connect
        from flywheel_runtime.topology import render

        kube = connect(self.kubeconfig, check=False)
        for obj in render.node_objects(topo):
            obj["metadata"]["labels"]["type"] = "kwok"
            kube.apply(obj)
        bootstrap(kube, topo, arc_crds=self.arc_crds, log=self.log)

    def _wait_nodes_ready(self) -> None:
        from flywheel_runtime.kube import connect

        kube = connect(self.kubeconfig, check=False)
        self._wait(kube.nodes_ready_and_untainted, 90, "nodes Ready without the not-ready taint")
        self._wait(lambda: kube.service_account_exists("arc-runners", "default"), 60,
                   "the default service account in arc-runners")

    def down(self, *, quiet: bool = False, keep_logs: bool = False) -> bool:
        """Stop every process and remove the cluster's state; True if anything ran."""
        state = self._read_state()
        ran = False
        if state:
            # Reverse start order, one at a time: the apiserver shuts down in
            # about a second with etcd still there, but stalls ~10 s without it.
            for _, pid in reversed(list(state.get("pids", {}).items())):
                if pid_alive(pid):
                    ran = True
                    _stop(pid, grace=5.0)
        if self.state_dir.exists():
            if keep_logs:
                for child in self.state_dir.iterdir():
                    if child.name != "logs":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            else:
                shutil.rmtree(self.state_dir, ignore_errors=True)
        if not quiet:
            self.log(f"sim cluster {self.name!r} " + ("stopped" if ran else "was not running"))
        return ran
