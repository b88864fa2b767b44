"""What is built offline, and where the cache keeps it.

Every binary the project runs but does not ship is built here from the Go
module proxy (or, for pause, from Kubernetes' own C source) into the cache
(:mod:`.cache`: ``$FLYWHEEL_CACHE_DIR``), at the versions :mod:`.pins` names:

* ``sim``: kube-apiserver, -scheduler, -controller-manager, kubectl (and the
  node agents and kubeadm the kind node image adds), etcd, kwok;
* ``tools``: promtool, actionlint and helm, the operator tools;
* ``kind``: pause, kind, containerd, runc, crictl, CoreDNS and the
  local-path provisioner, the kind node image's parts, and the NetworkPolicy
  engine (kube-network-policies, patched to queue through xt NFQUEUE).

This package imports nothing of the project but :mod:`flywheel_runtime.errors`:
the harness and the audits build on it, never the reverse.  What only the
kind backend builds from these parts (the node image, the runner images)
lives with that backend (:mod:`flywheel_runtime.harness.kind`);
``flywheel-runtime toolchain ensure`` builds both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel_runtime.toolchain._registry import *  # noqa: F403
    from flywheel_runtime.toolchain._registry import __all__  # noqa: F401

# The registry (and with it subprocess, inspect and the build path) loads on first use:
# the CLI registers `toolchain` on every command, the runtime path's included.


def __getattr__(name: str) -> Any:
    registry = importlib.import_module("flywheel_runtime.toolchain._registry")
    if name.startswith("__") or not hasattr(registry, name):
        raise AttributeError(f"module 'flywheel_runtime.toolchain' has no attribute {name!r}")
    return getattr(registry, name)
