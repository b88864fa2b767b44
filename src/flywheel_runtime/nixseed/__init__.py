"""Seed a per-pod ``/nix`` volume from the image's baked store.

Compute-expansion lanes mount an empty claim at ``/nix``; the ``seed-nix``
init container copies the image's ``/nix`` into it before the runner starts.
:func:`seed` is exact (content, owner, mode, mtime, symlinks verbatim,
hardlink groups, empty and read-only directories), crash-safe (a stamp naming
the source's identity is written last, after ``syncfs``), serialised by a
lock, and fast on a re-run (the stamp is recognised without walking).
"""

from __future__ import annotations

from flywheel_runtime.nixseed.seed import LOCK_NAME, STAMP_NAME, SeedReport, read_stamp, seed, source_identity

__all__ = ["seed", "source_identity", "read_stamp", "SeedReport", "STAMP_NAME", "LOCK_NAME"]
