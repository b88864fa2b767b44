"""Hardlink groups: where the first copy of each source inode can be found.

Three registries, one interface (``lookup``, ``link``, ``register``, ``close``):

- :class:`FarmLinks`: the store's link farm (``store/.links``), copied first.
  ``auto-optimise-store`` gives every store inode exactly one name there, so any
  other name of it is one ``link()`` from the farm, found through a compact
  :class:`FarmIndex`.  Inodes it does not cover fall through to one of:
- :class:`MemoryLinks`: one process (``--jobs 1``): inode -> path of the first copy.
- :class:`StagedLinks`: worker processes: one name per inode in a staging
  directory of the target; ``link()`` from it finds the first copy or fails
  with ENOENT, registering is a ``link()`` to it that fails with EEXIST when
  another worker won, so the filesystem arbitrates races.
"""

from __future__ import annotations

import bisect
import os
import stat
from array import array
from typing import Any

FARM_NAME = ".links"  # Nix's optimiser: one name per store inode, under the store
STAGING_NAME = ".flywheel-seed.links"  # shared hardlink groups while workers run
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Key = tuple[int, int]  # source (st_dev, st_ino)


class MemoryLinks:
    """Hardlink groups of a single process: source inode -> path of its first copy."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.first: dict[Key, str] = {}

    def lookup(self, key: Key) -> tuple[int, int] | None:
        rel = self.first.get(key)
        if rel is None:
            return None
        st = os.stat(rel, dir_fd=self.root_fd, follow_symlinks=False)  # only on re-runs
        return st.st_dev, st.st_ino

    def link(self, key: Key, ddir: int, name: str) -> bool:
        rel = self.first.get(key)
        if rel is None:
            return False
        # Addressed from the target root; linkat never follows a symlink in between.
        os.link(rel, name, src_dir_fd=self.root_fd, dst_dir_fd=ddir, follow_symlinks=False)
        return True

    def register(self, key: Key, ddir: int, name: str, rel: str) -> bool:
        self.first.setdefault(key, rel)
        return True

    def close(self) -> None:
        pass


class StagedLinks:
    """Hardlink groups shared by worker processes: one name per source inode in
    a staging directory of the target.  ``link()`` from it succeeds, or fails
    with ENOENT when no worker has copied that inode yet; registering is a
    ``link()`` to it that fails with EEXIST when another worker won the race."""

    def __init__(self, root_fd: int) -> None:
        try:
            os.mkdir(STAGING_NAME, 0o700, dir_fd=root_fd)
        except FileExistsError:
            pass
        self.fd = os.open(STAGING_NAME, O_DIR, dir_fd=root_fd)

    @staticmethod
    def name(key: Key) -> str:
        return f"{key[0]:x}-{key[1]:x}"

    def lookup(self, key: Key) -> tuple[int, int] | None:
        try:
            st = os.stat(self.name(key), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def link(self, key: Key, ddir: int, name: str) -> bool:
        try:
            os.link(self.name(key), name, src_dir_fd=self.fd, dst_dir_fd=ddir, follow_symlinks=False)
        except FileNotFoundError:  # ddir is an open fd: only the staging name can be missing
            return False
        return True

    def register(self, key: Key, ddir: int, name: str, rel: str) -> bool:
        try:
            os.link(name, self.name(key), src_dir_fd=ddir, dst_dir_fd=self.fd, follow_symlinks=False)
        except FileExistsError:
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)


class FarmIndex:
    """A link farm's names by source inode, compact: about 80 bytes per name
    (names packed in one buffer, inode numbers and offsets in typed arrays,
    a permutation sorted by inode for binary search), so the registry of a
    large store costs a few MB, not a dict of Python objects.

    Names come from the listing alone; inode numbers are filled in by whoever
    copies each name (its lstat is needed for the copy anyway), into an array
    the workers share, so the parent never walks the farm before forking."""

    def __init__(self, names: list[str], inos: Any) -> None:
        self.blob = bytearray()
        self.offs = array("Q", [0])
        for n in names:
            self.blob += os.fsencode(n)
            self.offs.append(len(self.blob))
        self.inos = inos  # array("Q") or a shared RawArray("Q"), one slot per name, 0 until copied
        self.order = array("L")

    def __len__(self) -> int:
        return len(self.offs) - 1

    def name(self, i: int) -> str:
        return os.fsdecode(bytes(self.blob[self.offs[i]:self.offs[i + 1]]))

    def seal(self) -> list[list[int]]:
        """Sort for lookups (after every name's inode is in); returns the groups of
        names that share one inode (a farm should have none), first name first."""
        if not isinstance(self.inos, array):  # shared ctypes array: index a local copy (10x faster)
            local = array("Q")
            local.frombytes(memoryview(self.inos).cast("B"))
            self.inos = local
        inos = self.inos
        self.order = array("L", sorted(range(len(self)), key=inos.__getitem__))
        order, dups = self.order, []
        i = 0
        while i < len(order):
            j = i + 1
            while j < len(order) and inos[order[j]] == inos[order[i]]:
                j += 1
            if j - i > 1 and inos[order[i]]:
                dups.append(sorted(order[i:j]))
            i = j
        return dups

    def find(self, ino: int) -> str | None:
        order, inos = self.order, self.inos
        k = bisect.bisect_left(order, ino, key=inos.__getitem__)
        return self.name(order[k]) if k < len(order) and inos[order[k]] == ino else None


class FarmLinks:
    """Hardlink groups through the store's link farm (``store/.links``): the
    optimiser gives every store inode exactly one name there, so once the farm
    is copied, any other name of such an inode is a ``link()`` from
    ``.links/<name>``: no registration, no staging, nothing shared to race on.
    Inodes without a farm name fall through to ``inner``."""

    def __init__(self, inner: MemoryLinks | StagedLinks | FarmLinks, farm_fd: int, index: FarmIndex,
                 dev: int) -> None:
        self.inner, self.fd, self.index, self.dev = inner, farm_fd, index, dev

    def lookup(self, key: Key) -> tuple[int, int] | None:
        farm = self.index.find(key[1]) if key[0] == self.dev else None
        if farm is not None:
            try:
                st = os.stat(farm, dir_fd=self.fd, follow_symlinks=False)
                return st.st_dev, st.st_ino
            except FileNotFoundError:
                pass
        return self.inner.lookup(key)

    def link(self, key: Key, ddir: int, name: str) -> bool:
        farm = self.index.find(key[1]) if key[0] == self.dev else None
        if farm is not None:
            try:
                os.link(farm, name, src_dir_fd=self.fd, dst_dir_fd=ddir, follow_symlinks=False)
                return True
            except FileNotFoundError:
                pass
        return self.inner.link(key, ddir, name)

    def register(self, key: Key, ddir: int, name: str, rel: str) -> bool:
        return self.inner.register(key, ddir, name, rel)

    def close(self) -> None:
        os.close(self.fd)
        self.inner.close()


def remove_staging(root_fd: int) -> None:
    """Remove a staging directory a killed run left behind (its names are only extra links)."""
    try:
        st = os.lstat(STAGING_NAME, dir_fd=root_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        rmtree_at(root_fd, STAGING_NAME)
    else:  # not ours to keep either: whatever stands where the staging directory goes
        os.unlink(STAGING_NAME, dir_fd=root_fd)


def rmtree_at(ddir: int, name: str) -> None:
    """Remove directory ``name`` under ``ddir`` and everything in it, following no symlink."""
    os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
    fd = os.open(name, O_DIR, dir_fd=ddir)
    try:
        with os.scandir(fd) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    rmtree_at(fd, e.name)
                else:
                    os.unlink(e.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=ddir)
