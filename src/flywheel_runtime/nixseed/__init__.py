"""Seed a per-pod ``/nix`` volume from the image's baked store.

Compute-expansion lanes mount an empty claim at ``/nix``; the ``seed-nix``
init container copies the image's ``/nix`` into it before the runner starts.
:func:`seed` is exact (content, owner, mode, mtime, xattrs, device numbers,
symlinks verbatim, hardlink groups, empty and read-only directories),
crash-safe (a journal names the source a run writes from; a stamp naming the
source's identity is written last, after ``syncfs``), serialised by a lock,
and fast on a re-run (the stamp is recognised without walking the store).  It
refuses, before touching anything, a target it must not touch: an empty path,
the source or a path inside or holding it, a non-empty volume it never seeded
(unless forced with a reason), a special file where its bookkeeping belongs.
A first seed forks one worker per usable CPU over the store paths; the store's
``.links`` farm is copied first and then serves as the hardlink registry.
"""

from __future__ import annotations

from typing import Any

__all__ = ["seed", "source_identity", "read_stamp", "check_target", "SeedReport", "STAMP_NAME", "LOCK_NAME"]


def __getattr__(name: str) -> Any:  # lazy: the CLI imports this package on every start
    if name in __all__:
        from flywheel_runtime.nixseed import seeding as _seed

        return getattr(_seed, name)
    raise AttributeError(f"module 'flywheel_runtime.nixseed' has no attribute {name!r}")
