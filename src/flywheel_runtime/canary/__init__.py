"""Canaries: prove a lane's devices work by running checked workloads on them.

``kvm`` runs a real guest through /dev/kvm; ``vulkan``, ``webgpu`` (wgpu-py) and
``dawn`` (Dawn's Node bindings) each run a compute job and an offscreen render
and check what comes back.  Importing this package is cheap: each canary
imports its GPU stack only when it runs.
"""

CANARY_NAMES = ("kvm", "vulkan", "webgpu", "dawn")
