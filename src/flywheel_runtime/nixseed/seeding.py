"""Seeding orchestration: lock, identity, stamp, progress and errors."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from flywheel_runtime.errors import (
    FlywheelError,
    LockedError,
    NoSpaceError,
    PermissionDeniedError,
    SourceMissingError,
)
from flywheel_runtime.nixseed.copy import Copier, Stats
from flywheel_runtime.nixseed.links import remove_staging

STAMP_NAME = ".flywheel-seed.json"
LOCK_NAME = ".flywheel-seed.lock"
PARTIAL_NAME = ".flywheel-seed.partial"  # identity of a seed in progress (see Copier.trust_meta)
STAMP_SCHEMA = "flywheel.tinyland.dev/nix-seed/v1"
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_identity(source: str | Path) -> str:
    """A cheap fingerprint of the source store, computed without walking it.

    sha256 over: the bytes of ``var/nix/db/db.sqlite`` (and ``-wal`` if any),
    the sorted names in ``store/``, and name/mode/mtime of ``/nix``'s top-level
    entries.  Why that is sound: Nix registers every valid store path in the
    database with its NAR hash, size and references, so an image that adds,
    drops or changes any store path changes the database bytes; store path
    names are content-addressed hashes, so the listing catches paths added
    without registration.  It does not cover someone editing a file inside a
    registered path in place (that breaks Nix's own invariants; ``nix-store
    --verify --check-contents`` is the tool for it).  Cost: one read of the db
    (a few MB for a large store) plus one directory listing.  Sources without a
    Nix database fall back to a full metadata walk (sound, not cheap)."""
    src = Path(source)
    h = hashlib.sha256(b"flywheel-nix-seed-identity-v1\0")
    db = src / DB_REL
    if db.is_file():
        with open(db, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        wal = db.with_name("db.sqlite-wal")
        if wal.is_file():
            h.update(wal.read_bytes())
        store = src / "store"
        if store.is_dir():
            h.update("\0".join(sorted(os.listdir(store))).encode())
        for top in sorted(os.listdir(src)):
            st = os.lstat(src / top)
            h.update(f"{top}\0{st.st_mode}\0{st.st_mtime_ns}\0".encode())
        return "sha256:" + h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_uid}\0{st.st_gid}\n".encode())
    return "sha256:" + h.hexdigest()


def _db_state(src: Path) -> tuple:
    """What changes when anything writes the source's Nix database."""
    out = []
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
    link planted at the stamp's name never counts as a seeded volume."""
    try:
        fd = os.open(Path(target) / STAMP_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            raw = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        data = json.loads(raw)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == STAMP_SCHEMA else None


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


def _read_small(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


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
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left on the target while {what}: {exc.filename or ''}".rstrip(": "))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDeniedError(f"permission denied while {what}: {exc.strerror}"
                                     + (f" ({exc.filename})" if exc.filename else ""))
    return FlywheelError(f"seeding failed while {what}: {exc.strerror}" + (f" ({exc.filename})" if exc.filename else ""))


def seed(source: str | Path, target: str | Path, *, jobs: int = 0, lock_timeout: float = 600.0,
         progress: TextIO | None = None, progress_interval: float = 5.0,
         chown_work: list[str] | None = None, work_owner: tuple[int, int] = (1001, 1001)) -> SeedReport:
    """Make ``target`` an exact copy of ``source`` and stamp it; see the module docs.
    ``jobs``: worker processes (0: one per usable CPU, see :func:`default_jobs`)."""
    t0 = time.monotonic()
    src, dst = Path(source), Path(target)
    if jobs < 0:
        from flywheel_runtime.errors import ExitCode

        raise FlywheelError(f"--jobs must be 0 (one per CPU) or more, got {jobs}", exit_code=ExitCode.USAGE)
    jobs = jobs or default_jobs()
    if not src.is_dir():
        raise SourceMissingError(f"seed source {src} does not exist or is not a directory")
    try:
        dst.mkdir(parents=True, exist_ok=True)
        dst_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(exc, f"opening the target {dst}") from None
    try:
        try:
            lock_fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_fd)
        except OSError as exc:
            raise _error(exc, f"creating the lock in {dst}") from None
        try:
            deadline = time.monotonic() + lock_timeout
            while True:  # a restarted init container waits for the first to finish
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockedError(f"another seeder has held {dst / LOCK_NAME} for over {lock_timeout:.0f}s")
                    time.sleep(0.05)
            identity = source_identity(src)
            stamp = read_stamp(dst)
            report = SeedReport(str(src), str(dst), identity, skipped=False)
            if stamp and stamp.get("identity") == identity:
                report.skipped = True
            else:
                _drop_stamp(dst_fd)  # never leave a stale stamp over changing content
                try:
                    partial = _read_small(dst_fd, PARTIAL_NAME)
                    _write_small(dst_fd, PARTIAL_NAME, identity.encode())
                except OSError as exc:
                    raise _error(exc, f"marking {dst} as being seeded") from None
                stats = Stats()
                total = _nar_total(src)
                try:
                    remove_staging(dst_fd)  # a killed run's hardlink staging names
                    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        copier = Copier(stats, root_fd=dst_fd, keep_top=frozenset({STAMP_NAME, LOCK_NAME, PARTIAL_NAME}),
                                        trust_meta=partial == identity.encode(), jobs=jobs,
                                        fanout=_fanout_dir(src_fd) if jobs > 1 else None,
                                        pool=_worker_pool() if jobs > 1 else None)
                        ticker = _Progress(copier.snapshot, total, progress or sys.stderr,
                                           progress_interval if progress is not False else 0)
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
                                raise FlywheelError(f"the Nix database under {src} kept changing while it was copied;"
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
