"""Every version the offline builds pin, in one place.

A bump here is the whole change: cache directories and the kind node image's
key are derived from these values.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"  # what kubeadm pins for Kubernetes 1.36 (image tag 3.6.8-0): both backends run it
KWOK_VERSION = "v0.8.0"
PAUSE_VERSION = "3.10"

# The sim runs the first four; the kind node image adds the node agents and kubeadm.
KUBE_COMMANDS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl",
                 "kubelet", "kubeadm", "kube-proxy")


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
    # The resource metrics API (metrics.k8s.io) every HPA and `kubectl top` read;
    # not in kind's base image: the harness installs it (harness/metrics.py).
    GoTool("metrics-server", "v0.8.1", ("sigs.k8s.io/metrics-server/cmd/metrics-server",), ("metrics-server",),
           ldflags="-X k8s.io/client-go/pkg/version.gitVersion=v{v}"),  # its Makefile's VERSION_LDFLAGS
)}

# The NetworkPolicy engine the kind backend runs (what kindnetd embeds), built from
# the module proxy's source with one patch (toolchain.build.build_network_policies).
NETWORK_POLICIES_MODULE = "sigs.k8s.io/kube-network-policies"
NETWORK_POLICIES_VERSION = "v0.8.0"

# The operator tools: promtool checks the rendered alert rules (Prometheus 3.x tags
# its Go module v0.3xx.y, with no replace directives), actionlint lints workflows
# against the platform's labels, helm renders ARC 0.14.0's charts (a Helm 3 chart;
# v3.17.3 is what the ARC helm test was first held with, and the proxy serves it).
# helm's own Makefile stamps its version and the Kubernetes version its client-go
# speaks (1.32 for v3.17): without them `helm version` says v3.17 and
# `.Capabilities.KubeVersion` is chartutil's old default.
GO_TOOLS: dict[str, GoTool] = {t.name: t for t in (
    GoTool("promtool", "v0.316.0", ("github.com/prometheus/prometheus/cmd/promtool",), ("promtool",)),
    GoTool("actionlint", "v1.7.12", ("github.com/rhysd/actionlint/cmd/actionlint",), ("actionlint",)),
    GoTool("helm", "v3.17.3", ("helm.sh/helm/v3/cmd/helm",), ("helm",),
           ldflags="-X helm.sh/helm/v3/internal/version.version=v{v} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
                   " -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=32"
                   " -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=32"),
    # kube-score lints the rendered manifests (tests/unit/topology/test_kube_score.py).
    GoTool("kube-score", "v1.20.0", ("github.com/zegl/kube-score/cmd/kube-score",), ("kube-score",)),
)}


# Every toolchain component's name, in registry order: the CLI lists them without
# loading the registry (tests/unit/toolchain holds the two equal).
COMPONENT_NAMES: tuple[str, ...] = ("kubernetes", "etcd", "kwok", *GO_TOOLS, "pause", *KIND_TOOLS, "kube-network-policies")
