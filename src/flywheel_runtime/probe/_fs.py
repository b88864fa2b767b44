"""Paths under a probe root.  Plain strings and os.path: pathlib (with the
urllib and ntpath it pulls in) and typing would be the largest imports on the
hints path, which runs before every job."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Union

    RootLike = Union[str, "os.PathLike[str]"]


def rooted(root: RootLike, path: str) -> str:
    """``path`` (absolute, as the pod sees it) under ``root``."""
    return os.path.join(os.fspath(root), path.lstrip("/"))


def is_live(root: RootLike) -> bool:
    """True when ``root`` is this system's own /."""
    return os.path.abspath(os.fspath(root)) == "/"


def read_regular(path: str, limit: int = 1 << 20, dir_fd: int | None = None) -> bytes | None:
    """Up to ``limit`` bytes of ``path`` when it is a regular file, else None.

    Opened non-blocking and judged by fstat on the open descriptor (no
    stat-then-open race): a FIFO, socket or device planted where a file
    belongs (a captured tree, a hostile volume) is refused at once instead of
    hanging the probe; /proc and /sys attributes are regular files."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
    except (OSError, ValueError):  # ValueError: a NUL in a path taken from a file
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str, limit: int = 1 << 20) -> str | None:
    """:func:`read_regular` decoded as UTF-8 (bad bytes replaced)."""
    raw = read_regular(path, limit)
    return None if raw is None else raw.decode("utf-8", errors="replace")


def as_seen(root: RootLike, path: str) -> str:
    """A real path turned back into the pod's view of it (relative to ``root``)."""
    r, p = os.path.abspath(os.fspath(root)), os.path.abspath(path)
    if r == "/":
        return p
    if p == r:
        return "/"
    if p.startswith(r + "/"):
        return p[len(r):]
    return p
