"""KVM canary against the real /dev/kvm."""

from __future__ import annotations

import struct

import pytest

from flywheel_runtime.canary import kvm
from flywheel_runtime.canary.report import Report
from flywheel_runtime.errors import DeviceAbsentError

pytestmark = pytest.mark.kvm


def test_guest_computes_the_sum_of_a_fresh_input() -> None:
    a = kvm.run_guest(n=1000, k=0x5A5A)
    assert a.exits == ("IO", "HLT")
    assert (a.port, a.io_size) == (kvm.RESULT_PORT, 2)
    assert a.io_value == a.memory_value == ((1000 * 1001 // 2) ^ 0x5A5A) & 0xFFFF
    assert a.rip == kvm.CODE_ADDR + len(kvm.GUEST_CODE)
    b = kvm.run_guest(n=65535, k=0)  # wraps: only a guest that looped 65535 times gets this
    assert b.io_value == (65535 * 65536 // 2) & 0xFFFF


def test_random_inputs_differ_between_runs() -> None:
    runs = [kvm.run_guest() for _ in range(5)]
    assert len({(r.n, r.k) for r in runs}) > 1
    assert all(r.io_value == r.expected for r in runs)


def test_checks_fail_on_a_wrong_value() -> None:
    good = kvm.run_guest(n=7)
    r = Report("kvm")
    kvm.check_guest(r, kvm.GuestResult(**{**good.__dict__, "io_value": good.expected ^ 1}))
    r.finish()
    assert r.status == "failed" and "guest sum on port" in r.reason


def test_missing_device_is_absent(tmp_path) -> None:
    with pytest.raises(DeviceAbsentError, match="does not exist"):
        kvm.run_guest(str(tmp_path / "kvm"))


def test_cli_pass_json(cli) -> None:
    run = cli("canary", "kvm", "--json")
    assert run.rc == 0, run.stderr
    doc = run.doc
    assert doc["status"] == "passed" and doc["adapter"]["backend"] == "kvm"
    assert [c["name"] for c in doc["checks"] if c["passed"]] == [c["name"] for c in doc["checks"]]
    assert doc["timings"]["guest_round_trip"] > 0


def test_cli_missing_device_exit_6(cli, tmp_path) -> None:
    run = cli("canary", "kvm", "--device", str(tmp_path / "kvm"))
    assert run.rc == 6
    assert run.error_lines == [f"flywheel-runtime: KVM device {tmp_path / 'kvm'} does not exist: the node has no "
                               "KVM or /dev/kvm is not passed into the pod"]


def test_cli_not_a_kvm_device_exit_6(cli) -> None:
    run = cli("canary", "kvm", "--device", "/dev/null")
    assert run.rc == 6 and "/dev/null is not a KVM device" in run.stderr


def test_boot_sector_layout() -> None:
    s = kvm.boot_sector(1234)
    assert len(s) == 512 and s[510:] == b"\x55\xaa"
    assert struct.unpack_from("<H", s, kvm.BOOT_N_OFFSET)[0] == 1234
    assert kvm.SERIAL_MARKER in s


def test_qemu_boots_our_sector_with_kvm(cli) -> None:
    run = cli("canary", "kvm", "--qemu", "--json")
    assert run.rc == 0, run.stderr
    checks = {c["name"]: c for c in run.doc["checks"]}
    assert checks["qemu serial value"]["passed"] and checks["qemu -accel kvm debug-exit code"]["passed"]


def test_qemu_refuses_a_non_default_device(tmp_path) -> None:
    from flywheel_runtime.errors import UnsupportedError
    with pytest.raises(UnsupportedError):
        kvm.run_qemu(Report("kvm"), str(tmp_path / "kvm"))
