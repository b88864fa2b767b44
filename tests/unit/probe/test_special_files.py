"""Issue 19: what the probe reads under --root / FLYWHEEL_ROOT may be anything.

A FIFO where a file belongs must not hang `hints` (nothing would ever write
to it); a manifest nested deeper than the JSON parser goes, or a name that is
not UTF-8, must not end in a traceback.  Each case runs the real command
with a deadline: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEADLINE = 30  # seconds; the command itself takes well under one


def _hints(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "flywheel_runtime", "hints", *args],
                              env={**os.environ, **(env or {})}, capture_output=True, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hints {' '.join(args)} hung (a FIFO was opened for reading)")


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


# Every file the probes read, as the pod sees it.
READ_PATHS = ("proc/cpuinfo", "sys/module/kvm_intel/parameters/nested", "proc/driver/nvidia/version",
              "usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "nix/.flywheel-seed.json",
              "sys/devices/pci0000:00/0000:01:00.0/vendor", "sys/devices/pci0000:00/0000:01:00.0/uevent")


@pytest.mark.parametrize("rel", READ_PATHS)
def test_a_fifo_under_the_probe_root_never_hangs_hints(tmp_path: Path, rel: str) -> None:
    root = tmp_path / "root"
    _fifo(root / rel)
    if rel.startswith("sys/devices"):  # a DRI node whose sysfs description is a FIFO
        (root / "dev" / "dri").mkdir(parents=True)
        (root / "dev" / "dri" / "renderD128").write_text("")
        (root / "sys" / "class" / "drm" / "renderD128").mkdir(parents=True)
        (root / "sys" / "class" / "drm" / "renderD128" / "device").symlink_to(root / "sys/devices/pci0000:00/0000:01:00.0")
    out = _hints("--root", str(root))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    if rel == "proc/cpuinfo":
        assert doc["kvm"]["cpu_flags"] == []
    if rel.endswith(".json") and "icd.d" in rel:
        assert "not a regular file" in doc["vulkan"]["icds"][0]["error"]
    if rel.endswith(".flywheel-seed.json"):
        assert doc["nix"]["seed_state"] == "unreadable"


def test_a_fifo_everywhere_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in READ_PATHS:
        _fifo(root / rel)
    assert _hints("--root", str(root), "--format", "markdown").returncode == 0


def test_an_icd_manifest_nested_deeper_than_the_parser_goes_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    icd = root / "usr" / "share" / "vulkan" / "icd.d"
    icd.mkdir(parents=True)
    (icd / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (icd / "lvp.json").write_text(json.dumps({"ICD": {"library_path": "libvulkan_lvp.so", "api_version": "1.3"}}))
    out = _hints("--root", str(root))
    assert out.returncode == 0, out.stderr[-500:]
    icds = {Path(i["manifest"]).name: i for i in json.loads(out.stdout)["vulkan"]["icds"]}
    assert "nested too deeply" in icds["deep.json"]["error"]
    assert icds["lvp.json"]["library_path"] == "libvulkan_lvp.so"  # the others are still read


def test_a_seed_stamp_nested_too_deeply_is_unreadable_not_a_traceback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "nix").mkdir(parents=True)
    (root / "nix" / ".flywheel-seed.json").write_text("{\"a\":" * 100_000 + "1" + "}" * 100_000)
    out = _hints("--root", str(root))
    assert out.returncode == 0, out.stderr[-500:]
    assert json.loads(out.stdout)["nix"]["seed_state"] == "unreadable"


def test_names_that_are_not_utf8_are_printed_escaped(tmp_path: Path) -> None:
    """os.environ holds b'\\xff' as a surrogate: printing it strictly raised UnicodeEncodeError."""
    env = {"FLYWHEEL_RUNNER_CLASS": "runner-\udcff", "PYTHONIOENCODING": "utf-8:strict"}
    root = tmp_path / "root"
    root.mkdir()
    for fmt in ("markdown", "json", "env"):
        out = _hints("--root", str(root), "--format", fmt, env=env)
        assert out.returncode == 0, out.stderr[-500:]
    missing = _hints("--root", os.fsdecode(bytes(tmp_path) + b"/no-\xff"), env=env)
    assert missing.returncode == 7 and len(missing.stderr.splitlines()) == 1, missing.stderr


def test_a_render_node_swapped_for_a_fifo_is_not_a_device(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _fifo(root / "dev" / "dri" / "renderD128")
    _fifo(root / "dev" / "kvm")
    out = _hints("--root", str(root))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["dri"]["devices"][0]["char_device"] is False and doc["kvm"]["usable"] is False
