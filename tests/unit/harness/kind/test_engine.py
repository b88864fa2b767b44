"""engine.py without an engine: the capability arithmetic, the runc wrapper, sysctl records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.errors import ClusterError
from flywheel_runtime.harness.kind import engine


def _status(bnd: int) -> str:
    return f"Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t{bnd:016x}\nCapAmb:\t0000000000000000\n"


def _last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def test_missing_capabilities_reads_the_bounding_set() -> None:
    full = (1 << (_last_cap() + 1)) - 1
    assert engine.missing_capabilities(_status(full)) == []
    sys_resource = engine.CAPABILITIES.index("CAP_SYS_RESOURCE")
    assert engine.missing_capabilities(_status(full & ~(1 << sys_resource))) == ["CAP_SYS_RESOURCE"]
    two = full & ~(1 << 0) & ~(1 << engine.CAPABILITIES.index("CAP_BPF"))
    assert engine.missing_capabilities(_status(two)) == ["CAP_CHOWN", "CAP_BPF"]
    with pytest.raises(ClusterError, match="CapBnd"):
        engine.missing_capabilities("Name:\tx\n")


def test_capability_table_is_the_kernels() -> None:
    # The names are indexed by bit number: a kernel that knows more than we list would go unchecked.
    assert _last_cap() < len(engine.CAPABILITIES)
    assert engine.CAPABILITIES[21] == "CAP_SYS_ADMIN" and engine.CAPABILITIES[24] == "CAP_SYS_RESOURCE"


@pytest.fixture()
def wrapper(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "record.json"
    fake = tmp_path / "fake-runc"
    fake.write_text(f"""#!{sys.executable}
import json, sys, os
args = sys.argv[1:]
spec = None
if "--bundle" in args:
    spec = json.load(open(os.path.join(args[args.index("--bundle") + 1], "config.json")))
if "--process" in args:
    spec = json.load(open(args[args.index("--process") + 1]))
json.dump({{"args": args, "spec": spec}}, open({str(record)!r}, "w"))
""")
    fake.chmod(0o755)
    w = engine.write_runc_wrapper(tmp_path / "runc-wrapper", str(fake))
    return w, record


ALL_CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]


def test_runc_wrapper_drops_exactly_the_missing_capabilities(wrapper: tuple[Path, Path], tmp_path: Path) -> None:
    w, record = wrapper
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    caps = {k: list(ALL_CAPS) for k in ("bounding", "effective", "permitted")}
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": caps, "args": ["sh"]}}))
    subprocess.run([str(w), "--root", "/run/x", "create", "--bundle", str(bundle), "ctr1"], check=True)
    got = json.loads(record.read_text())
    assert got["args"] == ["--root", "/run/x", "create", "--bundle", str(bundle), "ctr1"]
    missing = set(engine.missing_capabilities())
    want = [c for c in ALL_CAPS if c not in missing]
    assert all(v == want for v in got["spec"]["process"]["capabilities"].values())
    assert got["spec"]["process"]["args"] == ["sh"]


def test_runc_wrapper_edits_exec_process_files(wrapper: tuple[Path, Path], tmp_path: Path) -> None:
    w, record = wrapper
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["ls"], "capabilities": {"bounding": list(ALL_CAPS)}}))
    subprocess.run([str(w), "exec", "--process", str(proc), "ctr1"], check=True)
    got = json.loads(record.read_text())
    missing = set(engine.missing_capabilities())
    assert got["spec"]["capabilities"]["bounding"] == [c for c in ALL_CAPS if c not in missing]


def test_runc_wrapper_passes_other_commands_through(wrapper: tuple[Path, Path]) -> None:
    w, record = wrapper
    subprocess.run([str(w), "--version"], check=True)
    assert json.loads(record.read_text()) == {"args": ["--version"], "spec": None}


def test_sysctls_are_read_and_an_unchanged_write_touches_nothing() -> None:
    now = engine.read_sysctls()
    assert "kernel.panic" in now and "vm.overcommit_memory" in now
    assert engine.write_sysctls(now) == []
    assert engine.read_sysctls() == now


def test_no_engine_on_an_empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert engine.answers(None) is False
    with pytest.raises(ClusterError, match="docker.io"):
        engine.start(tmp_path)
    assert engine.stop(tmp_path) is False  # nothing started, nothing to undo


@pytest.mark.skipif(os.geteuid() != 0, reason="reading ip(6)tables needs root")
def test_guard_absent_without_a_kind_network() -> None:
    assert engine.guard_present("flywheel-nonexistent0") is False
