"""The exact, crash-safe tree copy behind ``seed-nix``.

One pass over the source with directory file descriptors: every operation on
the target is relative to an already-open target directory and never follows
a symlink, so nothing is written outside the target even when it holds
hostile links.  A fresh name is written in place and gets the source's mtime
last; an existing name is replaced through a temporary name and a rename, so
a re-run after SIGKILL only compares metadata.  Directories are created
writable, filled, then given their final mode and mtime.

Hardlink groups are kept by source inode.  ``auto-optimise-store`` links every
store file into ``store/.links``, so in a real image nearly every file has two
names and this is the main path, not an edge case.  That farm is copied first
(every name in it is its inode's first copy) and then is the registry: any
other name of a farm inode is one ``link()`` from ``.links/<name>``, found
through a compact index (about 80 bytes per name).  Groups the farm does not
cover are remembered in memory with one job; with several, in a staging
directory in the target, where ``link()`` either finds the first copy or
reports that nobody has made it yet, atomically, across processes.

Several jobs are forked worker processes sharing the entries of the store
directory (one unit per store path, the farm in slices before them); see
:class:`_Workers`.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import json
import os
import stat
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from flywheel_runtime.errors import FlywheelError

TMP_PREFIX = ".flywheel-tmp-"
FARM_NAME = ".links"  # Nix's optimiser: one name per store inode, under the store
STAGING_NAME = ".flywheel-seed.links"  # shared hardlink groups while workers run
SMALL = 1 << 16  # files up to this size are copied with one read and one write
FANOUT_MIN_ENTRIES = 16  # a directory this wide is worth splitting across workers
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PR_SET_PDEATHSIG = 1
_FICLONE = 0x40049409  # _IOW(0x94, 9, int)

Key = tuple[int, int]  # source (st_dev, st_ino)


@dataclass
class Stats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    skipped: int = 0  # already exact in the target
    removed: int = 0  # stale entries dropped from the target

    def add(self, other: Stats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class _MemoryLinks:
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


class _StagedLinks:
    """Hardlink groups shared by worker processes: one name per source inode in
    a staging directory of the target.  ``link()`` from it succeeds, or fails
    with ENOENT when no worker has copied that inode yet; registering is a
    ``link()`` to it that fails with EEXIST when another worker won the race."""

    def __init__(self, root_fd: int) -> None:
        try:
            os.mkdir(STAGING_NAME, 0o700, dir_fd=root_fd)
        except FileExistsError:
            pass
        self.fd = os.open(STAGING_NAME, _O_DIR, dir_fd=root_fd)

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

    def sweep(self, index: int, jobs: int) -> None:
        """Drop this worker's share of the staging names (by inode, so shares never overlap)."""
        with os.scandir(self.fd) as it:
            for e in it:
                if int(e.name.rsplit("-", 1)[1], 16) % jobs == index:
                    os.unlink(e.name, dir_fd=self.fd)

    def close(self) -> None:
        os.close(self.fd)


class _FarmIndex:
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


class _FarmLinks:
    """Hardlink groups through the store's link farm (``store/.links``): the
    optimiser gives every store inode exactly one name there, so once the farm
    is copied, any other name of such an inode is a ``link()`` from
    ``.links/<name>``: no registration, no staging, nothing shared to race on.
    Inodes without a farm name fall through to ``inner``."""

    def __init__(self, inner: _MemoryLinks | _StagedLinks, farm_fd: int, index: _FarmIndex, dev: int) -> None:
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


