"""Seeding orchestration: lock, identity, stamp, progress and errors."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from flywheel_runtime.errors import (
    DeadlineError,
    ExitCode,
    FlywheelError,
    LockedError,
    NoSpaceError,
    PermissionDeniedError,
    SourceMissingError,
    TargetRefusedError,
)
from flywheel_runtime.nixseed.copy import SKIP_XATTRS, Copier, Stats
from flywheel_runtime.nixseed.links import STAGING_NAME, remove_staging

STAMP_NAME = ".flywheel-seed.json"
LOCK_NAME = ".flywheel-seed.lock"
PARTIAL_NAME = ".flywheel-seed.partial"  # journal of a seed in progress (see _seed_locked)
STAMP_SCHEMA = "flywheel.tinyland.dev/nix-seed/v1"
JOURNAL_SCHEMA = "flywheel.tinyland.dev/nix-seed-journal/v2"
DB_REL = "var/nix/db/db.sqlite"


@dataclass
class SeedReport:
    source: str
    target: str
    identity: str
    skipped: bool
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    unchanged: int = 0
    removed: int = 0
    seconds: float = 0.0
    method: str = ""
    chowned: list[str] | None = None
    forced: str | None = None  # the operator's --force reason, when it was needed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_identity(source: str | Path) -> str:
    """A fingerprint of everything the source holds that a job sees.

    For a Nix store (``store/`` and a ``var/nix/db/db.sqlite`` regular file):
    sha256 over a full walk of everything outside ``store/`` (type, mode,
    owner, mtime, size, device number, xattrs, symlink target, hardlink
    group, and the bytes of every regular file: the database, profiles,
    gcroots) plus the sorted names in ``store/``.  Why not walk the store:
    Nix registers every valid store path in the database with its NAR hash,
    size and references, so an image that adds, drops or changes any store
    path changes the database bytes; store path names are content-addressed
    hashes, so the listing catches paths added without registration.  It does
    not cover someone editing a file inside a registered path in place (that
    breaks Nix's own invariants; ``nix-store --verify --check-contents`` is the
    tool for it).  Cost: one read of ``var/`` (the db: a few MB for a large
    store) plus one directory listing.  Any other source is walked whole, its
    bytes included (sound, not cheap)."""
    src = Path(source)
    h = hashlib.sha256(b"flywheel-nix-seed-identity-v2\0")
    try:
        nix = stat.S_ISREG(os.lstat(src / DB_REL).st_mode) and stat.S_ISDIR(os.lstat(src / "store").st_mode)
    except OSError:
        nix = False
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # the root's own metadata: the copy gives the target's root the same
        h.update(b"%o\0%d\0%d\0%d\0" % (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns))
        for k, v in _xattr_items(fd):
            h.update(os.fsencode(k) + b"=" + v.hex().encode() + b"\0")
        _hash_tree(h, fd, b"", {}, skip_store=nix)
    finally:
        os.close(fd)
    return "sha256:" + h.hexdigest()


def _xattr_items(path: str | int, follow: bool = True) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return []
        raise
    return sorted((n, os.getxattr(path, n, follow_symlinks=follow)) for n in names if n not in SKIP_XATTRS)


def _hash_tree(h: Any, dfd: int, rel: bytes, seen: dict[tuple[int, int], bytes], skip_store: bool) -> None:
    with os.scandir(dfd) as it:
        names = sorted(os.fsencode(e.name) for e in it)
    for bname in names:
        name = os.fsdecode(bname)
        path = rel + b"/" + bname if rel else bname
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        via = f"/proc/self/fd/{dfd}/{name}"
        h.update(b"%s\0%o\0%d\0%d\0%d\0%d\0%d\0" % (path, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                                            st.st_size, st.st_rdev))
        for k, v in _xattr_items(via, follow=False):
            h.update(os.fsencode(k) + b"=" + v.hex().encode() + b"\0")
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first = seen.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                h.update(b"link\0" + first + b"\0")
                continue
        if stat.S_ISLNK(st.st_mode):
            h.update(os.fsencode(os.readlink(name, dir_fd=dfd)) + b"\0")
        elif stat.S_ISREG(st.st_mode):
            fd = _open_regular(dfd, name)
            try:
                for chunk in iter(lambda: os.read(fd, 1 << 20), b""):
                    h.update(chunk)
            finally:
                os.close(fd)
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                if skip_store and path == b"store":  # names only: see source_identity
                    h.update(b"\0".join(sorted(os.fsencode(n) for n in os.listdir(sub))) + b"\n")
                else:
                    _hash_tree(h, sub, path, seen, skip_store)
            finally:
                os.close(sub)


def _open_regular(dir_fd: int, name: str) -> int:
    """Open ``name`` for reading only if it is a regular file: never follows a
    link, never blocks (a FIFO or device planted at the name is not opened for
    I/O: O_NONBLOCK, then fstat)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    return fd


