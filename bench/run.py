#!/usr/bin/env python3
"""Run every bench/*.py comparison and print one table of ratios (what `./dev bench` runs).

Each script in this directory (except this one and ``_*.py``) runs its own
side-by-side comparison and writes a JSON document; its ``rows(doc)`` turns
that document into table rows: the figure, ours, what it is compared with
(a peer doing the same work, a floor, or context), the ratio (ours over
theirs: time, or bytes per second for ceilings), the target and whether it
was met.

With ``FLYWHEEL_BENCH_ENFORCE=1`` (``./dev bench`` sets it) a missed target, a
failed script or one that could not run exits 1; otherwise misses only warn
(the default suite and CI stay warning-only).

    .venv/bin/python bench/run.py [--only probe_bench,canary_bench] [--out DIR | --from DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
COLUMNS = ("bench", "figure", "ours", "compared with", "ratio", "target", "")


def scripts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_") and p.name != "run.py")


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_one(path: Path, out_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Run one script; its rows, and why it failed (None when it ran)."""
    try:
        mod = _module(path)
    except Exception as exc:  # a broken script is a failed benchmark, not a crash of the table
        return [], f"cannot import: {exc}"
    if not hasattr(mod, "rows"):
        return [], "has no rows(doc): cannot report its ratios"
    if getattr(mod, "NEEDS_ROOT", False) and os.geteuid() != 0:
        return [], "needs root (mounts, store owners): not run"
    doc_path = out_dir / f"{path.stem}.json"
    stdout_json = getattr(mod, "JSON_STDOUT", False)
    cmd = [sys.executable, str(path), "--json"] + ([] if stdout_json else [str(doc_path)])
    print(f"==> {path.name}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if stdout_json else None, text=True)
    if stdout_json and proc.stdout:
        doc_path.write_text(proc.stdout)
    if not doc_path.is_file():
        return [], f"exit {proc.returncode}, wrote no results"
    rows = mod.rows(json.loads(doc_path.read_text()))
    # A script's own non-zero exit (probe and canary exit 1 on a miss) shows in its rows;
    # anything else it reports is a failure of the script.
    failed = proc.returncode != 0 and not any(r.get("met") is False for r in rows)
    return rows, (f"exit {proc.returncode}" if failed else None)


def saved(path: Path, from_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a document an earlier run kept (``--out``)."""
    return _module(path).rows(json.loads((from_dir / f"{path.stem}.json").read_text())), None


def table(results: dict[str, tuple[list[dict[str, Any]], str | None]]) -> tuple[str, int]:
    """The one table, and how many targets were missed or scripts failed."""
    lines, bad = [], 0
    cells: list[tuple[str, ...]] = []
    for name, (rows, error) in results.items():
        if error:
            bad += 1
            cells.append((name, f"NOT RUN: {error}", "", "", "", "", "FAILED"))
        for r in rows:
            verdict = "" if r.get("met") is None else ("ok" if r["met"] else "MISSED")
            bad += r.get("met") is False
            ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
            cells.append((name, r["figure"], r["ours"], r["vs"], ratio, r.get("target") or "", verdict))
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    for c in [COLUMNS, *cells]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated script names (stems), default: all")
    ap.add_argument("--out", type=Path, default=None, help="keep each script's JSON here")
    ap.add_argument("--from", dest="from_dir", type=Path, default=None,
                    help="run nothing: print the table from the JSON documents an earlier --out kept")
    ap.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)  # tests point this at fakes
    args = ap.parse_args(argv)
    enforce = os.environ.get("FLYWHEEL_BENCH_ENFORCE") == "1"
    chosen = scripts(args.dir)
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {p.stem for p in chosen}
        if unknown:
            print(f"bench: no such benchmark: {', '.join(sorted(unknown))} "
                  f"(have: {', '.join(p.stem for p in chosen)})", file=sys.stderr)
            return 2
        chosen = [p for p in chosen if p.stem in want]
    if args.from_dir:
        results = {p.stem: saved(p, args.from_dir) for p in chosen if (args.from_dir / f"{p.stem}.json").is_file()}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = args.out or Path(tmp)
            out_dir.mkdir(parents=True, exist_ok=True)
            results = {p.stem: run_one(p, out_dir) for p in chosen}
    text, bad = table(results)
    print(text)
    if bad:
        print(f"bench: {bad} target(s) missed or benchmark(s) failed"
              + ("" if enforce else " (not enforced: FLYWHEEL_BENCH_ENFORCE=1 fails on them)"), file=sys.stderr)
    return 1 if bad and enforce else 0


if __name__ == "__main__":
    raise SystemExit(main())