@dataclass
class _Farm:
    """A link farm directory being copied: source and target fds and its names by inode.
    Entries are looked up one by one (lstat) rather than held as listings, so
    memory stays at the index's few bytes per name however large the store."""

    sfd: int
    dfd: int
    rel: str
    st: os.stat_result
    index: _FarmIndex
    dev: int
    fresh: bool
    made_by_us: bool
    stale_tmp: bool

    def copy_slice(self, copier: Copier, lo: int, hi: int) -> None:
        copier._farm_pass = True
        try:
            for i in range(lo, hi):
                name = self.index.name(i)
                st = os.stat(name, dir_fd=self.sfd, follow_symlinks=False)
                self.index.inos[i] = st.st_ino if st.st_dev == self.dev else 0
                dst = None
                if not self.fresh:
                    try:
                        dst = os.stat(name, dir_fd=self.dfd, follow_symlinks=False)
                    except FileNotFoundError:
                        pass
                copier.copy_entry(self.sfd, self.dfd, self.rel, name, st, dst, self.stale_tmp, self.fresh)
        finally:
            copier._farm_pass = False

    def seal(self, copier: Copier) -> None:
        """Index the copied farm; names that turn out to share an inode (not what
        the optimiser makes, but possible) were copied apart: link them together."""
        for group in self.index.seal():
            first = self.index.name(group[0])
            want = os.stat(first, dir_fd=self.dfd, follow_symlinks=False).st_ino
            for i in group[1:]:
                name = self.index.name(i)
                if os.stat(name, dir_fd=self.dfd, follow_symlinks=False).st_ino == want:
                    continue
                tmp = TMP_PREFIX + name[:200]
                _unlink_quiet(self.dfd, tmp)
                os.link(first, tmp, src_dir_fd=self.dfd, dst_dir_fd=self.dfd, follow_symlinks=False)
                os.rename(tmp, name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
                copier.stats.files -= 1
                copier.stats.hardlinks += 1


def remove_staging(root_fd: int) -> None:
    """Remove a staging directory a killed run left behind (its names are only extra links)."""
    try:
        os.lstat(STAGING_NAME, dir_fd=root_fd)
    except FileNotFoundError:
        return
    rmtree_at(root_fd, STAGING_NAME)


def rmtree_at(ddir: int, name: str) -> None:
    """Remove directory ``name`` under ``ddir`` and everything in it, following no symlink."""
    os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
    fd = os.open(name, _O_DIR, dir_fd=ddir)
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


class Copier:
    """Copy a source directory tree onto a target directory, exactly."""

    def __init__(self, stats: Stats, *, root_fd: int, keep_top: frozenset[str] = frozenset(),
                 trust_meta: bool = False, jobs: int = 1, fanout: str | None = None,
                 tick: Callable[[], None] | None = None) -> None:
        self.stats = stats
        # True only when the target was last written by an interrupted seed of this
        # same source: then equal metadata means an equal file (mtime is set last).
        # Otherwise (another image, unknown content) equal metadata is confirmed by
        # comparing bytes: two images can share size, mode and mtime 1 and differ.
        self.trust_meta = trust_meta
        self.keep_top = keep_top | {STAGING_NAME}  # target-top-level names we own (stamp, lock)
        self.root_fd = root_fd
        self.jobs = jobs
        self.fanout = fanout  # relative path of the directory whose entries workers share
        self.tick = tick  # called every few hundred entries (progress)
        self.flush: Callable[[], None] | None = None  # called by the idle parent while workers copy
        self.links: _MemoryLinks | _StagedLinks | _FarmLinks = (
            _StagedLinks(root_fd) if jobs > 1 else _MemoryLinks(root_fd))
        self._farm_pass = False  # copying a link farm's own names: each is its inode's first copy
        self._grouped_seen = False  # a name with st_nlink > 1 was copied (before any farm)
        self._workers: _Workers | None = None
        self._method = "ficlone"
        self._used: str | None = None
        self._uid, self._gid = os.geteuid(), os.getegid()
        self._umask = os.umask(0o022)
        os.umask(self._umask)
        self._countdown = 256

    @property
    def method(self) -> str:
        """How large files were copied: ficlone, copy_file_range or sendfile
        ("write" when every file was small enough for one read and one write)."""
        return self._used or "write"

    def snapshot(self) -> Stats:
        """Counts so far, workers included (for progress lines)."""
        if self._workers is None:
            return self.stats
        out = Stats()
        out.add(self.stats)
        out.add(self._workers.live())
        return out

    def close(self) -> None:
        """Release the staging directory's fd (the caller removes the directory)."""
        self.links.close()

    # -- content -----------------------------------------------------------

    def _copy_data(self, sfd: int, dfd: int, size: int) -> None:
        # Methods in order of preference, each dropped for the rest of the run on
        # its first refusal: a reflink shares the extents (same XFS/btrfs, also
        # through overlayfs); copy_file_range copies in the kernel (same fs);
        # sendfile works across filesystems (overlay or tmpfs to ext4: EXDEV above).
        if size <= SMALL:
            data = os.read(sfd, size + 1)
            n = os.write(dfd, data)
            if n < len(data):  # short writes happen only near ENOSPC or on signals
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(dfd, view):]
            return
        if self._method == "ficlone":
            try:
                fcntl.ioctl(dfd, _FICLONE, sfd)
                self._used = self._used or "ficlone"
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS,
                                     errno.EBADF, errno.EPERM):
                    raise
                self._method = "copy_file_range"
        left = size
        if self._method == "copy_file_range":
            try:
                while left > 0:
                    n = os.copy_file_range(sfd, dfd, left)
                    if n == 0:
                        break
                    left -= n
                self._used = _weaker(self._used, "copy_file_range")
                return
            except OSError as exc:
                # EXDEV from overlay/tmpfs to ext4 (the real image-to-volume case).
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or left != size:
                    raise
                self._method = "sendfile"
        offset = 0
        while offset < size:
            n = os.sendfile(dfd, sfd, offset, size - offset)
            if n == 0:
                break
            offset += n
        self._used = _weaker(self._used, "sendfile")

    # -- entries -----------------------------------------------------------

    @staticmethod
    def _same_meta(a: os.stat_result, b: os.stat_result) -> bool:
        return (stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode) and a.st_size == b.st_size
                and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode) and a.st_uid == b.st_uid
                and a.st_gid == b.st_gid and a.st_mtime_ns == b.st_mtime_ns)

    def _linked(self, ddir: int, name: str, key: Key, dst: os.stat_result | None, stale_tmp: bool) -> bool:
        """Give ``name`` the inode already copied for ``key``, if there is one."""
        if dst is None:
            if not self.links.link(key, ddir, name):
                return False
            self.stats.hardlinks += 1
            return True
        first = self.links.lookup(key)
        if first is None:
            return False
        if (dst.st_dev, dst.st_ino) == first:
            self.stats.skipped += 1
            return True
        tmp = TMP_PREFIX + name[:200]
        if stale_tmp:
            _unlink_quiet(ddir, tmp)
        if not self.links.link(key, ddir, tmp):  # pragma: no cover - a group is never unregistered mid-run
            return False
        if stat.S_ISDIR(dst.st_mode):
            rmtree_at(ddir, name)
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
        self.stats.hardlinks += 1
        return True

    def _register(self, key: Key, ddir: int, out: str, name: str, rel: str) -> bool:
        """Make our copy at ``out`` the group's first; False when another worker won."""
        if self.links.register(key, ddir, out, f"{rel}/{name}" if rel else name):
            return True
        os.unlink(out, dir_fd=ddir)  # an identical copy lost the race: use the winner's inode
        return False

    def _file(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
              rel: str, stale_tmp: bool) -> None:
        key = (st.st_dev, st.st_ino) if st.st_nlink > 1 and not self._farm_pass else None
        if key is not None:
            self._grouped_seen = True
            if self._linked(ddir, name, key, dst, stale_tmp):
                return
        # A name only ever carries the source's mtime once content, owner and
        # mode are final (utime is the last step), so matching metadata means
        # a complete file.  A lone inode must stay lone (no stale hardlink group).
        if dst is not None and self._same_meta(st, dst) and (st.st_nlink > 1 or dst.st_nlink == 1) and (
                self.trust_meta or self._same_bytes(sdir, ddir, name, st.st_size)):
            if key is not None and not self.links.register(key, ddir, name, f"{rel}/{name}" if rel else name):
                self._linked(ddir, name, key, dst, stale_tmp)
                return
            self.stats.skipped += 1
            return
        mode = stat.S_IMODE(st.st_mode)
        owned = st.st_uid == self._uid and st.st_gid == self._gid
        # Fresh name: write in place (a crash leaves a wrong mtime, so it is redone).
        # Existing name: stage and rename, so a runner never sees it half written.
        out = name if dst is None else TMP_PREFIX + name[:200]
        if dst is not None and stale_tmp:
            _unlink_quiet(ddir, out)
        sfd = os.open(name, _O_FILE, dir_fd=sdir)
        try:
            # Creation mode is final when no chown follows (chown clears set-id bits).
            dfd = os.open(out, _O_NEW, mode if owned else 0o600, dir_fd=ddir)
            try:
                self._copy_data(sfd, dfd, st.st_size)
                if not owned:
                    os.fchown(dfd, st.st_uid, st.st_gid)
                # Set-id bits: a write by a process without CAP_FSETID clears them.
                if not owned or mode & self._umask or mode & 0o6000:
                    os.fchmod(dfd, mode)
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        if key is not None and not self._register(key, ddir, out, name, rel):
            self._linked(ddir, name, key, dst, stale_tmp)
            return
        if dst is not None:
            if stat.S_ISDIR(dst.st_mode):
                rmtree_at(ddir, name)
            os.rename(out, name, src_dir_fd=ddir, dst_dir_fd=ddir)
        s = self.stats
        s.files += 1
        s.bytes += st.st_size

    @staticmethod
    def _same_bytes(sdir: int, ddir: int, name: str, size: int) -> bool:
        a = os.open(name, _O_FILE, dir_fd=sdir)
        try:
            b = os.open(name, _O_FILE, dir_fd=ddir)
            try:
                left = size
                while left > 0:
                    n = min(left, 1 << 20)
                    x, y = os.read(a, n), os.read(b, n)
                    if x != y or not x:
                        return False
                    left -= len(x)
                return os.read(b, 1) == b""
            finally:
                os.close(b)
        finally:
            os.close(a)

    def _symlink(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
                 rel: str, stale_tmp: bool) -> None:
        # Nix's optimiser links symlinks too.
        key = (st.st_dev, st.st_ino) if st.st_nlink > 1 and not self._farm_pass else None
        if key is not None:
            self._grouped_seen = True
            if self._linked(ddir, name, key, dst, stale_tmp):
                return
        target = os.readlink(name, dir_fd=sdir)
        if dst is not None and stat.S_ISLNK(dst.st_mode) and dst.st_uid == st.st_uid and \
                dst.st_gid == st.st_gid and dst.st_mtime_ns == st.st_mtime_ns and \
                (st.st_nlink > 1 or dst.st_nlink == 1) and os.readlink(name, dir_fd=ddir) == target:
            if key is not None and not self.links.register(key, ddir, name, f"{rel}/{name}" if rel else name):
                self._linked(ddir, name, key, dst, stale_tmp)
                return
            self.stats.skipped += 1
            return
        # As for files: the source's mtime is set last, so a crash mid-way is redone.
        out = name if dst is None else TMP_PREFIX + name[:200]
        if dst is not None and stale_tmp:
            _unlink_quiet(ddir, out)
        os.symlink(target, out, dir_fd=ddir)  # kept verbatim: absolute or dangling
        if st.st_uid != self._uid or st.st_gid != self._gid:
            os.chown(out, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        if key is not None:
            if not self._register(key, ddir, out, name, rel):
                self._linked(ddir, name, key, dst, stale_tmp)
                return
        if dst is not None:
            if stat.S_ISDIR(dst.st_mode):
                rmtree_at(ddir, name)
            os.rename(out, name, src_dir_fd=ddir, dst_dir_fd=ddir)
        self.stats.symlinks += 1

    def _special(self, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None) -> None:
        if dst is not None and self._same_meta(st, dst) and dst.st_rdev == st.st_rdev:
            self.stats.skipped += 1
            return
        if dst is not None:
            self._remove(ddir, name, dst)
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=ddir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        self.stats.files += 1

    # -- removal -----------------------------------------------------------

    def _remove(self, ddir: int, name: str, st: os.stat_result) -> None:
        try:
            if stat.S_ISDIR(st.st_mode):
                rmtree_at(ddir, name)
            else:
                os.unlink(name, dir_fd=ddir)
        except FileNotFoundError:
            return  # a crash's temp name, already reused and renamed in this pass
        self.stats.removed += 1

    # -- directories -------------------------------------------------------

    def copy_dir(self, sdir: int, ddir: int, rel: str, st_src: os.stat_result, top: bool = False,
                 fresh: bool = False, made_by_us: bool = False) -> None:
        """Make directory ``ddir`` an exact copy of ``sdir`` (both open fds).
        ``fresh``: ``ddir`` was just created, so it is known to be empty."""
        dst_entries: dict[str, os.stat_result] = {}
        if not fresh:
            with os.scandir(ddir) as it:
                for e in it:
                    dst_entries[e.name] = e.stat(follow_symlinks=False)
        with os.scandir(sdir) as it:
            src_entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        # Temp names only exist when a crash left them: skip the unlink otherwise.
        stale_tmp = any(n.startswith(TMP_PREFIX) for n in dst_entries)
        farm = None
        # A farm can only be the registry if no other name of its inodes was copied before it.
        if not isinstance(self.links, _FarmLinks) and self._workers is None and not self._grouped_seen:
            farm = self._open_farm(sdir, ddir, rel, src_entries, dst_entries, fresh,
                                   workers=rel == self.fanout and self.jobs > 1)
        if rel == self.fanout and self.jobs > 1 and self._workers is None:
            self._fan_out(sdir, ddir, rel, src_entries, dst_entries, stale_tmp, top, fresh, farm)
        else:
            if farm is not None:
                farm.copy_slice(self, 0, len(farm.index))
                farm.seal(self)
                self._close_farm(farm)
            for name, st in src_entries:
                self.copy_entry(sdir, ddir, rel, name, st, dst_entries.pop(name, None), stale_tmp, fresh)
            for name, st in dst_entries.items():
                if not (top and name in self.keep_top):
                    self._remove(ddir, name, st)  # stale path, or a crash's temp file
        self.finish_dir(ddir, st_src, made_by_us)
        if self.tick is not None:
            self.tick()

    def finish_dir(self, ddir: int, st_src: os.stat_result, made_by_us: bool = False) -> None:
        """Final owner, mode and mtime: after every child, since adding one changes the mtime.
        ``made_by_us``: created by this run inside a directory it also created (mode 0700,
        so no set-gid parent): it already has our owner and group."""
        if not made_by_us or st_src.st_uid != self._uid or st_src.st_gid != self._gid:
            os.fchown(ddir, st_src.st_uid, st_src.st_gid)
        os.fchmod(ddir, stat.S_IMODE(st_src.st_mode))
        os.utime(ddir, ns=(st_src.st_atime_ns, st_src.st_mtime_ns))

    def copy_entry(self, sdir: int, ddir: int, rel: str, name: str, st: os.stat_result,
                   dst: os.stat_result | None, stale_tmp: bool, in_fresh: bool = False) -> None:
        """Copy one directory entry (recursively for a directory)."""
        self._countdown -= 1
        if self._countdown <= 0 and self.tick is not None:
            self._countdown = 256
            self.tick()
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._enter(sdir, ddir, name, st, dst, f"{rel}/{name}" if rel else name, in_fresh)
            return
        if dst is not None and stat.S_ISDIR(dst.st_mode):
            rmtree_at(ddir, name)
            self.stats.removed += 1
            dst = None
        if stat.S_ISREG(mode):
            self._file(sdir, ddir, name, st, dst, rel, stale_tmp)
        elif stat.S_ISLNK(mode):
            self._symlink(sdir, ddir, name, st, dst, rel, stale_tmp)
        else:
            self._special(ddir, name, st, dst)

    def _enter(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
               path: str, in_fresh: bool) -> None:
        if dst is not None and not stat.S_ISDIR(dst.st_mode):
            os.unlink(name, dir_fd=ddir)  # e.g. a symlink planted where a directory belongs
            self.stats.removed += 1
            dst = None
        if dst is None:
            os.mkdir(name, 0o700, dir_fd=ddir)
        elif stat.S_IMODE(dst.st_mode) & 0o700 != 0o700:
            os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
        cs = os.open(name, _O_DIR, dir_fd=sdir)
        try:
            cd = os.open(name, _O_DIR, dir_fd=ddir)
            try:
                self.copy_dir(cs, cd, path, st, fresh=dst is None, made_by_us=dst is None and in_fresh)
            finally:
                os.close(cd)
        finally:
            os.close(cs)
        self.stats.dirs += 1

    # -- the store's link farm -------------------------------------------

    def _open_farm(self, sdir: int, ddir: int, rel: str, src_entries: list[tuple[str, os.stat_result]],
                   dst_entries: dict[str, os.stat_result], fresh: bool, workers: bool) -> _Farm | None:
        """When this directory holds a link farm whose names are one per inode,
        prepare it to be copied first; it then serves as the hardlink registry.
        Its entry leaves ``src_entries`` / ``dst_entries``."""
        st = next((e for n, e in src_entries if n == FARM_NAME), None)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return None
        sfd = os.open(FARM_NAME, _O_DIR, dir_fd=sdir)
        try:
            names = []
            with os.scandir(sfd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):  # only a flat farm; anything else is copied as it is
                        os.close(sfd)
                        return None
                    names.append(e.name)
            if workers:
                import multiprocessing

                inos: Any = multiprocessing.get_context("fork").RawArray("Q", len(names))
            else:
                inos = array("Q", bytes(8 * len(names)))
            index = _FarmIndex(names, inos)
            del names
            dst = dst_entries.pop(FARM_NAME, None)
            if dst is not None and not stat.S_ISDIR(dst.st_mode):
                os.unlink(FARM_NAME, dir_fd=ddir)
                self.stats.removed += 1
                dst = None
            if dst is None:
                os.mkdir(FARM_NAME, 0o700, dir_fd=ddir)
            elif stat.S_IMODE(dst.st_mode) & 0o700 != 0o700:
                os.chmod(FARM_NAME, 0o700, dir_fd=ddir, follow_symlinks=False)
            dfd = os.open(FARM_NAME, _O_DIR, dir_fd=ddir)
        except BaseException:
            os.close(sfd)
            raise
        src_entries[:] = [(n, e) for n, e in src_entries if n != FARM_NAME]
        stale_tmp = False
        if dst is not None:
            with os.scandir(dfd) as it:
                stale_tmp = any(e.name.startswith(TMP_PREFIX) for e in it)
        return _Farm(sfd, dfd, f"{rel}/{FARM_NAME}" if rel else FARM_NAME, st, index, st.st_dev,
                     fresh=dst is None, made_by_us=dst is None and fresh, stale_tmp=stale_tmp)

    def _close_farm(self, farm: _Farm) -> None:
        """After every farm name is copied: drop stale ones, finish the directory,
        and make the farm the registry for the rest of the copy."""
        if not farm.fresh:  # names the source's farm lacks (one lstat each: no listing held)
            with os.scandir(farm.dfd) as it:
                for e in it:
                    try:
                        os.stat(e.name, dir_fd=farm.sfd, follow_symlinks=False)
                    except FileNotFoundError:
                        self._remove(farm.dfd, e.name, e.stat(follow_symlinks=False))
        self.finish_dir(farm.dfd, farm.st, farm.made_by_us)
        self.stats.dirs += 1
        os.close(farm.sfd)
        self.links = _FarmLinks(self.links, farm.dfd, farm.index, farm.dev)

    # -- workers -----------------------------------------------------------

    def _fan_out(self, sdir: int, ddir: int, rel: str, src_entries: list[tuple[str, os.stat_result]],
                 dst_entries: dict[str, os.stat_result], stale_tmp: bool, top: bool, fresh: bool,
                 farm: _Farm | None) -> None:
        # Widest directories first (size grows with entries on ext4, tmpfs and
        # overlay), so the long ones start early and the tail is short.
        src_entries.sort(key=lambda e: -e[1].st_size if stat.S_ISDIR(e[1].st_mode) else 0)
        names = {n for n, _ in src_entries}
        stale = [(n, st) for n, st in dst_entries.items() if n not in names and not (top and n in self.keep_top)]
        units: list[tuple[str, os.stat_result, os.stat_result | None, bool]] = [
            (n, st, dst_entries.get(n), False) for n, st in src_entries] + [(n, st, st, True) for n, st in stale]
        registry = self.links
        if farm is not None:  # workers copy the farm first, then link every other name from it
            self.links = _FarmLinks(self.links, os.dup(farm.dfd), farm.index, farm.dev)
        self._workers = _Workers(self, sdir, ddir, rel, units, stale_tmp, fresh, farm)
        try:
            done = self._workers.run()
        finally:
            self._workers = None
            if farm is not None:
                os.close(self.links.fd)  # type: ignore[union-attr]
                self.links = registry
        self.stats.add(done)
        if farm is not None:
            farm.index.seal()  # the parent's own lookups after the fan-out (the repair is done)
            self._close_farm(farm)


_METHODS = ("ficlone", "copy_file_range", "sendfile")


def _weaker(a: str | None, b: str | None) -> str | None:
    """The later of two copy methods in the fallback chain (what the run could rely on)."""
    if a is None or b is None:
        return a or b
    return a if _METHODS.index(a) >= _METHODS.index(b) else b


def _unlink_quiet(ddir: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=ddir)
    except FileNotFoundError:
        pass


class WorkerError(FlywheelError):
    """A worker process failed with something other than an OSError."""


class _Workers:
    """``jobs`` forked processes sharing the entries of one directory.

    Each takes the next unit from a shared counter (an entry: a whole store
    path), so a long one never holds the others up.  The parent only waits,
    reports progress, and merges counts.  A worker dies with its parent
    (PR_SET_PDEATHSIG): a SIGKILLed seeder leaves no orphan writing on.  They
    also inherit the lock's open file, so a re-run cannot start before they end.
    """

    _FIELDS = [f.name for f in fields(Stats)]

    def __init__(self, copier: Copier, sdir: int, ddir: int, rel: str,
                 units: list[tuple[str, os.stat_result, os.stat_result | None, bool]], stale_tmp: bool,
                 fresh: bool, farm: _Farm | None = None) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.copier, self.sdir, self.ddir, self.rel = copier, sdir, ddir, rel
        self.units, self.stale_tmp, self.fresh = units, stale_tmp, fresh
        # The farm goes first, in slices; the other units wait until every slice is done.
        self.farm = farm
        n = len(farm.index) if farm is not None else 0
        per = max(64, -(-n // (copier.jobs * 16))) if n else 1
        self.slices = [(lo, min(lo + per, n)) for lo in range(0, n, per)]
        self.slices_done = ctx.RawValue("q", 0)
        self.farm_ready = ctx.RawValue("i", 0)
        self.jobs = copier.jobs
        self.next = ctx.RawValue("q", 0)
        self.lock = ctx.Lock()
        self.failed = ctx.RawValue("i", 0)
        self.barrier = ctx.Barrier(self.jobs)
        self.counts = ctx.RawArray("q", len(self._FIELDS) * self.jobs)

    def live(self) -> Stats:
        out = Stats()
        n = len(self._FIELDS)
        for i, f in enumerate(self._FIELDS):
            setattr(out, f, sum(self.counts[w * n + i] for w in range(self.jobs)))
        return out

    def _collect(self, procs: dict[int, tuple[int, int]]) -> dict[int, bytearray]:
        import selectors

        sel = selectors.DefaultSelector()
        buffers: dict[int, bytearray] = {}
        for pid, (_i, r) in procs.items():
            sel.register(r, selectors.EVENT_READ, pid)
            buffers[pid] = bytearray()
        open_ends = len(procs)
        try:
            while open_ends:
                for key, _ev in sel.select(timeout=0.25):
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        buffers[key.data] += chunk
                    else:
                        sel.unregister(key.fd)
                        open_ends -= 1
                if self.copier.tick is not None:
                    self.copier.tick()
                if self.copier.flush is not None:
                    # Idle here anyway: write back what the workers wrote so far, so the
                    # final sync has little left and the disk works while they copy.
                    self.copier.flush()
        finally:
            sel.close()
        for _i, r in procs.values():
            os.close(r)
        return buffers

    def run(self) -> Stats:
        parent = os.getpid()
        procs: dict[int, tuple[int, int]] = {}  # pid -> (worker index, read end)
        try:
            for index in range(self.jobs):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - measured in the child, reported through the pipe
                    os.close(r)
                    self._child(index, w, parent)
                os.close(w)
                procs[pid] = (index, r)
            # Wait for the results, ticking progress meanwhile.
            buffers = self._collect(procs)
        except BaseException:
            # Whatever stops the parent (a failed flush, ^C) stops the workers too:
            # an in-process caller must not go on while they still write.
            self.failed.value = 1
            self.barrier.abort()
            for pid, (_i, r) in procs.items():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                try:
                    os.close(r)
                except OSError:
                    pass
            raise
        total, first_error = Stats(), None
        for pid, (index, _r) in procs.items():
            _p, status = os.waitpid(pid, 0)
            try:
                msg = json.loads(bytes(buffers[pid]) or b"{}")
            except ValueError:
                msg = {}
            if "stats" in msg:
                total.add(Stats(**msg["stats"]))
                used = msg.get("method")
                self.copier._used = _weaker(self.copier._used, used if used != "write" else None)
                continue
            if first_error is None or (first_error.get("kind") == "peer" and msg.get("kind") != "peer"):
                first_error = msg or {"kind": "died", "status": status, "index": index}
        if first_error is not None:
            if first_error.get("kind") == "os":
                raise OSError(first_error["errno"], first_error["strerror"], first_error.get("filename"))
            raise WorkerError(first_error.get("message") or f"seed worker ended without a report ({first_error})")
        return total

    def _child(self, index: int, w: int, parent: int) -> None:  # pragma: no cover - runs in a fork
        code = 1
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            msg = self._work(index)
            code = 0
        except OSError as exc:
            msg = {"kind": "os", "errno": exc.errno, "strerror": exc.strerror,
                   "filename": exc.filename if isinstance(exc.filename, str) else None}
        except _PeerFailed:
            msg = {"kind": "peer"}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            msg = {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}
        if code:
            self.failed.value = 1
            self.barrier.abort()
        try:
            data = json.dumps(msg).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(code)

    def _work(self, index: int) -> dict[str, Any]:  # pragma: no cover - runs in a fork
        import threading

        c = self.copier
        c.stats = Stats()
        c.tick = None
        n = len(self._FIELDS)
        base = index * n
        sealed = False  # this process's view of the farm index is sorted
        while True:
            if self.failed.value:
                raise _PeerFailed()
            with self.lock:
                i = self.next.value
                self.next.value = i + 1
            nslices = len(self.slices)
            if i >= len(self.units) + nslices:
                break
            if i < nslices:
                self._farm_slice(*self.slices[i])
                with self.lock:
                    self.slices_done.value += 1
                    last = self.slices_done.value == nslices
                if last:  # every farm name is copied: index it, mend shared inodes, let linking start
                    assert self.farm is not None
                    self.farm.seal(c)
                    self.farm_ready.value = 1
                    sealed = True
            else:
                while nslices and not self.farm_ready.value:  # the farm must be complete to link from it
                    if self.failed.value:
                        raise _PeerFailed()
                    time.sleep(0.001)
                if nslices and not sealed:
                    assert self.farm is not None
                    self.farm.index.seal()
                    sealed = True
                name, st, dst, stale = self.units[i - nslices]
                if stale:
                    c._remove(self.ddir, name, st)
                else:
                    c.copy_entry(self.sdir, self.ddir, self.rel, name, st, dst, self.stale_tmp, self.fresh)
            s = c.stats
            for k, f in enumerate(self._FIELDS):
                self.counts[base + k] = getattr(s, f)
        try:
            self.barrier.wait()  # every worker is done linking from the staging names
        except threading.BrokenBarrierError:
            raise _PeerFailed() from None
        if isinstance(c.links, _StagedLinks):
            c.links.sweep(index, self.jobs)
        return {"stats": asdict(c.stats), "method": c.method}


    def _farm_slice(self, lo: int, hi: int) -> None:  # pragma: no cover - runs in a fork
        assert self.farm is not None
        self.farm.copy_slice(self.copier, lo, hi)


class _PeerFailed(Exception):
    """Another worker failed; this one stopped early."""