def _db_state(src: Path) -> tuple[tuple[object, ...], ...]:
    """What changes when anything writes the source's Nix database."""
    out: list[tuple[object, ...]] = []
    for name in ("db.sqlite", "db.sqlite-wal"):
        try:
            st = os.stat(src / DB_REL.rsplit("/", 1)[0] / name)
            out.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
        except FileNotFoundError:
            out.append((name, None))
    return tuple(out)


def _nar_total(src: Path) -> int | None:
    """Bytes the store registers (sum of narSize): the denominator of the ETA.
    ``immutable=1`` opens a WAL database without needing (or creating) -shm."""
    db = src / DB_REL
    if not db.is_file():
        return None
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
        try:
            row = con.execute("SELECT sum(narSize) FROM ValidPaths").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row and row[0] else None


def _open_rel(fd: int, rel: str) -> int:
    """Open directory ``rel`` under ``fd`` one component at a time, never following a symlink."""
    cur = os.dup(fd)
    try:
        for part in rel.split("/"):
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            os.close(cur)
            cur = nxt
        return cur
    except BaseException:
        os.close(cur)
        raise


def _recopy_db(copier: Copier, src_fd: int, dst_fd: int) -> None:
    rel = DB_REL.rsplit("/", 1)[0]
    sfd = _open_rel(src_fd, rel)
    try:
        dfd = _open_rel(dst_fd, rel)
        try:
            st = os.fstat(sfd)
            os.fchmod(dfd, 0o700)
            copier.copy_dir(sfd, dfd, rel, st)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def read_stamp(target: str | Path) -> dict[str, Any] | None:
    """The completion stamp, or None.  Opened without following a symlink: a
    link planted at the stamp's name never counts as a seeded volume; nor does
    a FIFO or device (never opened for I/O, so it cannot block)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _parse(_read_small(fd, STAMP_NAME, strict=False), STAMP_SCHEMA)
    finally:
        os.close(fd)


def _parse(raw: bytes | None, schema: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("schema") == schema else None


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _write_stamp(dst_fd: int, report: SeedReport) -> None:
    body = json.dumps({"schema": STAMP_SCHEMA, "identity": report.identity, "source": report.source,
                       "seeded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "files": report.files + report.unchanged, "bytes": report.bytes}).encode()
    _write_small(dst_fd, STAMP_NAME, body)


def _read_small(dir_fd: int, name: str, *, strict: bool = True) -> bytes | None:
    """The bytes of our bookkeeping file ``name`` (None when absent).  Anything
    but a regular file there (a FIFO would block a plain open forever) is
    refused (``strict``) or read as absent."""
    try:
        fd = _open_regular(dir_fd, name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if not strict:
            return None
        if exc.errno in (errno.EINVAL, errno.ELOOP, errno.EISDIR):
            raise _not_regular(dir_fd, name) from None
        raise
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _not_regular(dir_fd: int, name: str) -> TargetRefusedError:
    try:
        kind = _KINDS.get(stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode), "special file")
    except OSError:
        kind = "special file"
    return TargetRefusedError(f"the target holds a {kind} at {name}, where seed-nix keeps a regular file;"
                              " remove it and re-run")


_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink"}


def _write_small(dir_fd: int, name: str, body: bytes) -> None:
    """Write ``name`` in ``dir_fd`` atomically and durably (temp, fsync, rename, fsync dir)."""
    tmp = name + ".tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def _drop_stamp(dst_fd: int) -> None:
    try:
        os.unlink(STAMP_NAME, dir_fd=dst_fd)
        os.fsync(dst_fd)
    except FileNotFoundError:
        pass


class _Progress:
    """Periodic logfmt lines for ``kubectl logs``; a live bar on a terminal.

    Driven by the copy itself (:meth:`tick` every few hundred entries, and by
    the parent while workers run) rather than by a thread: workers are forked,
    and a fork must not happen while another thread may hold a lock."""

    def __init__(self, snapshot: Callable[[], Stats], total_bytes: int | None, stream: TextIO,
                 interval: float) -> None:
        self.snapshot, self.total, self.stream, self.interval = snapshot, total_bytes, stream, interval
        self.t0 = time.monotonic()
        self.tty = stream.isatty()
        if self.tty and interval > 0:
            self.interval = min(interval, 0.5)  # a live bar, not a log
        self._due = self.t0 + self.interval
        self._drawn = False

    def tick(self) -> None:
        now = time.monotonic()
        if self.interval <= 0 or now < self._due:
            return
        self._due = now + self.interval
        if self.tty:
            self.stream.write("\r" + self.line()[:150])
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        s, dt = self.snapshot(), max(time.monotonic() - self.t0, 1e-9)
        rate = s.bytes / dt
        eta = f"{max(self.total - s.bytes, 0) / rate:.1f}" if self.total and rate > 0 else "unknown"
        return (f"seed-nix progress files={s.files + s.skipped + s.hardlinks} bytes={s.bytes} dirs={s.dirs} "
                f"rate_mb_s={rate / 1e6:.1f} files_s={(s.files + s.skipped + s.hardlinks) / dt:.0f} eta_s={eta}")


def default_jobs(root: str | Path = "/") -> int:
    """One worker per CPU this process may use, at most 8 (past that the
    target's metadata journal, not the CPU, limits a copy).  "May use" is the
    smaller of the CPU affinity and the container's CFS quota (cgroup v2
    ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded up: an init container
    limited to 4 CPUs on a 64-CPU node gets 4, not 64 throttled workers.
    ``root`` prefixes the cgroup paths (tests)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path(root))
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, min(cpus, 8))


