"""Small helpers shared across the package: one atomic writer, one timestamp parser, one process check.

Imports stay at the standard library: the runtime path (hooks, entrypoint)
uses this module before every job.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None, fsync: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file,
    never a torn one: a sibling temporary file, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        # O_EXCL|O_NOFOLLOW: whatever sat at the temporary name (a FIFO would
        # block a plain open forever, a symlink would redirect it) is never opened.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def parse_time(value: Any) -> dt.datetime | None:
    """A Kubernetes timestamp ("2026-05-04T13:00:00Z"), or a datetime, as an aware
    datetime (naive means UTC); None stays None.  Raises ValueError on garbage."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: signal 0 answers, and it is not a zombie (a child of ours
    that exited and was not reaped yet is dead for every caller here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's pid
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
