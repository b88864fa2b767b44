"""The exact, crash-safe tree copy behind ``seed-nix``.

One pass over the source with directory file descriptors: every operation on
the target is relative to an already-open target directory and never follows
a symlink, so nothing is written outside the target even when it holds
hostile links.  A fresh name is written in place and gets the source's mtime
last; an existing name is replaced through a temporary name and a rename, so
a re-run after SIGKILL of a run of the same source, begun on an empty target,
only compares metadata (``trust_meta``); any other existing name is compared
byte for byte, xattrs included.  Directories are created
writable, filled, then given their final mode and mtime.

Hardlink groups are kept by source inode.  ``auto-optimise-store`` links every
store file into ``store/.links``, so in a real image nearly every file has two
names and this is the main path, not an edge case.  That farm is copied first
(every name in it is its inode's first copy) and then is the registry: any
other name of a farm inode is one ``link()`` from ``.links/<name>``, found
through a compact index.  Groups the farm does not cover go to a registry in
memory (one job) or in the target (several); see ``links.py``.

Several jobs are forked worker processes sharing the entries of the store
directory (one unit per store path, the farm in slices before them); see
``workers.py``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from array import array
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from flywheel_runtime.nixseed.links import (
    FARM_NAME,
    O_DIR,
    STAGING_NAME,
    FarmIndex,
    FarmLinks,
    Key,
    MemoryLinks,
    StagedLinks,
    rmtree_at,
)

TMP_PREFIX = ".flywheel-tmp-"
SMALL = 1 << 16  # files up to this size are copied with one read and one write
# O_NONBLOCK: a FIFO swapped in where a regular file was listed never blocks the copy.
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FICLONE = 0x40049409  # _IOW(0x94, 9, int)
SKIP_XATTRS = frozenset({"security.selinux"})  # the target's own LSM label, set by its policy, not copied
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)


def _xattrs(where: int | str) -> list[tuple[str, bytes]]:
    """The extended attributes of ``where`` (an open fd, or a path not followed), sorted
    (empty where unsupported)."""
    kw = {} if isinstance(where, int) else {"follow_symlinks": False}  # an fd takes no follow_symlinks
    try:
        names = os.listxattr(where, **kw)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return []
        raise
    if not names:
        return []
    return sorted((n, os.getxattr(where, n, **kw)) for n in names if n not in SKIP_XATTRS)


def fd_xattrs(fd: int) -> list[tuple[str, bytes]]:
    """The extended attributes of an open file or directory, sorted (empty where unsupported)."""
    return _xattrs(fd)


def _at(dir_fd: int, name: str) -> str:
    # The xattr calls take no dir_fd: name the entry through the open directory
    # (the final component is not followed with follow_symlinks=False).
    return f"/proc/self/fd/{dir_fd}/{name}"


def entry_xattrs(dir_fd: int, name: str) -> list[tuple[str, bytes]]:
    """The extended attributes of a symlink or special file, not followed, sorted."""
    return _xattrs(_at(dir_fd, name))


def _set_xattrs(where: int | str, want: list[tuple[str, bytes]], have: list[tuple[str, bytes]]) -> None:
    """Make the xattrs of ``where`` (an fd, or a path not followed) exactly ``want``."""
    if want == have:
        return
    follow = isinstance(where, int)
    keep = dict(want)
    for n, _v in have:
        if n not in keep:
            os.removexattr(where, n, follow_symlinks=follow)
    old = dict(have)
    for n, v in want:
        if old.get(n) != v:
            os.setxattr(where, n, v, follow_symlinks=follow)


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


@dataclass
class _Farm:
    """A link farm directory being copied: source and target fds and its names by inode.
    Entries are looked up one by one (lstat) rather than held as listings, so
    memory stays at the index's few bytes per name however large the store."""

    sfd: int
    dfd: int
    rel: str
    st: os.stat_result
    index: FarmIndex
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


