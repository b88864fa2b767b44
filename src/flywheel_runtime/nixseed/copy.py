"""The exact, crash-safe tree copy behind ``seed-nix``.

One pass over the source with directory file descriptors: every operation on
the target is relative to an already-open target directory and never follows
a symlink, so nothing is written outside the target even when it holds
hostile links.  Files land under a temporary name and are renamed into place
after content, owner, mode and mtime are set: a name that exists is always a
complete file, so a re-run after SIGKILL only compares metadata.  Directories
are created writable, filled, then given their final mode and mtime.
Hardlink groups (the store's ``.links``) are kept by inode.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass

TMP_PREFIX = ".flywheel-tmp-"
SMALL = 1 << 16  # files up to this size are copied with one read and one write
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Stats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    skipped: int = 0  # already exact in the target
    removed: int = 0  # stale entries dropped from the target


class Copier:
    """Copy a source directory tree onto a target directory, exactly."""

    def __init__(self, stats: Stats, *, keep_top: frozenset[str] = frozenset(), trust_meta: bool = False) -> None:
        self.stats = stats
        # True only when the target was last written by an interrupted seed of this
        # same source: then equal metadata means an equal file (mtime is set last).
        # Otherwise (another image, unknown content) equal metadata is confirmed by
        # comparing bytes: two images can share size, mode and mtime 1 and differ.
        self.trust_meta = trust_meta
        self.keep_top = keep_top  # target-top-level names we own (stamp, lock)
        self.links: dict[tuple[int, int], tuple[int, str, int]] = {}  # src inode -> (dst dev, dst path, dst ino)
        self.links_lock = threading.Lock()
        self._method = "copy_file_range"
        self._uid, self._gid = os.geteuid(), os.getegid()
        self._umask = os.umask(0o022)
        os.umask(self._umask)

    @property
    def method(self) -> str:
        return self._method

    # -- content -----------------------------------------------------------

    def _copy_data(self, sfd: int, dfd: int, size: int) -> None:
        if size <= SMALL:
            data = os.read(sfd, size + 1)
            view = memoryview(data)
            while view:
                n = os.write(dfd, view)
                view = view[n:]
            return
        left = size
        if self._method == "copy_file_range":
            try:
                while left > 0:
                    n = os.copy_file_range(sfd, dfd, left)
                    if n == 0:
                        break
                    left -= n
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

    # -- entries -----------------------------------------------------------

    @staticmethod
    def _same_meta(a: os.stat_result, b: os.stat_result) -> bool:
        return (stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode) and a.st_size == b.st_size
                and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode) and a.st_uid == b.st_uid
                and a.st_gid == b.st_gid and a.st_mtime_ns == b.st_mtime_ns)

    def _file(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
              rel: str, stale_tmp: bool) -> None:
        key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        if key is not None:
            with self.links_lock:
                first = self.links.get(key)
            if first is not None:
                self._hardlink(ddir, name, first, dst, stale_tmp)
                return
        # A name only ever carries the source's mtime once content, owner and
        # mode are final (utime is the last step), so matching metadata means
        # a complete file.  A lone inode must stay lone (no stale hardlink group).
        if dst is not None and self._same_meta(st, dst) and (key is not None or dst.st_nlink == 1) and (
                self.trust_meta or self._same_bytes(sdir, ddir, name, st.st_size)):
            if key is not None:
                with self.links_lock:
                    self.links.setdefault(key, (dst.st_dev, rel, dst.st_ino))
            self._count(skipped=1)
            return
        mode = stat.S_IMODE(st.st_mode)
        owned = st.st_uid == self._uid and st.st_gid == self._gid
        # Fresh name: write in place (a crash leaves a wrong mtime, so it is redone).
        # Existing name: stage and rename, so a runner never sees it half written.
        staged = dst is not None
        out = TMP_PREFIX + name[:200] if staged else name
        if staged and stale_tmp:
            try:
                os.unlink(out, dir_fd=ddir)
            except FileNotFoundError:
                pass
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
                if key is not None:
                    nst = os.fstat(dfd)
                    with self.links_lock:
                        self.links.setdefault(key, (nst.st_dev, rel, nst.st_ino))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        if staged:
            if stat.S_ISDIR(dst.st_mode):  # type: ignore[union-attr]
                self._rmtree(ddir, name)
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

    def _hardlink(self, ddir: int, name: str, first: tuple[int, str, int], dst: os.stat_result | None,
                  stale_tmp: bool) -> None:
        if dst is not None and dst.st_ino == first[2] and dst.st_dev == first[0]:
            self._count(skipped=1)
            return
        # Link from the first copy, addressed from the target root: no symlink
        # in between is followed (linkat without AT_SYMLINK_FOLLOW).
        if dst is None:
            os.link(first[1], name, src_dir_fd=self.root_fd, dst_dir_fd=ddir, follow_symlinks=False)
        else:
            tmp = TMP_PREFIX + name[:200]
            if stale_tmp:
                try:
                    os.unlink(tmp, dir_fd=ddir)
                except FileNotFoundError:
                    pass
            os.link(first[1], tmp, src_dir_fd=self.root_fd, dst_dir_fd=ddir, follow_symlinks=False)
            if stat.S_ISDIR(dst.st_mode):
                self._rmtree(ddir, name)
            os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
        self.stats.hardlinks += 1

    def _symlink(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
                 rel: str, stale_tmp: bool) -> None:
        key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        if key is not None:  # Nix's optimiser hardlinks symlinks as well
            with self.links_lock:
                first = self.links.get(key)
            if first is not None:
                self._hardlink(ddir, name, first, dst, stale_tmp)
                return
        target = os.readlink(name, dir_fd=sdir)
        if dst is not None and stat.S_ISLNK(dst.st_mode) and dst.st_uid == st.st_uid and \
                dst.st_gid == st.st_gid and dst.st_mtime_ns == st.st_mtime_ns and \
                (key is not None or dst.st_nlink == 1) and os.readlink(name, dir_fd=ddir) == target:
            if key is not None:
                with self.links_lock:
                    self.links.setdefault(key, (dst.st_dev, rel, dst.st_ino))
            self._count(skipped=1)
            return
        # As for files: the source's mtime is set last, so a crash mid-way is redone.
        tmp = TMP_PREFIX + name[:200] if dst is not None else name
        if dst is not None and stale_tmp:
            try:
                os.unlink(tmp, dir_fd=ddir)
            except FileNotFoundError:
                pass
        os.symlink(target, tmp, dir_fd=ddir)  # kept verbatim: absolute or dangling
        if st.st_uid != self._uid or st.st_gid != self._gid:
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        if dst is not None:
            if stat.S_ISDIR(dst.st_mode):
                self._rmtree(ddir, name)
            os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
        if key is not None:
            nst = os.stat(name, dir_fd=ddir, follow_symlinks=False)
            with self.links_lock:
                self.links.setdefault(key, (nst.st_dev, rel, nst.st_ino))
        self._count(symlinks=1)

    def _special(self, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None) -> None:
        if dst is not None and self._same_meta(st, dst) and dst.st_rdev == st.st_rdev:
            self._count(skipped=1)
            return
        if dst is not None:
            self._remove(ddir, name, dst)
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=ddir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        self._count(files=1)

    def _count(self, **kw: int) -> None:
        s = self.stats
        for k, v in kw.items():
            setattr(s, k, getattr(s, k) + v)

    # -- removal -----------------------------------------------------------

    def _remove(self, ddir: int, name: str, st: os.stat_result) -> None:
        try:
            if stat.S_ISDIR(st.st_mode):
                self._rmtree(ddir, name)
            else:
                os.unlink(name, dir_fd=ddir)
        except FileNotFoundError:
            return  # a crash's temp name, already reused and renamed in this pass
        self._count(removed=1)

    def _rmtree(self, ddir: int, name: str) -> None:
        os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
        fd = os.open(name, _O_DIR, dir_fd=ddir)
        try:
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        self._rmtree(fd, e.name)
                    else:
                        os.unlink(e.name, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=ddir)

    # -- directories -------------------------------------------------------

    def copy_dir(self, sdir: int, ddir: int, rel: str, st_src: os.stat_result, top: bool = False) -> None:
        """Make directory ``ddir`` an exact copy of ``sdir`` (both open fds)."""
        dst_entries: dict[str, os.stat_result] = {}
        with os.scandir(ddir) as it:
            for e in it:
                dst_entries[e.name] = e.stat(follow_symlinks=False)
        with os.scandir(sdir) as it:
            src_entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        # Temp names only exist when a crash left them: skip the unlink otherwise.
        stale_tmp = any(n.startswith(TMP_PREFIX) for n in dst_entries)
        seen = set()
        for name, st in src_entries:
            seen.add(name)
            dst = dst_entries.get(name)
            path = f"{rel}/{name}" if rel else name
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                self._enter(sdir, ddir, name, st, dst, path)
            elif dst is not None and stat.S_ISDIR(dst.st_mode) and not stat.S_ISDIR(mode):
                self._rmtree(ddir, name)
                self._count(removed=1)
                dst = None
                self._dispatch(sdir, ddir, name, st, dst, path, stale_tmp)
            else:
                self._dispatch(sdir, ddir, name, st, dst, path, stale_tmp)
        for name, st in dst_entries.items():
            if name in seen or (top and name in self.keep_top):
                continue
            self._remove(ddir, name, st)  # stale path, or a crash's temp file
        os.fchown(ddir, st_src.st_uid, st_src.st_gid)
        os.fchmod(ddir, stat.S_IMODE(st_src.st_mode))
        os.utime(ddir, ns=(st_src.st_atime_ns, st_src.st_mtime_ns))

    def _dispatch(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
                  path: str, stale_tmp: bool) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._file(sdir, ddir, name, st, dst, path, stale_tmp)
        elif stat.S_ISLNK(mode):
            self._symlink(sdir, ddir, name, st, dst, path, stale_tmp)
        else:
            self._special(ddir, name, st, dst)

    def _enter(self, sdir: int, ddir: int, name: str, st: os.stat_result, dst: os.stat_result | None,
               path: str) -> None:
        if dst is not None and not stat.S_ISDIR(dst.st_mode):
            os.unlink(name, dir_fd=ddir)  # e.g. a symlink planted where a directory belongs
            self._count(removed=1)
            dst = None
        if dst is None:
            os.mkdir(name, 0o700, dir_fd=ddir)
        elif stat.S_IMODE(dst.st_mode) & 0o700 != 0o700:
            os.chmod(name, 0o700, dir_fd=ddir, follow_symlinks=False)
        cs = os.open(name, _O_DIR, dir_fd=sdir)
        try:
            cd = os.open(name, _O_DIR, dir_fd=ddir)
            try:
                self.copy_dir(cs, cd, path, st)
            finally:
                os.close(cd)
        finally:
            os.close(cs)
        self._count(dirs=1)

    root_fd: int = -1
