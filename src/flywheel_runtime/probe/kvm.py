"""/dev/kvm: present, the right device, openable, and really answering.

kvm-ok and virt-host-validate look at vmx/svm CPU flags first; a nested guest
can have a working /dev/kvm without them (these machines do), so flags are
reported, never used to reject.  Only the ioctls decide ``usable``.

Under a ``root`` other than ``/`` the node is whatever the tree holds: a
regular file (a captured tree) cannot answer ioctls and is reported as such; a
node mknod'ed 10:232 *is* the host's KVM device wherever the filesystem allows
device nodes, so it is probed for real, never assumed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from flywheel_runtime.probe._access import access_via, group_name
from flywheel_runtime.probe._fs import read_text, rooted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flywheel_runtime.probe._fs import RootLike

# ioctl numbers: _IO(KVMIO=0xAE, nr) from linux/kvm.h.
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_API_VERSION = 12  # fixed since Linux 2.6.22
KVM_MAJOR, KVM_MINOR = 10, 232  # misc device, minor KVM_MINOR in linux/miscdevice.h
# Capabilities a VM job leans on; numbers checked against linux/kvm.h
# (KVM_CAP_IRQCHIP 0 ... KVM_CAP_IMMEDIATE_EXIT 136).
CAPABILITIES = {
    "irqchip": 0, "hlt": 1, "user_memory": 3, "set_tss_addr": 4, "ext_cpuid": 7, "nr_vcpus": 9,
    "nr_memslots": 10, "sync_mmu": 16, "irqfd": 32, "pit2": 33, "ioeventfd": 36, "max_vcpus": 66,
    "immediate_exit": 136,
}
NESTED_PARAMS = ("kvm_intel", "kvm_amd")  # kvm_intel reads Y/N, kvm_amd 1/0


def cpu_flags(root: RootLike = "/") -> list[str]:
    """The virtualisation-related CPU flags (reported only: never a reason to reject)."""
    text = read_text(rooted(root, "/proc/cpuinfo"))
    if text is None:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return sorted(flags & {"vmx", "svm", "hypervisor"})
    return []


def nested(root: RootLike = "/") -> dict[str, Any]:
    """Nested virtualisation as the loaded vendor module reports it."""
    for mod in NESTED_PARAMS:
        raw = read_text(rooted(root, f"/sys/module/{mod}/parameters/nested"))
        if raw is None:
            continue
        raw = raw.strip()
        return {"module": mod, "value": raw, "enabled": raw in ("Y", "y", "1")}
    return {"module": None, "value": None, "enabled": None}


def probe_kvm(root: RootLike = "/") -> dict[str, Any]:
    """Describe /dev/kvm under ``root``; ``usable`` only when the ioctls answered."""
    path = rooted(root, "/dev/kvm")
    out: dict[str, Any] = {"path": "/dev/kvm", "present": False, "usable": False, "api_version": None,
                           "reason": None, "char_device": None, "device_number": None, "group": None,
                           "mode": None, "access_via": None, "accessible": False, "capabilities": {},
                           "vcpu_mmap_size": None, "nested": nested(root), "cpu_flags": cpu_flags(root)}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        out["reason"] = "/dev/kvm does not exist (no KVM in this pod: host passthrough missing?)"
        return out
    except OSError as exc:
        out["reason"] = f"cannot stat /dev/kvm: {exc.strerror}"
        return out
    out["present"] = True
    out["char_device"] = stat.S_ISCHR(st.st_mode)
    out["group"] = group_name(st.st_gid)
    out["mode"] = f"{stat.S_IMODE(st.st_mode):04o}"
    out["access_via"] = access_via(st)
    if not out["char_device"]:
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else "not a device"
        out["reason"] = (f"/dev/kvm is {kind}, not the KVM character device {KVM_MAJOR}:{KVM_MINOR} "
                         "(a captured tree cannot answer KVM ioctls)")
        return out
    out["device_number"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if (os.major(st.st_rdev), os.minor(st.st_rdev)) != (KVM_MAJOR, KVM_MINOR):
        out["reason"] = (f"/dev/kvm is character device {out['device_number']}, "
                         f"not the KVM character device {KVM_MAJOR}:{KVM_MINOR}")
        return out
    try:
        # Non-blocking, and the descriptor checked again: the node stat'ed above
        # may have been swapped (for a FIFO, say) before this open.
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        hint = ""
        if exc.errno in (errno.EACCES, errno.EPERM):
            hint = f" (mode {out['mode']} owner group {out['group']}: add the runner to that group or run as root)"
        out["reason"] = f"/dev/kvm is not openable read-write by uid {os.geteuid()}: {exc.strerror}{hint}"
        return out
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            out["reason"] = "/dev/kvm changed while it was probed (no longer a character device)"
            return out
        out["accessible"] = True
        return _ioctls(fd, out)
    finally:
        os.close(fd)


def _ioctls(fd: int, out: dict[str, Any]) -> dict[str, Any]:
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
    except OSError as exc:
        # ENOTTY: the node opened but no KVM driver answers (e.g. mknod'ed on a host without kvm.ko)
        out["reason"] = f"KVM_GET_API_VERSION failed: {exc.strerror}"
        return out
    out["api_version"] = version
    if version != KVM_API_VERSION:
        out["reason"] = f"KVM API version {version}, expected {KVM_API_VERSION}"
        return out
    for name, cap in CAPABILITIES.items():
        try:
            out["capabilities"][name] = fcntl.ioctl(fd, KVM_CHECK_EXTENSION, cap)
        except OSError:
            out["capabilities"][name] = None
    try:
        out["vcpu_mmap_size"] = fcntl.ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0)
    except OSError:
        pass
    try:
        vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
    except OSError as exc:
        hint = " (is another hypervisor holding VT-x/AMD-V?)" if exc.errno == errno.EBUSY else ""
        out["reason"] = f"KVM_CREATE_VM failed: {exc.strerror}{hint}"
        return out
    os.close(vm)  # a VM fd pins kernel memory: never keep it
    out["usable"] = True
    return out