class Copier:
    """Copy a source directory tree onto a target directory, exactly."""

    def __init__(self, stats: Stats, *, root_fd: int, keep_top: frozenset[str] = frozenset(),
                 trust_meta: bool = False, jobs: int = 1, fanout: str | None = None,
                 tick: Callable[[], None] | None = None, pool: Callable[..., Any] | None = None) -> None:
        self.stats = stats
        # The worker pool a fan-out runs on (nixseed.workers.Workers), injected by
        # the caller: workers drive copiers, so this module does not import them.
        self.pool = pool
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
        self.links: MemoryLinks | StagedLinks | FarmLinks = (
            StagedLinks(root_fd) if jobs > 1 else MemoryLinks(root_fd))
        self._farm_pass = False  # copying a link farm's own names: each is its inode's first copy
        self._grouped_seen = False  # a name with st_nlink > 1 was copied (before any farm)
        self._workers: Any = None  # the Workers of a fan-out in progress
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

    def _join_group(self, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
                    stale_tmp: bool) -> tuple[Key | None, bool]:
        """The hardlink key of a file or symlink (None when it has one name, or is
        a farm name being copied), and whether ``name`` was linked to its group."""
        if st.st_nlink == 1 or self._farm_pass:
            return None, False
        key = (st.st_dev, st.st_ino)
        self._grouped_seen = True
        return key, self._linked(ddir, name, key, dst, stale_tmp)

    def _keep(self, key: Key | None, ddir: int, name: str, rel: str, dst: os.stat_result,
              stale_tmp: bool) -> None:
        """``name`` in the target is already exact: keep it, as its group's first
        copy when it has a group (or link it to the first another worker registered)."""
        if key is not None and not self.links.register(key, ddir, name, f"{rel}/{name}" if rel else name):
            self._linked(ddir, name, key, dst, stale_tmp)
            return
        self.stats.skipped += 1

    def _register(self, key: Key, ddir: int, out: str, name: str, rel: str) -> bool:
        """Make our copy at ``out`` the group's first; False when another worker won."""
        if self.links.register(key, ddir, out, f"{rel}/{name}" if rel else name):
            return True
        os.unlink(out, dir_fd=ddir)  # an identical copy lost the race: use the winner's inode
        return False

    def _file(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
              rel: str, stale_tmp: bool) -> None:
        key, linked = self._join_group(ddir, name, st, dst, stale_tmp)
        if linked:
            return
        # A name only ever carries the source's mtime once content, owner and
        # mode are final (utime is the last step), so matching metadata means
        # a complete file.  A lone inode must stay lone (no stale hardlink group).
        if dst is not None and self._same_meta(st, dst) and (st.st_nlink > 1 or dst.st_nlink == 1) and (
                self.trust_meta or self._same_content(sdir, ddir, name, st.st_size)):
            self._keep(key, ddir, name, rel, dst, stale_tmp)
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
            xattrs = fd_xattrs(sfd)
            # Creation mode is final when no chown follows (chown clears set-id bits).
            dfd = os.open(out, _O_NEW, mode if owned else 0o600, dir_fd=ddir)
            try:
                self._copy_data(sfd, dfd, st.st_size)
                if not owned:
                    os.fchown(dfd, st.st_uid, st.st_gid)
                if xattrs:  # after the chown, which clears security.capability
                    _set_xattrs(dfd, xattrs, [])
                # Set-id bits: a write by a process without CAP_FSETID clears them.
                if not owned or mode & self._umask or mode & 0o6000 or xattrs:
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
    def _same_content(sdir: int, ddir: int, name: str, size: int) -> bool:
        """Same bytes and same xattrs (for a name this run cannot vouch for)."""
        a = os.open(name, _O_FILE, dir_fd=sdir)
        try:
            b = os.open(name, _O_FILE, dir_fd=ddir)
            try:
                if fd_xattrs(a) != fd_xattrs(b):
                    return False
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
        key, linked = self._join_group(ddir, name, st, dst, stale_tmp)  # Nix's optimiser links symlinks too
        if linked:
            return
        target = os.readlink(name, dir_fd=sdir)
        xattrs = entry_xattrs(sdir, name)
        if dst is not None and stat.S_ISLNK(dst.st_mode) and dst.st_uid == st.st_uid and \
                dst.st_gid == st.st_gid and dst.st_mtime_ns == st.st_mtime_ns and \
                (st.st_nlink > 1 or dst.st_nlink == 1) and os.readlink(name, dir_fd=ddir) == target and \
                (self.trust_meta or entry_xattrs(ddir, name) == xattrs):
            self._keep(key, ddir, name, rel, dst, stale_tmp)
            return
        # As for files: the source's mtime is set last, so a crash mid-way is redone.
        out = name if dst is None else TMP_PREFIX + name[:200]
        if dst is not None and stale_tmp:
            _unlink_quiet(ddir, out)
        os.symlink(target, out, dir_fd=ddir)  # kept verbatim: absolute or dangling
        if st.st_uid != self._uid or st.st_gid != self._gid:
            os.chown(out, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        if xattrs:
            _set_xattrs(_at(ddir, out), xattrs, [])
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

    def _special(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None) -> None:
        xattrs = entry_xattrs(sdir, name)
        if dst is not None and self._same_meta(st, dst) and dst.st_rdev == st.st_rdev and (
                self.trust_meta or entry_xattrs(ddir, name) == xattrs):
            self.stats.skipped += 1
            return
        if dst is not None:
            self._remove(ddir, name, dst)
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=ddir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        if xattrs:
            _set_xattrs(_at(ddir, name), xattrs, [])
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=ddir, follow_symlinks=False)  # mknod applies the umask
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
        if not isinstance(self.links, FarmLinks) and self._workers is None and not self._grouped_seen:
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
        self.finish_dir(ddir, st_src, made_by_us, sdir=sdir, fresh=fresh)
        if self.tick is not None:
            self.tick()

    def finish_dir(self, ddir: int, st_src: os.stat_result, made_by_us: bool = False, *,
                   sdir: int | None = None, fresh: bool = False) -> None:
        """Final owner, xattrs, mode and mtime: after every child, since adding one changes
        the mtime.  ``made_by_us``: created by this run inside a directory it also created
        (mode 0700, so no set-gid parent): it already has our owner and group.  ``sdir``:
        the source directory, whose xattrs the target gets (``fresh``: it has none yet)."""
        if not made_by_us or st_src.st_uid != self._uid or st_src.st_gid != self._gid:
            os.fchown(ddir, st_src.st_uid, st_src.st_gid)
        if sdir is not None:
            want = fd_xattrs(sdir)
            if want or not fresh:
                _set_xattrs(ddir, want, [] if fresh else fd_xattrs(ddir))
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
            self._special(sdir, ddir, name, st, dst)

    def _writable_dir(self, ddir: int, name: str, dst: os.stat_result | None) -> os.stat_result | None:
        """Make ``name`` a directory we can fill: replace a non-directory, create it
        (None: it is new), or open up the mode of the one there."""
        if dst is not None and not stat.S_ISDIR(dst.st_mode):
            os.unlink(name, dir_fd=ddir)  # e.g. a symlink planted where a directory belongs
            self.stats.removed += 1
            dst = None
        if dst is None:
            os.mkdir(name, 0o700, dir_fd=ddir)
        elif stat.S_IMODE(dst.st_mode) & 0o700 != 0o700:
            os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
        return dst

    def _enter(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
               path: str, in_fresh: bool) -> None:
        dst = self._writable_dir(ddir, name, dst)
        cs = os.open(name, O_DIR, dir_fd=sdir)
        try:
            cd = os.open(name, O_DIR, dir_fd=ddir)
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
        sfd = os.open(FARM_NAME, O_DIR, dir_fd=sdir)
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
            index = FarmIndex(names, inos)
            del names
            dst = self._writable_dir(ddir, FARM_NAME, dst_entries.pop(FARM_NAME, None))
            dfd = os.open(FARM_NAME, O_DIR, dir_fd=ddir)
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
        self.finish_dir(farm.dfd, farm.st, farm.made_by_us, sdir=farm.sfd, fresh=farm.fresh)
        self.stats.dirs += 1
        os.close(farm.sfd)
        self.links = FarmLinks(self.links, farm.dfd, farm.index, farm.dev)

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
            self.links = FarmLinks(self.links, os.dup(farm.dfd), farm.index, farm.dev)
        if self.pool is None:  # a bug: fanout was asked for without a pool to run it
            raise RuntimeError("Copier: a fan-out directory needs a worker pool (pool=Workers)")
        self._workers = self.pool(self, sdir, ddir, rel, units, stale_tmp, fresh, farm)
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