def _cgroup_cpu_quota(root: Path) -> int | None:
    cg = root / "sys" / "fs" / "cgroup"
    try:
        fields = (cg / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return -(-int(fields[0]) // int(fields[1]))
        return None
    except (OSError, ValueError):
        pass
    try:
        q = int((cg / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cg / "cpu" / "cpu.cfs_period_us").read_text())
        return -(-q // period) if q > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _worker_pool() -> Any:
    """The worker processes a fan-out runs on (imported only when jobs > 1)."""
    from flywheel_runtime.nixseed.workers import Workers

    return Workers


def _fanout_dir(src_fd: int) -> str:
    """Which directory's entries the workers share: the source root, or its
    widest subdirectory when that is wider (``store`` in a /nix)."""
    best, width = "", 0
    with os.scandir(src_fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    width = len(entries)
    for name, is_dir in entries:
        if not is_dir:
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
        except OSError:
            continue
        try:
            n = len(os.listdir(fd))
        finally:
            os.close(fd)
        if n > width:
            best, width = name, n
    return best


def _error(exc: OSError, what: str) -> FlywheelError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left on the target while {what}{where}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDeniedError(f"permission denied while {what}: {exc.strerror}{where}")
    # Anything else (EIO, ELOOP, a filesystem refusing xattrs...) was not anticipated: exit 70.
    return FlywheelError(f"seeding failed while {what}: {exc.strerror}{where}", exit_code=ExitCode.INTERNAL)


BOOKKEEPING = frozenset({STAMP_NAME, LOCK_NAME, PARTIAL_NAME, STAGING_NAME,
                         STAMP_NAME + ".tmp", PARTIAL_NAME + ".tmp"})
FREE_ON_A_FRESH_VOLUME = frozenset({"lost+found"})  # mkfs.ext4 makes it on every volume


def _ids(path: Path) -> list[tuple[int, int]]:
    """(dev, ino) of ``path`` and each of its existing ancestors (realpath'd already)."""
    out = []
    for p in (path, *path.parents):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((st.st_dev, st.st_ino))
    return out


def check_target(source: str | Path, target: str | Path) -> tuple[Path, Path, list[str], bool]:
    """Refuse a target seed-nix must not touch, before touching anything:
    an empty path (it would be the current directory), the source itself, a
    path inside it or holding it (by resolved path, and by inode through bind
    mounts), or a special file where seed-nix keeps its stamp, lock or journal.
    Returns the resolved (source, target), the target's entries that are not
    seed-nix's bookkeeping nor ``lost+found``, and whether it carries seed-nix's
    stamp or journal (a volume it seeded, or began to)."""
    if str(target) == "" or str(source) == "":
        which = "target" if str(target) == "" else "source"
        raise TargetRefusedError(f"the seed {which} is an empty path (an unset variable?); refusing to use the"
                                 " current directory")
    src, dst = Path(os.path.realpath(source)), Path(os.path.realpath(target))
    if dst == src:
        raise TargetRefusedError(f"the seed target {target} is the source {source}")
    if src in dst.parents:
        raise TargetRefusedError(f"the seed target {target} lies inside the source {source}")
    if dst in src.parents:
        raise TargetRefusedError(f"the seed target {target} holds the source {source}")
    try:
        st_src = os.stat(src)
        if (st_src.st_dev, st_src.st_ino) in _ids(dst):
            raise TargetRefusedError(f"the seed target {target} is, or lies inside, the source {source} (same inode)")
        if os.path.lexists(dst):
            st = os.lstat(dst)
            if not stat.S_ISDIR(st.st_mode):
                raise TargetRefusedError(f"the seed target {target} exists and is not a directory")
            if (st.st_dev, st.st_ino) in _ids(src)[1:]:
                raise TargetRefusedError(f"the seed target {target} holds the source {source} (same inode)")
            names = os.listdir(dst)
        else:
            names = []
        kinds = {n: stat.S_IFMT(os.lstat(dst / n).st_mode) for n in names
                 if n in (STAMP_NAME, PARTIAL_NAME, LOCK_NAME) or n in FREE_ON_A_FRESH_VOLUME}
    except OSError as exc:
        raise _error(exc, f"checking the target {target}") from None
    for name in (STAMP_NAME, PARTIAL_NAME, LOCK_NAME):
        if name in kinds and kinds[name] != stat.S_IFREG:
            raise TargetRefusedError(f"the target {dst} holds a {_KINDS.get(kinds[name], 'special file')} at {name},"
                                     " where seed-nix keeps a regular file; remove it and re-run")
    foreign = sorted(n for n in names if n not in BOOKKEEPING and kinds.get(n) != stat.S_IFDIR)
    ours = read_stamp(dst) is not None or _journal_of(dst) is not None
    return src, dst, foreign, ours


def _entries(names: list[str]) -> str:
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'}"


def _journal_of(dst: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_journal(fd)
    finally:
        os.close(fd)


def _read_journal(dst_fd: int) -> dict[str, Any] | None:
    """The in-progress journal: which source identity a seed began writing
    from, and whether everything in the target came from runs of that source
    (``trusted``).  A journal of an older format counts as untrusted."""
    raw = _read_small(dst_fd, PARTIAL_NAME)
    if raw is None:
        return None
    data = _parse(raw, JOURNAL_SCHEMA)
    if data is None and raw.startswith(b"sha256:"):  # v1: the identity alone
        return {"schema": JOURNAL_SCHEMA, "identity": raw.decode(errors="replace"), "trusted": False}
    return data


def seed(source: str | Path, target: str | Path, *, jobs: int = 0, lock_timeout: float = 600.0,
         progress: TextIO | None = None, progress_interval: float = 5.0,
         chown_work: list[str] | None = None, work_owner: tuple[int, int] = (1001, 1001),
         force: str | None = None) -> SeedReport:
    """Make ``target`` an exact copy of ``source`` and stamp it; see the module docs.
    ``jobs``: worker processes (0: one per usable CPU, see :func:`default_jobs`).
    ``force``: the operator's reason to seed over a non-empty target seed-nix
    never seeded (logged); it overrides nothing else :func:`check_target` refuses."""
    t0 = time.monotonic()
    if jobs < 0:
        raise FlywheelError(f"--jobs must be 0 (one per CPU) or more, got {jobs}", exit_code=ExitCode.USAGE)
    if force is not None and not force.strip():
        raise FlywheelError("--force needs a reason (it goes to the log)", exit_code=ExitCode.USAGE)
    jobs = jobs or default_jobs()
    if str(source):
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except FileNotFoundError:
            is_dir = False
        except OSError as exc:
            raise _error(exc, f"looking at the seed source {source}") from None
        if not is_dir:
            raise SourceMissingError(f"seed source {source} does not exist or is not a directory")
    src, dst, foreign, ours = check_target(source, target)
    log = progress or sys.stderr
    if foreign and not ours:
        if force is None:
            raise TargetRefusedError(
                f"the seed target {dst} is not empty ({_entries(foreign)}, e.g. {foreign[0]!r}) and seed-nix never"
                " seeded it; seeding would replace or delete them: give an empty volume, or --force REASON")
        log.write(f"seed-nix: --force ({force.strip()}): seeding over {_entries(foreign)} in {dst} that seed-nix"
                  f" never seeded (e.g. {foreign[0]!r})\n")
        log.flush()
    try:
        dst.mkdir(parents=True, exist_ok=True)
        dst_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(exc, f"opening the target {dst}") from None
    try:
        try:
            lock_fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              0o600, dir_fd=dst_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _not_regular(dst_fd, LOCK_NAME) from None
            raise _error(exc, f"creating the lock in {dst}") from None
        try:
            if not stat.S_ISREG(os.fstat(lock_fd).st_mode):
                raise _not_regular(dst_fd, LOCK_NAME)
            deadline = time.monotonic() + lock_timeout
            while True:  # a restarted init container waits for the first to finish
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockedError(f"another seeder has held {dst / LOCK_NAME} for over {lock_timeout:.0f}s")
                    time.sleep(0.05)
            try:
                report = _seed_locked(src, dst, dst_fd, jobs, progress, progress_interval)
            except OSError as exc:
                raise _error(exc, f"seeding {dst} from {src}") from None
            report.forced = force.strip() if force is not None and foreign and not ours else None
            if chown_work:
                report.chowned = []
                for path in chown_work:
                    try:
                        os.makedirs(path, exist_ok=True)
                        os.chown(path, *work_owner, follow_symlinks=False)
                    except OSError as exc:
                        raise _error(exc, f"chowning the work volume {path}") from None
                    report.chowned.append(path)
            report.seconds = round(time.monotonic() - t0, 4)
            return report
        finally:
            os.close(lock_fd)
    finally:
        os.close(dst_fd)


def _seed_locked(src: Path, dst: Path, dst_fd: int, jobs: int, progress: TextIO | None,
                 progress_interval: float) -> SeedReport:
    try:
        identity = source_identity(src)
    except OSError as exc:
        raise _error(exc, f"reading the source {src}") from None
    stamp = _parse(_read_small(dst_fd, STAMP_NAME), STAMP_SCHEMA)
    report = SeedReport(str(src), str(dst), identity, skipped=False)
    if stamp and stamp.get("identity") == identity:
        report.skipped = True
        if _exists(dst_fd, PARTIAL_NAME):
            # A kill between the stamp and the journal's removal: the stamp proves the run complete.
            os.unlink(PARTIAL_NAME, dir_fd=dst_fd)
        return report
    journal = _read_journal(dst_fd)
    # Equal metadata proves an equal file only for names a run of this very source
    # wrote (it sets mtime last): so trust it only when every run since the target
    # was empty copied from this identity.  A target that held another image (or
    # anything else) has its same-size, same-mtime files compared byte for byte.
    if journal is not None:
        trusted = journal.get("identity") == identity and journal.get("trusted") is True
    else:
        trusted = stamp is None and all(
            n in BOOKKEEPING or n in FREE_ON_A_FRESH_VOLUME for n in os.listdir(dst_fd))
    body = json.dumps({"schema": JOURNAL_SCHEMA, "identity": identity, "trusted": trusted}).encode()
    try:
        # Journal first, then drop the stamp: a kill in between leaves both, and
        # the target still reads as ours (and as untrusted for any other source).
        _write_small(dst_fd, PARTIAL_NAME, body)
        _drop_stamp(dst_fd)  # never leave a stale stamp over changing content
    except OSError as exc:
        raise _error(exc, f"marking {dst} as being seeded") from None
    stats = Stats()
    total = _nar_total(src)
    try:
        remove_staging(dst_fd)  # a killed run's hardlink staging names
        src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            copier = Copier(stats, root_fd=dst_fd, keep_top=BOOKKEEPING, trust_meta=trusted, jobs=jobs,
                            fanout=_fanout_dir(src_fd) if jobs > 1 else None,
                            pool=_worker_pool() if jobs > 1 else None)
            ticker = _Progress(copier.snapshot, total, progress or sys.stderr,
                               progress_interval)
            copier.tick = ticker.tick
            copier.flush = lambda: _syncfs(dst_fd)
            try:
                before = initial = _db_state(src)
                copier.copy_dir(src_fd, dst_fd, "", os.fstat(src_fd), top=True)
                # The db is copied file by file: if anything wrote it meanwhile, copy
                # its directory again until a pass saw it unchanged (consistent copy).
                for _attempt in range(5):
                    after = _db_state(src)
                    if after == before:
                        break
                    before = after
                    _recopy_db(copier, src_fd, dst_fd)
                else:
                    raise DeadlineError(f"the Nix database under {src} kept changing while it was copied;"
                                        " stop writers (nix-daemon) in the source and re-run")
                if after != initial:
                    report.identity = identity = source_identity(src)
            finally:
                ticker.close()
                copier.close()
        finally:
            os.close(src_fd)
        remove_staging(dst_fd)  # groups outside the farm (the farm itself needs none)
        _syncfs(dst_fd)
    except OSError as exc:
        raise _error(exc, f"copying {src} to {dst}") from None
    report.files, report.dirs, report.symlinks = stats.files, stats.dirs, stats.symlinks
    report.hardlinks, report.bytes = stats.hardlinks, stats.bytes
    report.unchanged, report.removed, report.method = stats.skipped, stats.removed, copier.method
    try:
        _write_stamp(dst_fd, report)
        os.unlink(PARTIAL_NAME, dir_fd=dst_fd)
    except OSError as exc:
        raise _error(exc, "writing the completion stamp") from None
    return report
