"""bench/run.py (`./dev bench`): every bench script's ratios in one table, targets enforced on demand.

Fast: fake bench scripts stand in for the real, slow ones; the real scripts'
``rows()`` are checked on documents shaped as they write them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"t_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FAKE = '''
import json, sys
def rows(doc):
    return [{{"figure": "fake {name}", "ours": "{ours} s", "vs": "peer 1.0 s (peer)", "ratio": {ours},
             "target": "<= 1", "met": {ours} <= 1}}]
if __name__ == "__main__":
    open(sys.argv[sys.argv.index("--json") + 1], "w").write(json.dumps({{}}))
    sys.exit({rc})
'''


def _fakes(tmp_path: Path, **scripts: tuple[float, int]) -> Path:
    for name, (ours, rc) in scripts.items():
        (tmp_path / f"{name}.py").write_text(FAKE.format(name=name, ours=ours, rc=rc))
    (tmp_path / "_helper.py").write_text("raise SystemExit('helpers are not benchmarks')\n")
    return tmp_path


def _run(d: Path, enforce: bool, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLYWHEEL_BENCH_ENFORCE": "1" if enforce else "0"}
    return subprocess.run([sys.executable, str(BENCH / "run.py"), "--dir", str(d), *extra], capture_output=True,
                          text=True, env=env)


def test_one_table_and_a_missed_target_fails_when_enforced(tmp_path: Path) -> None:
    d = _fakes(tmp_path, a_bench=(0.5, 0), b_bench=(1.7, 1))
    res = _run(d, enforce=True)
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["bench", "figure"] and len(lines) == 4  # header, rule, one row each
    assert "fake a_bench" in lines[2] and lines[2].endswith("ok")
    assert "fake b_bench" in lines[3] and lines[3].endswith("MISSED") and "1.70" in lines[3]
    assert "1 target(s) missed" in res.stderr


def test_not_enforced_it_only_warns(tmp_path: Path) -> None:
    res = _run(_fakes(tmp_path, b_bench=(1.7, 1)), enforce=False)
    assert res.returncode == 0 and "MISSED" in res.stdout and "not enforced" in res.stderr


def test_all_met_passes_and_only_picks(tmp_path: Path) -> None:
    d = _fakes(tmp_path, a_bench=(0.5, 0), b_bench=(1.7, 1))
    res = _run(d, True, "--only", "a_bench")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "b_bench" not in res.stdout
    assert _run(d, True, "--only", "nope").returncode == 2


def test_from_prints_the_kept_documents_without_running(tmp_path: Path) -> None:
    d = tmp_path / "scripts"
    d.mkdir()
    _fakes(d, a_bench=(0.5, 0))
    out = tmp_path / "out"
    assert _run(d, True, "--out", str(out)).returncode == 0
    assert (out / "a_bench.json").is_file()
    (out / "a_bench.json").write_text("{}")
    fake = (d / "a_bench.py").read_text()
    (d / "a_bench.py").write_text(fake.replace("sys.exit(", "open(sys.argv[0] + '.ran', 'w'); sys.exit("))
    res = _run(d, True, "--from", str(out))
    assert res.returncode == 0 and "fake a_bench" in res.stdout
    assert not (d / "a_bench.py.ran").exists()


def test_a_script_that_crashes_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "x_bench.py").write_text("def rows(doc):\n    return []\nif __name__ == '__main__':\n"
                                         "    raise SystemExit(3)\n")
    (tmp_path / "y_bench.py").write_text("import no_such_module\n")
    res = _run(tmp_path, enforce=True)
    assert res.returncode == 1 and "NOT RUN: exit 3, wrote no results" in res.stdout
    assert "NOT RUN: cannot import: No module named 'no_such_module'" in res.stdout


def test_every_real_bench_script_reports_rows() -> None:
    run = _load("run")
    names = [p.stem for p in run.scripts(BENCH)]
    assert set(names) == {"arc_motion_bench", "canary_bench", "harness_figures", "kind_figures", "probe_bench",
                          "seed_nix_bench"}
    for n in names:
        assert callable(getattr(_load(n), "rows", None)), n


def test_seed_nix_rows_reject_a_copy_above_the_ceiling() -> None:
    """A copy 'faster than the disk' means the ceiling is not one: that row must fail, not pass."""
    mod = _load("seed_nix_bench")
    peer = {"median_s": 4.0, "all_s": [4.0] * 3, "mb_s": 250.0, "exact": True}
    doc = {"args": {"target_fs": "ext4"}, "write_ceiling_mb_s": 272.0,
           "peers": {"seed-nix": {"median_s": 2.3, "all_s": [2.3] * 3, "mb_s": 468.0, "exact": True},
                     "tar|tar": peer},
           "verdict": {"fastest_peer": "tar|tar", "lead": 1.74, "share_of_ceiling": 1.72}}
    rows = {r["figure"].split(" (")[0]: r for r in mod.rows(doc)}
    ceiling = next(r for f, r in rows.items() if "ceiling" in f)
    assert ceiling["met"] is False and ceiling["ratio"] == 1.72
    lead = next(r for f, r in rows.items() if "tar|tar" in f)
    assert lead["met"] is True and lead["ratio"] == round(2.3 / 4.0, 2) and "(peer)" in lead["vs"]
    doc["verdict"]["share_of_ceiling"] = 0.8
    assert next(r for r in mod.rows(doc) if "ceiling" in r["figure"])["met"] is True


@pytest.mark.parametrize("name", ["probe_bench", "canary_bench"])
def test_vulkaninfo_is_quoted_as_context_not_a_peer(name: str) -> None:
    mod = _load(name)
    if name == "probe_bench":
        doc = {"runs": 40, "targets_ms": mod.TARGETS_MS,
               "results": {"hints": {"median_ms": 89.0}, "vulkaninfo --summary": {"median_ms": 78.0},
                           "import probe": {"median_ms": 16.5}, "python": {"median_ms": 17.5}}}
    else:
        one = {"median_s": 0.3, "min_s": 0.3, "max_s": 0.3, "runs": 5, "exit_codes": [0]}
        doc = {"vulkaninfo --summary": {**one, "median_s": 0.08}, "canary vulkan": one,
               "kvm (in-process)": {**one, "median_s": 0.003}}
    rows = mod.rows(doc)
    quoting = [r for r in rows if "vulkaninfo" in r["vs"]]
    assert quoting and all(r["vs"].endswith("(context)") for r in quoting)
    assert all(r["met"] for r in rows if r["met"] is not None)


def test_arc_motion_table_marks_each_lane_against_its_target() -> None:
    mod = _load("arc_motion_bench")

    def lane(node: str, started: float, pod: float | None = 0.2, **extra: Any) -> dict[str, Any]:
        return {"node": node, "pod_created_s": pod, "started_s": started, "completed_s": started + 1,
                "gone_s": started + 2, **extra}

    doc = {"lanes": {"tinyland-docker": lane("sting", 11.0),
                     "tinyland-nix-compute-expansion": lane("sting", 5.5, seed_nix_s=1.0,
                                                            pod_conditions_s={"PodScheduled": 3.4}),
                     "tinyland-nix warm": lane("honey", 0.05, pod=None, pod_conditions_s={"PodScheduled": -9.0})},
           "install": {"controller_s": 2.6}}
    lines = mod.table(doc).splitlines()
    verdicts = {ln.split()[0]: ln for ln in lines[2:5]}
    assert "MISSED" in verdicts["tinyland-docker"] and "start < 10 s" in verdicts["tinyland-docker"]
    assert " ok " in verdicts["tinyland-nix-compute-expansion"]  # 5.5 s < seed 1 s + 5 s
    # Claims are provisioned before the pod is scheduled: the column shows where a cold start waited
    # (the condition's whole second, so scheduled by its end).
    cells = {ln.split()[0]: re.split(r"\s{2,}", ln) for ln in lines[2:5]}
    assert cells["tinyland-nix-compute-expansion"][2:5] == ["0.20 s", "4.40 s", "5.50 s"]
    assert cells["tinyland-nix"][2:5] == ["-", "-", "0.05 s"]  # the warm pod was scheduled before the queue call
    assert " ok " in verdicts["tinyland-nix"] and " - " in verdicts["tinyland-nix"]  # the warm row: no pod made
    assert lines[-1] == "install: controller_s 2.6"
