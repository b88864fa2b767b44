#!/usr/bin/env python3
"""seed-nix against its peers, side by side, on one store-shaped /nix.

Generates a synthetic store (nixseed.synth: >= 30k files, >= 1 GiB by default,
hardlinks through store/.links, symlinks, WAL db), then for several rounds runs,
interleaved and each into a fresh target on the same filesystem:

    cp -a, rsync -aH, tar -c | tar -x (--numeric-owner), flywheel-runtime seed-nix

Every copy is timed up to and including ``sync -f`` of the target filesystem
(seed-nix syncs by itself; the peers get the same sync so no one's dirty pages
are left out).  Every result is checked exact with nixseed.compare (content
hashes in the first round, metadata after).  The source is read once before
timing so the page cache treats every peer alike (warm).  Also: the raw
sequential-write ceiling of the target disk (dd conv=fdatasync of the store's
size), peak RSS of seed-nix at two store sizes, and the re-run time on a seeded
100k-path target.

    sudo .venv/bin/python bench/seed_nix_bench.py [--files 30000] [--gib 1] [--rounds 3]
        [--source-fs tmpfs|disk] [--workdir /var/tmp/seed-nix-bench] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from flywheel_runtime.nixseed.compare import compare_trees
from flywheel_runtime.nixseed.synth import generate

PEERS = {
    "cp -a": lambda s, d: ["cp", "-a", f"{s}/.", f"{d}/"],
    "rsync -aH": lambda s, d: ["rsync", "-aH", "--numeric-ids", f"{s}/", f"{d}/"],
    "tar|tar": lambda s, d: ["bash", "-c",
                             f"tar -C '{s}' --format=posix -cf - --numeric-owner . | tar -C '{d}' -xpf - --numeric-owner"],
    "seed-nix": lambda s, d: [sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(s),
                              "--target", str(d), "--progress-interval", "0"],
    # One worker: how much of the lead is the second process (not a peer; excluded from "fastest peer").
    "seed-nix -j1": lambda s, d: [sys.executable, "-m", "flywheel_runtime", "seed-nix", "--source", str(s),
                                  "--target", str(d), "--progress-interval", "0", "--jobs", "1"],
}


def _rmtree(path: Path) -> None:
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)


def _run(cmd: list[str], target: Path) -> tuple[float, int]:
    """Seconds until the copy is on disk, and the child's peak RSS in KiB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    subprocess.run(["sync", "-f", str(target)], check=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.read().decode()[-400:]}")
    return dt, ru.ru_maxrss


def _warm(src: Path) -> None:
    subprocess.run(["bash", "-c", f"tar -C '{src}' -cf - . | cat > /dev/null"], check=True)


