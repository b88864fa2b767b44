"""The kind backend's NetworkPolicy engine: kube-network-policies (what kindnetd embeds).

kindnetd cannot be had offline and the harness's ptp pod network enforces no
policy, so ``up`` runs the engine itself: the toolchain's build (patched to
queue packets through the xtables NFQUEUE target, see
:func:`flywheel_runtime.toolchain.build.patch_network_policies`) as a
single-binary image, loaded into every node from an archive (no registry), and
a DaemonSet on the host network of every node.  The sim has no data path, so
there NetworkPolicies are admitted and stored but nothing enforces them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime import toolchain
from flywheel_runtime.errors import ClusterError

if TYPE_CHECKING:
    from flywheel_runtime.harness import Log
    from flywheel_runtime.harness.kind.engine import Engine
    from flywheel_runtime.kube import Client

NAME = "kube-network-policies"
NAMESPACE = "kube-system"
IMAGE = f"localhost/flywheel/{NAME}:{toolchain.NETWORK_POLICIES_VERSION}-xt-nfqueue"
BINARY = f"/bin/{NAME}"
QUEUE_ID = 98  # upstream's install.yaml's queue


def archive(root: Path | None = None) -> Path:
    """The engine's image as a docker-archive (built from the toolchain's binary)."""
    from flywheel_runtime.harness.kind import nodeimage

    binary = toolchain.ensure([NAME], root=root)[NAME] / NAME
    work = (root or toolchain.cache_root()) / NAME / toolchain.NETWORK_POLICIES_VERSION / "image"
    layer = nodeimage.binary_layer(work / "layer.tar", {BINARY: binary})
    label = {"org.opencontainers.image.source": "built offline by flywheel-runtime from the Go module proxy "
                                                f"(sigs.k8s.io/kube-network-policies {toolchain.NETWORK_POLICIES_VERSION},"
                                                " patched: xt NFQUEUE)"}
    return nodeimage.write_archive(work / "image.tar", [nodeimage.ArchiveImage(
        [IMAGE], [layer], entrypoint=[BINARY], labels=label)])


def manifests() -> list[dict[str, Any]]:
    """Its account (list and watch what policies select on, nothing else) and its DaemonSet."""
    labels = {"app": NAME, "k8s-app": NAME}
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": NAME}, "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": NAME},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "hostNetwork": True,
             "priorityClassName": "system-node-critical",
             "serviceAccountName": NAME,
             "tolerations": [{"operator": "Exists"}],  # every node: a node without it enforces nothing
             "containers": [{
                 "name": NAME, "image": IMAGE, "imagePullPolicy": "Never",
                 "args": ["--hostname-override=$(NODE_NAME)", f"--nfqueue-id={QUEUE_ID}",
                          # the race fix hooks PREROUTING for DNS, which the ptp network does not need;
                          # NRI is off in the node image's containerd.
                          "--netfilter-bug-1766-fix=false", "--disable-nri", "--v=2"],
                 "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                 "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}, "limits": {"memory": "300Mi"}},
                 # nftables and the netfilter queue on the node's own network namespace.
                 "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},
             }],
         }}}},
    ]


def install(eng: Engine, kube: Client, cluster: str, *, root: Path | None = None, log: Log,
            timeout: float = 180) -> float:
    """Load the engine's image into every node of kind cluster ``cluster``, apply its
    DaemonSet and wait until every node runs it; return the seconds it took."""
    from flywheel_runtime.kube import wait_for

    t0 = time.monotonic()
    tar = archive(root)
    kind_bin = toolchain.component_dir("kind", toolchain.KIND_TOOLS["kind"].version, root) / "bin" / "kind"
    proc = subprocess.run([str(kind_bin), "load", "image-archive", "--name", cluster, str(tar)],
                          env={**os.environ, **eng.env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"kind load image-archive ({NAME}) failed: {proc.stderr.strip()[-300:]}")
    for obj in manifests():
        kube.apply(obj)

    def ready() -> bool:
        ds = kube.apps.read_namespaced_daemon_set(NAME, NAMESPACE).status
        want = ds.desired_number_scheduled or 0
        return want > 0 and (ds.number_ready or 0) == want

    wait_for(ready, timeout, f"{NAME} ready on every node", interval=1.0)
    seconds = time.monotonic() - t0
    log(f"NetworkPolicy engine ({NAME} {toolchain.NETWORK_POLICIES_VERSION}) running on every node "
        f"in {seconds:.0f} s")
    return seconds
