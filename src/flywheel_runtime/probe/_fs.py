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


def read_text(path: str, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


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
