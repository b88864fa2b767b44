"""Tree comparison for seeding: type, mode, owner, mtime, content hash,
symlink target, device number, extended attributes and hardlink groups.  Used by tests and benchmarks to prove a
copy exact; returns the differences (empty when exact)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from flywheel_runtime.nixseed.copy import _xattrs as xattrs
from flywheel_runtime.nixseed.seeding import LOCK_NAME, PARTIAL_NAME, STAMP_NAME

IGNORED_TOP = frozenset({STAMP_NAME, LOCK_NAME, PARTIAL_NAME})  # the seeder's own bookkeeping


def _walk(root: Path, content: bool) -> tuple[dict[str, tuple], list[frozenset[str]]]:
    entries: dict[str, tuple] = {}
    groups: dict[tuple[int, int], set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in IGNORED_TOP:
                continue
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                if content:
                    h = hashlib.sha256()
                    with open(full, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                    extra = (st.st_size, h.hexdigest())
                else:
                    extra = st.st_size
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            # Nix's optimiser hardlinks symlinks too: groups cover every non-directory.
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                groups.setdefault((st.st_dev, st.st_ino), set()).add(rel)
            entries[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, extra,
                            tuple(xattrs(full)))
    return entries, sorted((frozenset(g) for g in groups.values() if len(g) > 1), key=sorted)


def compare_trees(a: str | Path, b: str | Path, *, content: bool = True) -> list[str]:
    ea, ga = _walk(Path(a), content)
    eb, gb = _walk(Path(b), content)
    diffs = []
    for rel in sorted(ea.keys() | eb.keys()):
        if rel not in eb:
            diffs.append(f"missing in copy: {rel}")
        elif rel not in ea:
            diffs.append(f"extra in copy: {rel}")
        elif ea[rel] != eb[rel]:
            diffs.append(f"differs: {rel}: {ea[rel]} != {eb[rel]}")
    if ga != gb:
        diffs.append(f"hardlink groups differ: {len(ga)} vs {len(gb)}")
    return diffs