def _ceiling(workdir: Path, nbytes: int) -> float:
    f = workdir / "ceiling.bin"
    mib = max(nbytes >> 20, 256)
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={f}", "bs=4M", f"count={mib // 4}", "conv=fdatasync"],
                   check=True, capture_output=True)
    dt = time.perf_counter() - t0
    f.unlink()
    return (mib // 4) * 4 * (1 << 20) / dt / 1e6


def _store_bytes(src: Path) -> tuple[int, int]:
    seen, total, files = set(), 0, 0
    for dirpath, _d, names in os.walk(src):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if not os.path.islink(os.path.join(dirpath, n)) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
            files += 1
    return total, files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--source-fs", choices=("tmpfs", "disk"), default="tmpfs",
                    help="tmpfs: the image layer in page cache on another fs (copy_file_range EXDEV, as in a pod)")
    ap.add_argument("--target-fs", choices=("disk", "tmpfs"), default="disk",
                    help="disk: fresh targets under --workdir (the real volume case); tmpfs: CPU cost only")
    ap.add_argument("--workdir", default="/var/tmp/seed-nix-bench")
    ap.add_argument("--rerun-paths", type=int, default=100_000, help="entries in the re-run store (0: skip)")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-peers", action="store_true", help="only peak RSS and the re-run time")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    srcroot = work / "src"
    srcroot.mkdir(exist_ok=True)
    mounted = False
    if args.source_fs == "tmpfs":
        size = int(args.gib * 2.2 * (1 << 30)) + (512 << 20)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(srcroot)], check=True)
        mounted = True
    if args.target_fs == "tmpfs":
        (work / "dst").mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(args.gib * 1.5 * (1 << 30)) + (512 << 20)}",
                        "tmpfs", str(work / "dst")], check=True)
    results: dict = {"args": vars(args)}
    try:
        src = srcroot / "nix"
        t0 = time.perf_counter()
        syn = generate(src, files=args.files, total_bytes=int(args.gib * (1 << 30)))
        small = srcroot / "nix-small"
        generate(small, files=max(args.files // 4, 100), total_bytes=int(args.gib * (1 << 30)) // 4, seed=2)
        nbytes, nentries = _store_bytes(src)
        print(f"store: {syn.files} files ({nentries} non-dir entries), {syn.hardlinks} hardlinks, "
              f"{syn.symlinks} symlinks, {nbytes / 1e6:.0f} MB unique, generated in {time.perf_counter() - t0:.1f}s",
              flush=True)
        results["store"] = {"files": syn.files, "entries": nentries, "hardlinks": syn.hardlinks,
                            "symlinks": syn.symlinks, "bytes": nbytes}
        _warm(src)
        peers = [] if args.no_peers else [p for p in args.peers.split(",") if p]
        times: dict[str, list[float]] = {p: [] for p in peers}
        for rnd in range(args.rounds + 1 if peers else 0):  # round 0 warms every peer, untimed
            order = peers[rnd % len(peers):] + peers[:rnd % len(peers)]  # rotate: nobody always goes first
            for p in order:
                dst = work / "dst" / f"{p.replace(' ', '_').replace('|', '_')}" / "nix"
                _rmtree(dst.parent)
                dst.mkdir(parents=True)
                subprocess.run(["sync", "-f", str(dst)], check=True)  # earlier deletions are nobody's cost
                dt, _rss = _run(PEERS[p](src, dst), dst)
                if rnd == 0:
                    diffs = compare_trees(src, dst, content=True)
                    exact = not diffs
                    results.setdefault("exact", {})[p] = exact if exact else diffs[:3]
                    print(f"  {p:10s} exact={exact}" + ("" if exact else f" first diffs: {diffs[:3]}"),
                          flush=True)
                else:
                    times[p].append(dt)
                    print(f"  round {rnd} {p:10s} {dt:6.2f}s", flush=True)
                _rmtree(dst.parent)
        ceiling = statistics.median(_ceiling(work, nbytes) for _ in range(3))
        base = statistics.median(times["seed-nix"]) if "seed-nix" in times else None
        print(f"\n{'peer':12s} {'median s':>9s} {'x seed-nix':>10s} {'MB/s':>8s} {'files/s':>9s} exact")
        results["peers"] = {}
        for p in peers:
            med = statistics.median(times[p])
            row = {"median_s": round(med, 3), "all_s": [round(t, 3) for t in times[p]],
                   "ratio_to_seed_nix": round(med / base, 2) if base else None,
                   "mb_s": round(nbytes / med / 1e6, 1), "files_s": round(nentries / med),
                   "exact": results["exact"][p] is True}
            results["peers"][p] = row
            print(f"{p:12s} {med:9.2f} {row['ratio_to_seed_nix']!s:>10s} {row['mb_s']:8.1f} {row['files_s']:9d} "
                  f"{row['exact']}")
        results["write_ceiling_mb_s"] = round(ceiling, 1)
        print(f"raw sequential-write ceiling (dd conv=fdatasync): {ceiling:.0f} MB/s")

        rss = {}
        for name, s in (("small", small), ("large", src)):
            dst = work / "rss" / "nix"
            _rmtree(dst.parent)
            dst.mkdir(parents=True)
            # Through /usr/bin/time: a child's ru_maxrss from wait4 would include this
            # (large) bench process's pre-exec image.
            out = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", *PEERS["seed-nix"](s, dst)],
                                 capture_output=True, text=True, check=True)
            kib = int(out.stderr.strip().splitlines()[-1].split("=")[1])
            sb, _ = _store_bytes(s)
            rss[name] = {"store_mb": round(sb / 1e6), "peak_rss_mib": round(kib / 1024, 1)}
            _rmtree(dst.parent)
        results["peak_rss"] = rss
        print(f"seed-nix peak RSS: {rss}")

        if args.rerun_paths:
            rr = srcroot / "nix-100k"
            # ~25% of entries are directories and symlinks: aim the file count so entries reach the goal.
            generate(rr, files=int(args.rerun_paths * 0.8), total_bytes=64 << 20, seed=3, files_per_path=60)
            _b, entries = _store_bytes(rr)
            dirs = sum(len(d) for _p, d, _f in os.walk(rr))
            dst = work / "rerun" / "nix"
            _rmtree(dst.parent)
            dst.mkdir(parents=True)
            first, _ = _run(PEERS["seed-nix"](rr, dst), dst)
            from flywheel_runtime.nixseed import seed

            t0 = time.perf_counter()
            rep = seed(rr, dst, progress_interval=0)
            inproc = time.perf_counter() - t0
            assert rep.skipped
            cli, _ = _run(PEERS["seed-nix"](rr, dst), dst)
            results["rerun"] = {"paths": entries + dirs, "first_seed_s": round(first, 2),
                                "rerun_in_process_s": round(inproc, 4), "rerun_cli_s": round(cli, 3)}
            print(f"re-run on a seeded {entries + dirs}-path target: {inproc * 1000:.1f} ms in process, "
                  f"{cli * 1000:.0f} ms as a CLI process (first seed {first:.1f}s)")
            _rmtree(dst.parent)
    finally:
        if mounted:
            subprocess.run(["umount", str(srcroot)], check=False)
        if args.target_fs == "tmpfs":
            subprocess.run(["umount", str(work / "dst")], check=False)
        _rmtree(work / "dst")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
