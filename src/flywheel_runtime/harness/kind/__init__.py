"""The ``kind`` backend: real kubelets in containers, from the same topology.

``up`` builds (or reuses) everything offline, in order, each step guarded:

1. the toolchain (Kubernetes, etcd, containerd, runc, crictl, CoreDNS, the
   local-path provisioner, pause, kind) from the Go module proxy
   (:mod:`flywheel_runtime.toolchain`);
2. a Docker engine (the host's, or a dockerd of our own: :mod:`.engine`);
3. the node image (:mod:`.nodeimage`; the runner images it loads are
   :mod:`.runner_images`);
4. the IPv4-only ``kind`` network and its egress guard; no guard, no nodes;
5. ``kind create cluster`` through pytest-kind's ``KindCluster`` with the
   harness's own kind and kubectl, from :func:`topology.render.kind_config`
   plus what this host needs (no default CNI, cgroup v1 allowed, ``/dev/kvm``
   on honey);
6. pod networking in place of kindnetd (which cannot be had offline): a static
   ptp + host-local CNI config per node on its podCIDR, a route on every node
   to every other node's podCIDR via that node's address, and masquerade for
   pod traffic leaving the pod network (the guard still stops it at the host);
7. CoreDNS that answers the cluster zone and forwards nothing off the machine;
8. the shared bootstrap (:mod:`flywheel_runtime.harness.bootstrap`): bumble
   cordoned, namespaces, priority, storage and runtime classes, ARC's CRDs,
   the posture (admission policies, NetworkPolicies, the jobs' RBAC, the
   lanes' accounts);
9. the NetworkPolicy engine (:mod:`.netpol`: kube-network-policies, built
   from the module proxy), a DaemonSet on every node: the ptp network itself
   enforces no policy;
10. metrics-server (:mod:`flywheel_runtime.harness.metrics`, preloaded in the
    node image), waited for until ``metrics.k8s.io`` is served: HPAs and
    ``kubectl top`` work;
11. every runner image the topology names (and the DinD daemon stand-in),
    built by ``./dev`` (:mod:`.runner_images`; a missing one is built here),
    loaded into every node from one archive, so a rendered lane pod starts as
    it is;
12. with ``arc_controller_image``: ARC in motion (:mod:`.arc`): the
    controller image loaded, the Actions service double in the cluster, the
    controller and every scale set's chart installed with helm, the rendered
    CronJobs.

``down`` deletes the cluster and its network, stops a dockerd it started, and
puts back the sysctls the kubelets rewrote.  Real allocatable is this
machine's, so figures that need the platform's capacities stay on the sim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain
from flywheel_runtime.errors import ClusterError
from flywheel_runtime.harness import ClusterStatus, Log, stderr_log

if TYPE_CHECKING:
    from pytest_kind import KindCluster

    from flywheel_runtime.harness.kind.engine import Engine
    from flywheel_runtime.kube import Client
    from flywheel_runtime.topology import Topology

POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
CNI_CONFLIST = "/etc/cni/net.d/10-flywheel-ptp.conflist"
KVM_DEVICE = "/dev/kvm"


def available() -> bool:
    """kind can run here: Docker answers, or Debian's dockerd is installed for us to start."""
    from flywheel_runtime.harness.kind import engine

    if os.environ.get("FLYWHEEL_KIND") == "0":
        return False
    if engine.answers(None):
        return True
    return (shutil.which("dockerd") is not None and shutil.which("docker") is not None
            and shutil.which("debootstrap") is not None and os.geteuid() == 0)


