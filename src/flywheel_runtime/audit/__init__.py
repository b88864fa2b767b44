"""Operator audits and guards for the ARC runner platform.

Commands (``flywheel-runtime ...``; exit codes in :mod:`flywheel_runtime.audit._cli`):

* ``audit imagefs --node NODE [--stats-file FILE]``: kubelet rootfs, imagefs and
  containerfs headroom against the eviction thresholds (:mod:`.imagefs`);
* ``audit labels [--offline]``: per workflow-facing label, the scale sets of
  every owner overlay that publish it, and global capacity debt (:mod:`.labels`);
* ``audit alert-rules [--check]``: the ARC controller's PrometheusRule (:mod:`.alerts`),
  checked with promtool built from the Go module proxy (:mod:`.promtool`);
* ``prove listener-caps``: settle-aware listener cap proof (:mod:`.listener`);
* ``reap leaked-runners [--apply]``: provably leaked idle EphemeralRunners (:mod:`.reaper`);
* ``cleanup runner-pods [--apply]``: the runner cleanup policy (:mod:`.cleanup`);
* ``warm-pool reconcile [--apply]``: scheduled minRunners (:mod:`.warmpool`).

The decisions are pure functions over Kubernetes-shaped dicts and an injected
clock; :mod:`.kube` is the one place that talks to a cluster.
"""
