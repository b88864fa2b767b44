"""A synthetic but store-shaped ``/nix`` for benchmarks.

``/nix/store/<32-char hash>-<name>/{bin,lib,share/...}`` with mtime 1, files
0444/0555, directories 0555, a size mix that is mostly small files with a few
large libraries, symlinks (relative, absolute, dangling), duplicate content
every regular file hardlinked into ``store/.links`` under its content hash the way
``auto-optimise-store`` does (so almost every file has two or more names, and
duplicate content shares one inode), and a real WAL-mode ``var/nix/db/db.sqlite``
registering every path.  Deterministic
for a given seed.  Needs root (files are owned by uid 0 as in the image).
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

_B32 = "0123456789abcdfghijklmnpqrsvwxyz"  # Nix's base-32 alphabet


@dataclass(frozen=True)
class SynthStats:
    files: int
    symlinks: int
    dirs: int
    bytes: int
    hardlinks: int
    store_paths: int



def freeze_like_image(root: Path) -> None:
    """Give a tree an image store's metadata: mtime 1 on everything below
    ``root`` and read-only directories, set bottom-up so children come first."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (1, 1), follow_symlinks=False)
        for n in dirnames:
            full = os.path.join(dirpath, n)
            if not os.path.islink(full):
                os.chmod(full, 0o555)
            os.utime(full, (1, 1), follow_symlinks=False)

def _size(rng: random.Random, total_target_avg: int) -> int:
    # Mostly small files (headers, scripts, docs), a long tail of big libraries.
    r = rng.random()
    if r < 0.55:
        return rng.randint(0, 4096)
    if r < 0.85:
        return rng.randint(4096, 32768)
    if r < 0.97:
        return rng.randint(32768, 262144)
    return rng.randint(262144, max(262145, total_target_avg * 40))


def generate(root: str | Path, *, files: int = 30_000, total_bytes: int = 1 << 30, seed: int = 1,
             files_per_path: int = 40, dup_fraction: float = 0.1) -> SynthStats:
    """Write a store of about ``files`` regular files and ``total_bytes`` bytes under ``root``
    (which becomes the ``/nix`` directory)."""
    rng = random.Random(seed)
    nix = Path(root)
    store = nix / "store"
    links = store / ".links"
    links.mkdir(parents=True, exist_ok=True)
    avg = max(total_bytes // max(files, 1), 1)
    # Draw the sizes and which files repeat earlier content, then scale so the
    # unique bytes (what a copy writes) land at total_bytes or just above.
    sizes = [_size(rng, avg) for _ in range(files)]
    dup = [i > 0 and rng.random() < dup_fraction for i in range(files)]
    scale = total_bytes * 1.002 / max(sum(s for s, d in zip(sizes, dup) if not d), 1)  # 0.2%: per-file headers
    sizes = [int(s * scale) + 1 for s in sizes]
    blob = rng.randbytes(1 << 20)
    dup_pool: list[tuple[str, int]] = []  # (.links name, size) for content seen before
    n_paths = max(files // files_per_path, 1)
    nfiles = nsyml = ndirs = nbytes = nhard = 0
    rows = []
    fi = 0
    for p in range(n_paths):
        h = "".join(rng.choice(_B32) for _ in range(32))
        sp = store / f"{h}-pkg{p}-{rng.randint(1, 9)}.{rng.randint(0, 30)}"
        subdirs = [sp / "bin", sp / "lib", sp / "share" / "doc" / f"pkg{p}", sp / "include" / f"pkg{p}"]
        for d in subdirs:
            d.mkdir(parents=True, exist_ok=True)
        (sp / "share" / "empty").mkdir()
        ndirs += len(subdirs) + 4
        count = files_per_path if p < n_paths - 1 else max(files - fi, 0)
        for k in range(count):
            if fi >= files:
                break
            size = sizes[fi]
            fi += 1
            d = subdirs[k % len(subdirs)]
            name = f"f{k}.so" if d.name == "lib" else f"f{k}"
            path = d / name
            if dup_pool and dup[fi - 1]:
                lname, lsize = rng.choice(dup_pool)
                os.link(links / lname, path)
                nhard += 1
                nbytes_file = 0
            else:
                data = (blob * (size // len(blob) + 1))[:size] if size > len(blob) else blob[
                    (off := rng.randint(0, len(blob) - size)):off + size]
                data = f"{p}:{k}\n".encode() + data[: max(size - 12, 0)]
                with open(path, "wb") as fh:
                    fh.write(data)
                os.chmod(path, 0o555 if d.name == "bin" else 0o444)
                nbytes_file = len(data)
                lname = hashlib.sha256(data).hexdigest()[:52]
                if not (links / lname).exists():  # the optimiser links every file, unique or not
                    os.link(path, links / lname)
                    if rng.random() < 0.15:  # content that recurs in later store paths
                        dup_pool.append((lname, len(data)))
            nfiles += 1
            nbytes += nbytes_file
        (sp / "lib" / "libcurrent.so").symlink_to("f1.so")
        (sp / "bin" / "sh").symlink_to("/nix/store/" + h + "-bash/bin/bash")
        (sp / "share" / "dangling").symlink_to("../nowhere/at-all")
        nsyml += 3
        rows.append((f"/nix/store/{sp.name}", "sha256:" + h * 2, 1, 4096 * count))
    prof = nix / "var" / "nix" / "profiles"
    prof.mkdir(parents=True)
    (prof / "default-1-link").symlink_to(rows[0][0])
    (prof / "default").symlink_to("default-1-link")
    gc = nix / "var" / "nix" / "gcroots"
    gc.mkdir(parents=True)
    (gc / "profiles").symlink_to("/nix/var/nix/profiles")
    (nix / "var" / "nix" / "temproots").mkdir()
    nsyml += 3
    _write_db(nix / "var" / "nix" / "db", rows)
    freeze_like_image(store)
    os.chmod(store, 0o1775)
    os.utime(store, (1, 1))
    for dirpath, _d, filenames in os.walk(nix / "var"):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (1, 1), follow_symlinks=False)
    return SynthStats(nfiles, nsyml, ndirs, nbytes, nhard, n_paths)


def _write_db(dbdir: Path, rows: list[tuple[str, str, int, int]]) -> None:
    dbdir.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(dbdir / "db.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE ValidPaths (id integer primary key autoincrement not null, path text unique not null,"
                " hash text not null, registrationTime integer not null, deriver text, narSize integer,"
                " ultimate integer, sigs text, ca text)")
    con.execute("CREATE TABLE Refs (referrer integer not null, reference integer not null,"
                " primary key (referrer, reference))")
    con.executemany("INSERT INTO ValidPaths (path, hash, registrationTime, narSize) VALUES (?,?,?,?)", rows)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for extra in ("db.sqlite-wal", "db.sqlite-shm"):
        try:
            os.unlink(dbdir / extra)
        except FileNotFoundError:
            pass
    (dbdir / "big-lock").touch()
    (dbdir / "schema").write_text("10")