def cluster_config(topo: Topology, name: str, *, kvm: bool | None = None,
                   device_specs: tuple[Path, Path] | None = None,
                   restrict_oom: bool | None = None) -> dict[str, Any]:
    """kind's Cluster config: the topology's nodes plus what this host needs.

    ``device_specs`` (a directory for the files, containerd's ``ctr``): the device
    lanes' containerd handlers (topology/devices.yaml) on every node."""
    from flywheel_runtime.topology import render

    cfg = render.kind_config(topo)
    cfg["name"] = name
    cfg["networking"] = {
        # kindnetd cannot be built offline; the harness routes pods itself.
        "disableDefaultCNI": True, "ipFamily": "ipv4",
        "podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET,
    }
    # This host has cgroup v1 (hybrid); kubelet 1.36 refuses it unless told otherwise.
    cfg.setdefault("kubeadmConfigPatches", []).append(
        "kind: KubeletConfiguration\nfailCgroupV1: false\n")
    # Registries resolve to a refused local port (the node image's certs.d/_default):
    # images are loaded, and a pull attempt never sends a packet out.
    cfg["containerdConfigPatches"] = [
        '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n']
    if restrict_oom is None:
        from flywheel_runtime.harness.kind import engine

        restrict_oom = "CAP_SYS_RESOURCE" in engine.missing_capabilities()
    if restrict_oom:
        # Without CAP_SYS_RESOURCE (not in this host's bounding set) runc cannot lower a
        # container's oom_score_adj below containerd's own (the pause sandbox asks for
        # -998): containerd clamps it instead, as on rootless nodes.
        cfg["containerdConfigPatches"].append('[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n')
    have_kvm = Path(KVM_DEVICE).exists() if kvm is None else kvm
    for node in cfg["nodes"]:
        # The KVM lanes' baseline is honey, kind's control-plane node.
        if have_kvm and node["role"] == "control-plane":
            node["extraMounts"] = [{"hostPath": KVM_DEVICE, "containerPath": KVM_DEVICE}]
    if device_specs is not None:
        from flywheel_runtime.topology import devices

        patches, mounts = devices.kind_node_setup(topo, *device_specs)
        cfg["containerdConfigPatches"] += patches
        for node in cfg["nodes"]:
            node["extraMounts"] = [*node.get("extraMounts", []), *mounts]
    return cfg


