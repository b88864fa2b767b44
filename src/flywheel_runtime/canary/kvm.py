"""KVM canary: run a real guest through /dev/kvm and check what it computed.

Pure Python (fcntl, ctypes, mmap).  The guest is a few bytes of 16-bit real-mode
code: it reads a per-run random ``n`` and key ``k`` from guest memory, sums 1..n,
xors in k, stores the result back into guest memory, writes it to an I/O port and
halts.  The host checks
the exit reasons (KVM_EXIT_IO, then KVM_EXIT_HLT), the port, the value on the
port and the value in guest memory; none can be right unless the guest ran.

``--qemu`` additionally boots qemu-system-x86_64 with ``-accel kvm`` on a boot
sector of our own that prints a per-run value on the serial port and leaves
through isa-debug-exit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel_runtime.canary.report import Adapter, Report
from flywheel_runtime.errors import DeviceAbsentError, PermissionDeniedError, UnsupportedError

DEFAULT_DEVICE = "/dev/kvm"

# linux/kvm.h ioctl numbers (x86_64); the _IOW/_IOR ones encode the struct size.
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46  # struct kvm_userspace_memory_region, 32 bytes
KVM_SET_TSS_ADDR = 0xAE47
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81  # struct kvm_regs, 144 bytes
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83  # struct kvm_sregs, 312 bytes
KVM_SET_SREGS = 0x4138AE84
KVM_API_VERSION = 12
KVM_CAP_USER_MEMORY = 3

EXIT_REASONS = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
                8: "SHUTDOWN", 9: "FAIL_ENTRY", 17: "INTERNAL_ERROR"}
KVM_EXIT_IO, KVM_EXIT_HLT = 2, 5
KVM_EXIT_IO_OUT = 1

GUEST_MEM_SIZE = 0x10000  # 64 KiB at guest physical 0
CODE_ADDR = 0x1000
DATA_ADDR = 0x2000  # n (u16) at +0, the guest's result at +2, k (u16) at +4
# n stays small: on a nested host real-mode code may be emulated instruction by
# instruction, so a 65535-pass loop costs ~100 ms; the random key keeps the
# answer space at 2^16 anyway.
MAX_N = 1024
RESULT_PORT = 0x10F
# Real-mode guest (verified with `as --32` + objdump -M i8086):
#   mov bx,0x2000; mov cx,[bx]; xor ax,ax; l: add ax,cx; loop l; xor ax,[bx+4];
#   mov [bx+2],ax; mov dx,0x10f; out dx,ax; hlt
GUEST_CODE = bytes.fromhex("bb0020" "8b0f" "31c0" "01c8" "e2fc" "334704" "894702" "ba0f01" "ef" "f4")
TSS_ADDR = 0xFFFBD000  # three pages below 4 GiB, outside guest RAM; needed on Intel hosts


def expected_sum(n: int, k: int = 0) -> int:
    return ((n * (n + 1) // 2) ^ k) & 0xFFFF


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int


def _ioctl(fd: int, request: int, arg: int | ctypes.Array | None = 0, what: str = "") -> int:
    """ioctl through libc so unsigned-long arguments (addresses) and buffers both work."""
    if isinstance(arg, ctypes.Array):
        ptr = ctypes.cast(arg, ctypes.c_void_p)
    else:
        ptr = ctypes.c_void_p(arg or 0)
    rc = _libc.ioctl(fd, request, ptr)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what or hex(request)}: {os.strerror(err)}")
    return rc


@dataclass(frozen=True)
class GuestResult:
    n: int
    k: int
    expected: int
    exits: tuple[str, ...]
    port: int | None
    io_size: int | None
    io_value: int | None
    memory_value: int
    api_version: int
    rip: int


def _open_device(device: str) -> int:
    try:
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeviceAbsentError(f"KVM device {device} does not exist: the node has no KVM or /dev/kvm is not "
                                "passed into the pod") from None
    except PermissionError:
        raise PermissionDeniedError(f"cannot open KVM device {device}: permission denied (need rw on it, "
                                    "usually root or the kvm group)") from None
    except OSError as exc:
        raise DeviceAbsentError(f"cannot open KVM device {device}: {exc.strerror}") from None


def run_guest(device: str = DEFAULT_DEVICE, n: int | None = None, k: int | None = None) -> GuestResult:
    """Create a VM with one vCPU, run the guest to HLT, and return what it did."""
    rng = random.SystemRandom()
    n = rng.randrange(1, MAX_N + 1) if n is None else n
    k = rng.randrange(0x10000) if k is None else k
    if not 1 <= n <= 0xFFFF or not 0 <= k <= 0xFFFF:
        raise ValueError("n must be in 1..65535 and k in 0..65535")
    kvm = _open_device(device)
    vm = vcpu = -1
    mem: mmap.mmap | None = None
    run: mmap.mmap | None = None
    try:
        try:
            api = _ioctl(kvm, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        except OSError as exc:
            raise DeviceAbsentError(f"{device} is not a KVM device ({exc.strerror})") from None
        if api != KVM_API_VERSION:
            raise UnsupportedError(f"{device}: KVM API version {api}, this canary speaks {KVM_API_VERSION}")
        if _ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY, "KVM_CHECK_EXTENSION") <= 0:
            raise UnsupportedError(f"{device}: KVM_CAP_USER_MEMORY missing")
        vm = _ioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM")
        _ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR, "KVM_SET_TSS_ADDR")

        mem = mmap.mmap(-1, GUEST_MEM_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)
        mem[CODE_ADDR:CODE_ADDR + len(GUEST_CODE)] = GUEST_CODE
        struct.pack_into("<HHH", mem, DATA_ADDR, n, 0, k)
        host_addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        region = (ctypes.c_char * 32).from_buffer_copy(struct.pack("=IIQQQ", 0, 0, 0, GUEST_MEM_SIZE, host_addr))
        _ioctl(vm, KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")

        vcpu = _ioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")
        run_size = _ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
        run = mmap.mmap(vcpu, run_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)

        # Real mode, flat: CS base 0 / selector 0 so that IP is the physical address.
        sregs = (ctypes.c_char * 312)()
        _ioctl(vcpu, KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        buf = bytearray(sregs.raw)
        struct.pack_into("<Q", buf, 0, 0)  # cs.base (cs is the first 24-byte segment)
        struct.pack_into("<H", buf, 12, 0)  # cs.selector
        sregs = (ctypes.c_char * 312).from_buffer_copy(bytes(buf))
        _ioctl(vcpu, KVM_SET_SREGS, sregs, "KVM_SET_SREGS")
        regs = bytearray(144)
        struct.pack_into("<QQ", regs, 128, CODE_ADDR, 0x2)  # rip, rflags (bit 1 is reserved-set)
        _ioctl(vcpu, KVM_SET_REGS, (ctypes.c_char * 144).from_buffer_copy(bytes(regs)), "KVM_SET_REGS")

        exits: list[str] = []
        port = size = value = None
        for _ in range(8):  # the guest needs exactly two exits; more means it went astray
            _ioctl(vcpu, KVM_RUN, 0, "KVM_RUN")
            reason = struct.unpack_from("<I", run, 8)[0]
            exits.append(EXIT_REASONS.get(reason, str(reason)))
            if reason == KVM_EXIT_IO:
                direction, size, port, count, off = struct.unpack_from("=BBHIQ", run, 32)
                if direction == KVM_EXIT_IO_OUT and count == 1 and size in (1, 2, 4):
                    value = int.from_bytes(run[off:off + size], "little")
                continue
            break
        out_regs = (ctypes.c_char * 144)()
        _ioctl(vcpu, KVM_GET_REGS, out_regs, "KVM_GET_REGS")
        rip = struct.unpack_from("<Q", out_regs.raw, 128)[0]
        memory_value = struct.unpack_from("<H", mem, DATA_ADDR + 2)[0]
        return GuestResult(n, k, expected_sum(n, k), tuple(exits), port, size, value, memory_value, api, rip)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDeniedError(f"{device}: {exc.strerror}") from None
        raise DeviceAbsentError(f"{device} does not run guests: {exc.strerror}") from None
    finally:
        for m in (run, mem):
            if m is not None:
                try:
                    m.close()
                except BufferError:  # a ctypes view is still alive; the GC frees it
                    pass
        for fd in (vcpu, vm, kvm):
            if fd >= 0:
                os.close(fd)


def check_guest(report: Report, r: GuestResult) -> None:
    report.check("exit sequence IO, HLT", r.exits == ("IO", "HLT"), f"exits: {', '.join(r.exits) or 'none'}")
    report.check("io port", r.port == RESULT_PORT and r.io_size == 2,
                 f"port {r.port:#x} size {r.io_size}" if r.port is not None else "no port write")
    report.check("guest sum on port", r.io_value == r.expected,
                 f"(sum(1..{r.n}) xor {r.k}) mod 2^16: guest wrote {r.io_value}, expected {r.expected}")
    report.check("guest sum in memory", r.memory_value == r.expected,
                 f"guest memory holds {r.memory_value}, expected {r.expected}")
    halt_rip = CODE_ADDR + len(GUEST_CODE)
    report.check("halted at end of code", r.rip == halt_rip, f"rip {r.rip:#x}, expected {halt_rip:#x}")


# --- qemu ---------------------------------------------------------------------

DEBUG_EXIT_PORT = 0xF4
DEBUG_EXIT_CODE = 0x21  # qemu exits with (code << 1) | 1 = 67
SERIAL_MARKER = b"FLYWHEEL-KVM:"
BOOT_N_OFFSET = 0x1FC  # where the per-run n lives inside the boot sector


def boot_sector(n: int) -> bytes:
    """A 512-byte boot sector: prints FLYWHEEL-KVM:<sum(1..n) mod 2^16 as 4 hex digits> to COM1 and exits.

    Hand-assembled 16-bit code, loaded by the BIOS at 0x7C00 (checked with
    ``as --32`` / ``objdump -M i8086``).
    """
    marker_addr = 0x7C00 + 0x100
    code = bytearray()
    code += bytes.fromhex("fa" "fc" "31c0" "8ed8")  # cli; cld; xor ax,ax; mov ds,ax
    code += b"\xbe" + struct.pack("<H", marker_addr)  # mov si, marker
    code += bytes.fromhex("baf803")  # mov dx,0x3f8
    # print loop: lodsb; test al,al; jz done; out dx,al; jmp loop
    code += bytes.fromhex("ac" "84c0" "7403" "ee" "ebf8")
    code += b"\x8b\x0e" + struct.pack("<H", 0x7C00 + BOOT_N_OFFSET)  # mov cx,[n]
    code += bytes.fromhex("31c0" "01c8" "e2fc" "89c3")  # xor ax,ax; l: add ax,cx; loop l; mov bx,ax
    # four hex digits: mov si,4; p: rol bx,4; mov al,bl; and al,0xf; add al,'0'; cmp al,'9'; jbe s;
    # add al,7; s: out dx,al; dec si; jnz p
    code += bytes.fromhex("be0400" "c1c304" "88d8" "240f" "0430" "3c39" "7602" "0407" "ee" "4e" "75ed")
    code += bytes.fromhex("b00a" "ee")  # mov al,'\n'; out dx,al
    code += bytes([0xB0, DEBUG_EXIT_CODE, 0xE6, DEBUG_EXIT_PORT])  # mov al,code; out 0xf4,al
    code += bytes.fromhex("f4" "ebfd")  # hlt; jmp hlt (only reached without isa-debug-exit)
    sector = bytearray(512)
    sector[: len(code)] = code
    sector[0x100: 0x100 + len(SERIAL_MARKER) + 1] = SERIAL_MARKER + b"\0"
    struct.pack_into("<H", sector, BOOT_N_OFFSET, n)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def run_qemu(report: Report, device: str = DEFAULT_DEVICE, qemu: str | None = None, timeout: float = 60.0) -> None:
    exe = qemu or shutil.which("qemu-system-x86_64")
    if not exe:
        raise UnsupportedError("--qemu: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if device != DEFAULT_DEVICE:
        # qemu always opens /dev/kvm; a different --device cannot be honoured there
        raise UnsupportedError(f"--qemu only works with {DEFAULT_DEVICE}, not {device}")
    n = random.SystemRandom().randrange(1, 0x10000)
    want = f"{expected_sum(n):04X}"
    with tempfile.TemporaryDirectory(prefix="flywheel-qemu-") as tmp:
        img = Path(tmp, "boot.img")
        img.write_bytes(boot_sector(n))
        serial = Path(tmp, "serial.out")
        cmd = [exe, "-accel", "kvm", "-machine", "pc", "-m", "32", "-nodefaults", "-display", "none",
               "-no-reboot", "-serial", f"file:{serial}",
               "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x01",
               "-drive", f"if=ide,format=raw,file={img}"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            report.timings["qemu"] = round(time.perf_counter() - t0, 6)
            report.check("qemu guest exited", False, f"qemu did not exit within {timeout:.0f} s")
            return
        report.timings["qemu"] = round(time.perf_counter() - t0, 6)
        out = serial.read_bytes() if serial.exists() else b""
    stderr = proc.stderr.strip().splitlines()
    if proc.returncode == 1 and any("kvm" in line.lower() for line in stderr):
        raise DeviceAbsentError(f"qemu -accel kvm failed: {stderr[-1]}")
    report.check("qemu -accel kvm debug-exit code", proc.returncode == (DEBUG_EXIT_CODE << 1) | 1,
                 f"exit status {proc.returncode}, expected {(DEBUG_EXIT_CODE << 1) | 1}"
                 + (f"; stderr: {stderr[-1]}" if stderr and proc.returncode != (DEBUG_EXIT_CODE << 1) | 1 else ""))
    line = out.split(SERIAL_MARKER, 1)[1].split(b"\n", 1)[0].decode(errors="replace") if SERIAL_MARKER in out else ""
    report.check("qemu serial value", line == want,
                 f"serial printed {line!r}, expected {want!r} (sum(1..{n}) mod 2^16)" if line else
                 f"no {SERIAL_MARKER.decode()} line on the serial port ({len(out)} bytes)")


def cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def canary(device: str = DEFAULT_DEVICE, *, with_qemu: bool = False, report: Report | None = None) -> Report:
    report = report or Report("kvm")
    report.adapter = Adapter(vendor=cpu_vendor(), device=device, backend="kvm", type="hypervisor",
                             driver=f"KVM API {KVM_API_VERSION}", kind="hardware")
    with report.timed("guest_round_trip"):
        r = run_guest(device)
    report.adapter.driver = f"KVM API {r.api_version}"
    check_guest(report, r)
    if with_qemu:
        run_qemu(report, device)
    return report.finish()


__all__ = ["canary", "run_guest", "check_guest", "boot_sector", "run_qemu"]