def _cni_conflist(pod_cidr: str) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0", "name": "flywheel-ptp",
        "plugins": [
            {"type": "ptp", "ipMasq": False, "mtu": 1500,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/cni-ipam-state"}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass
class KindBackend:
    name: str = "flywheel"
    root: Path | None = None
    arc_crds: Path | None = None
    log: Log = stderr_log

    @property
    def cache(self) -> Path:
        return self.root or toolchain.cache_root()

    @property
    def state_dir(self) -> Path:
        return self.cache / "clusters" / f"kind-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def _host_record(self) -> Path:
        """What the host looked like before the first kind cluster (shared by all of them)."""
        return self.cache / "clusters" / "kind-host.json"

    # -- pieces ----------------------------------------------------------

    def _cluster(self, tc: toolchain.KindToolchain, image: str | None = None) -> KindCluster:
        try:
            from pytest_kind import KindCluster
        except ImportError as exc:
            raise ClusterError("the kind backend needs pytest-kind: pip install 'flywheel-runtime[kind]'") from exc
        # Our own binaries: pytest-kind would otherwise download kind and kubectl.
        return KindCluster(self.name, kubeconfig=self.kubeconfig, image=image,
                           kind_path=tc.kind, kubectl_path=tc.kubectl)

    def _kind(self, tc: toolchain.KindToolchain, *args: str, env: dict[str, str]) -> str:
        proc = subprocess.run([str(tc.kind), *args], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"kind {' '.join(args[:2])} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def _exists(self, tc: toolchain.KindToolchain, env: dict[str, str]) -> bool:
        return self.name in self._kind(tc, "get", "clusters", env=env).split()

    def _route_pods(self, eng: Engine, kube: Client, tc: toolchain.KindToolchain, env: dict[str, str]) -> None:
        nodes_api = kube.core.list_node().items
        by_ip = {}
        for n in nodes_api:
            ip = next(a.address for a in n.status.addresses if a.type == "InternalIP")
            if not n.spec.pod_cidr:
                raise ClusterError(f"node {n.metadata.name} has no podCIDR (is allocate-node-cidrs on?)")
            by_ip[ip] = (n.metadata.name, n.spec.pod_cidr)
        containers = self._kind(tc, "get", "nodes", "--name", self.name, env=env).split()
        for c in containers:
            ip = eng.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                            c).stdout.decode().strip()
            if ip not in by_ip:
                raise ClusterError(f"node container {c} ({ip}) is not a registered node")
            _, cidr = by_ip[ip]
            eng.docker("exec", "-i", c, "sh", "-c", f"cat > {CNI_CONFLIST}",
                       input=json.dumps(_cni_conflist(cidr), indent=2).encode())
            for other_ip, (_, other_cidr) in by_ip.items():
                if other_ip != ip:
                    eng.docker("exec", c, "ip", "route", "replace", other_cidr, "via", other_ip)
            rule = ["-t", "nat", "POSTROUTING", "-s", cidr, "!", "-d", POD_SUBNET, "-m", "comment",
                    "--comment", "flywheel: pod egress", "-j", "MASQUERADE"]
            if eng.docker("exec", c, "iptables", "-C", *rule[:2], *rule[2:], check=False).returncode != 0:
                eng.docker("exec", c, "iptables", rule[0], rule[1], "-A", *rule[2:])

    def _corefile_no_forward(self, kube: Client) -> None:
        cm = kube.core.read_namespaced_config_map("coredns", "kube-system")
        corefile = cm.data["Corefile"]
        out, skip = [], 0
        for line in corefile.splitlines():
            stripped = line.strip()
            if skip:
                skip += stripped.count("{") - stripped.count("}")
                continue
            if stripped.startswith("forward "):
                skip = stripped.count("{") - stripped.count("}")
                continue
            out.append(line)
        new = "\n".join(out) + "\n"
        if new != corefile:
            kube.core.patch_namespaced_config_map("coredns", "kube-system", {"data": {"Corefile": new}})

    def _wait_ready(self, kube: Client, timeout: float) -> None:
        from flywheel_runtime.kube import wait_for

        def ready() -> bool:
            nodes = kube.core.list_node().items
            ok = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
            return len(ok) == len(nodes) > 0

        wait_for(ready, timeout, "kind nodes Ready", interval=0.5)

        def dns() -> bool:
            pods = kube.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
            return bool(pods) and all(p.status.phase == "Running" and all(
                cs.ready for cs in p.status.container_statuses or []) for p in pods)

        wait_for(dns, timeout, "CoreDNS Ready", interval=0.5)

    # -- the backend interface --------------------------------------------

    def up(self, topo: Topology, *, arc_controller_image: str | None = None) -> Path:
        """``arc_controller_image``: install ARC too (a reference or a docker archive; :mod:`.arc`)."""
        say = self.log
        from flywheel_runtime.harness.arc import crd_source
        from flywheel_runtime.harness import metrics
        from flywheel_runtime.harness.bootstrap import bootstrap
        from flywheel_runtime.harness.kind import engine, nodeimage
        from flywheel_runtime.kube import connect

        if not available():
            raise ClusterError("the kind backend needs a Docker engine, or root with Debian's docker.io and "
                               "debootstrap installed so the harness can start its own (./dev installs them)")
        crd_source(self.arc_crds)  # a wrong --arc-crds fails before anything starts
        t0 = time.monotonic()
        tc = toolchain.ensure_kind_toolchain(root=self.root)
        eng = engine.start(self.cache, log=say)
        env = eng.env
        os.environ["DOCKER_HOST"] = env.get("DOCKER_HOST", "")  # pytest-kind's subprocesses inherit it
        if not os.environ["DOCKER_HOST"]:
            del os.environ["DOCKER_HOST"]
        if self._state_file.exists() and self.status().running:
            say(f"reusing running kind cluster {self.name!r}")
            if arc_controller_image:
                self._arc(eng, connect(self.kubeconfig, check=False), topo, arc_controller_image)
            return self.kubeconfig
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self._host_record.exists():
            # Before the first node of any kind cluster starts: the kubelets rewrite
            # these host-wide, and the last cluster's down puts them back.
            self._host_record.parent.mkdir(parents=True, exist_ok=True)
            self._host_record.write_text(json.dumps({"sysctls": engine.read_sysctls()}))
        if not self._state_file.exists():
            self._state_file.write_text(json.dumps({"engine_owned": eng.owned}))
        image = nodeimage.build_node_image(eng, tc, root=self.root, log=say)
        eng.ensure_network()
        if not engine.guard_present():
            raise ClusterError("the kind network's egress guard is not in place; refusing to create nodes")
        cfg_path = self.state_dir / "kind-config.yaml"
        import yaml

        specs = (self.state_dir / "device-specs", tc.tools["containerd"] / "ctr")
        cfg_path.write_text(yaml.safe_dump(cluster_config(topo, self.name, device_specs=specs), sort_keys=False))
        t1 = time.monotonic()
        if self._exists(tc, env):
            say(f"deleting a stale kind cluster {self.name!r}")
            self._kind(tc, "delete", "cluster", "--name", self.name, env=env)
        say(f"creating kind cluster {self.name!r} ({len(topo.nodes)} nodes, image {image.name})")
        cluster = self._cluster(tc, image.name)
        try:
            cluster.create(config_file=cfg_path)
        except subprocess.CalledProcessError as exc:
            raise ClusterError(f"kind create cluster failed (exit {exc.returncode}); see the output above") from exc
        kube = connect(self.kubeconfig, check=False)
        self._corefile_no_forward(kube)
        self._route_pods(eng, kube, tc, env)
        self._wait_ready(kube, timeout=180)
        bootstrap(kube, topo, arc_crds=self.arc_crds, log=say)
        from flywheel_runtime.harness.kind import netpol

        netpol_s = netpol.install(eng, kube, self.name, root=self.root, log=say)
        metrics.install(kube, log=say)  # every HPA (the GitLab runners') and `kubectl top` read it
        self.load_runner_images(eng, topo)
        if arc_controller_image:
            self._arc(eng, kube, topo, arc_controller_image)
        st = json.loads(self._state_file.read_text())
        st.update({"image": image.name, "created_s": round(time.monotonic() - t1, 1),
                   "up_s": round(time.monotonic() - t0, 1), "netpol_s": round(netpol_s, 1)})
        self._state_file.write_text(json.dumps(st))
        say(f"kind cluster {self.name!r} up in {time.monotonic() - t1:.0f} s "
            f"({time.monotonic() - t0:.0f} s with builds and checks)")
        return self.kubeconfig

    def load_runner_images(self, eng: Engine, topo: Topology) -> float:
        """Every runner image ``topo`` names and the DinD daemon stand-in into every node (one
        archive); images missing from the engine are built first.  Returns the load's seconds."""
        from flywheel_runtime.harness.kind import runner_images

        wanted = {**runner_images.runner_targets(topo), runner_images.DAEMON_KEY: topo.images[runner_images.DAEMON_KEY]}
        builder = runner_images.Builder(eng, topo, self.root, log=self.log)
        missing = [target for target, tag in wanted.items() if not builder._loaded(tag)]
        if missing:
            self.log(f"runner images not built yet: {', '.join(missing)} (./dev builds them); building them now")
            builder.build_all(missing)
        tags = sorted(set(wanted.values()))
        seconds = runner_images.load_into_kind(eng, self, tags)
        self.log(f"{len(tags)} runner images loaded into every node in {seconds:.0f} s")
        return seconds

    def _arc(self, eng: Engine, kube: Client, topo: Topology, image_spec: str) -> None:
        from flywheel_runtime.harness.kind import arc

        arc.record(self, arc.install(self, eng, kube, topo, image_spec, log=self.log))

    def down(self, *, quiet: bool = False) -> bool:
        from flywheel_runtime.harness import quiet_log
        from flywheel_runtime.harness.kind import engine

        say = quiet_log if quiet else self.log
        eroot = engine.engine_root(self.cache)
        env = self._env()
        did = False
        others: list[str] = []
        from flywheel_runtime.harness.kind import arc

        arc.forget(self)
        if self._kind_bin.exists() and engine.answers(env):
            if self.name in self._clusters(env):
                say(f"deleting kind cluster {self.name!r}")
                subprocess.run([str(self._kind_bin), "delete", "cluster", "--name", self.name], env=env,
                               capture_output=True, text=True)
                did = True
            others = self._clusters(env)
        problems: list[str] = []
        if others:
            # Another kind cluster still runs on this engine: its network, rules,
            # engine and the host's rewritten sysctls stay until the last one goes.
            say(f"kind clusters still running ({', '.join(others)}): the engine and the host record stay")
        else:
            if engine.answers(env):
                engine.Engine(root=eroot, env=env, owned=False).remove_network()
            if self._host_record.exists():
                problems = engine.write_sysctls(json.loads(self._host_record.read_text()).get("sysctls", {}))
                self._host_record.unlink()
            elif self._state_file.exists():  # a cluster brought up before the shared record existed
                problems = engine.write_sysctls(json.loads(self._state_file.read_text()).get("sysctls", {}))
            if engine.stop(self.cache):
                say("stopped the harness's dockerd and put the host's rules and sysctls back")
                did = True
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(Path(".pytest-kind") / self.name, ignore_errors=True)
        if problems:
            raise ClusterError("could not restore sysctls: " + "; ".join(problems))
        return did

    def _env(self) -> dict[str, str]:
        """The docker CLI's environment: our dockerd's socket while it runs, else the host's engine."""
        from flywheel_runtime.harness.kind import engine

        eroot = engine.engine_root(self.cache)
        if (eroot / "engine.json").exists():
            return dict(os.environ, DOCKER_HOST=f"unix://{eroot / 'docker.sock'}")
        return dict(os.environ)

    @property
    def _kind_bin(self) -> Path:
        return toolchain.component_dir("kind", toolchain.KIND_TOOLS["kind"].version, self.cache) / "bin" / "kind"

    def _clusters(self, env: dict[str, str]) -> list[str]:
        proc = subprocess.run([str(self._kind_bin), "get", "clusters"], env=env, capture_output=True, text=True)
        return proc.stdout.split()

    def load_image(self, image: str) -> float:
        """``kind load docker-image`` into every node; return the seconds it took."""
        t0 = time.monotonic()
        proc = subprocess.run([str(self._kind_bin), "load", "docker-image", "--name", self.name, image],
                              env=self._env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"kind load docker-image {image} failed: {proc.stderr.strip()[-300:]}")
        return time.monotonic() - t0

    def status(self) -> ClusterStatus:
        from flywheel_runtime.harness.kind import engine

        st = json.loads(self._state_file.read_text()) if self._state_file.exists() else {}
        env = self._env()
        running, comps = False, {}
        if self.kubeconfig.exists() and self._kind_bin.exists() and engine.answers(env):
            comps["engine"] = "running (ours)" if st.get("engine_owned") else "running (host's)"
            if self.name in self._clusters(env):
                # The node containers exist; running means the API server answers too.
                kubectl = toolchain.kubectl(self.cache)
                ready = subprocess.run([str(kubectl), "--kubeconfig", str(self.kubeconfig), "--request-timeout=5s",
                                        "get", "--raw", "/readyz"], capture_output=True, text=True)
                running = ready.returncode == 0 and ready.stdout.strip() == "ok"
                comps["kube-apiserver"] = "running" if running else "not answering"
        elif st:
            comps["engine"] = "stopped"
        return ClusterStatus("kind", self.name, running, comps, kubeconfig=self.kubeconfig, image=st.get("image"))


def prepare(root: Path | None = None, *, log: Log | None = None) -> str:
    """Build (or check the stamps of) the toolchain and node image; return the image name.

    ``./dev`` runs it so a first ``cluster up`` only creates nodes.  A dockerd
    started for the build is stopped again, leaving the host as it was.
    """
    from flywheel_runtime.harness.kind import engine, nodeimage

    cache = root or toolchain.cache_root()
    tc = toolchain.ensure_kind_toolchain(root=root)
    running = (engine.engine_root(cache) / "engine.json").exists()
    eng = engine.start(cache, log=log)
    try:
        return nodeimage.build_node_image(eng, tc, root=root, log=log).name
    finally:
        if eng.owned and not running:
            engine.stop(cache)
