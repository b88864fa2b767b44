"""/dev/kvm: present, the right device, openable, and really answering.

kvm-ok and virt-host-validate look at vmx/svm CPU flags first; a nested guest
can have a working /dev/kvm without them (these machines do), so flags are
reported, never used to reject.  Only the ioctls decide ``usable``.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import stat
from pathlib import Path
from typing import Any

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_MAJOR, KVM_MINOR = 10, 232
# Capabilities worth knowing before scheduling a VM job (linux/kvm.h numbers).
CAPABILITIES = {
    "irqchip": 0, "hlt": 1, "user_memory": 3, "set_tss_addr": 4, "ext_cpuid": 7, "nr_vcpus": 9,
    "nr_memslots": 10, "pit2": 33, "max_vcpus": 66, "immediate_exit": 136,
}


def _root(root: str | Path, path: str) -> Path:
    return Path(root) / path.lstrip("/")


def cpu_flags(root: str | Path = "/") -> list[str]:
    try:
        text = _root(root, "/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return sorted(flags & {"vmx", "svm", "hypervisor"})
    return []


def nested(root: str | Path = "/") -> dict[str, Any]:
    for mod in ("kvm_intel", "kvm_amd"):
        p = _root(root, f"/sys/module/{mod}/parameters/nested")
        try:
            raw = p.read_text().strip()
        except OSError:
            continue
        return {"module": mod, "value": raw, "enabled": raw in ("Y", "1")}
    return {"module": None, "value": None, "enabled": None}


def probe_kvm(root: str | Path = "/") -> dict[str, Any]:
    path = _root(root, "/dev/kvm")
    out: dict[str, Any] = {"path": "/dev/kvm", "present": False, "usable": False, "api_version": None,
                           "reason": None, "char_device": None, "device_number": None, "group": None,
                           "accessible": False, "capabilities": {}, "nested": nested(root),
                           "cpu_flags": cpu_flags(root)}
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
    out["device_number"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if out["char_device"] else None
    try:
        out["group"] = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        out["group"] = str(st.st_gid)
    if not out["char_device"] or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (KVM_MAJOR, KVM_MINOR):
        out["reason"] = f"/dev/kvm is not the KVM character device {KVM_MAJOR}:{KVM_MINOR}"
        return out
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        out["reason"] = (f"/dev/kvm is not openable read-write by uid {os.geteuid()} "
                         f"(owner group {out['group']}): {exc.strerror}")
        return out
    out["accessible"] = True
    try:
        try:
            version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        except OSError as exc:
            out["reason"] = f"KVM_GET_API_VERSION failed: {exc.strerror}"
            return out
        out["api_version"] = version
        if version != 12:
            out["reason"] = f"KVM API version {version}, expected 12"
            return out
        for name, cap in CAPABILITIES.items():
            try:
                out["capabilities"][name] = fcntl.ioctl(fd, KVM_CHECK_EXTENSION, cap)
            except OSError:
                out["capabilities"][name] = None
        try:
            vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        except OSError as exc:
            hint = " (is another hypervisor holding VT-x?)" if exc.errno == errno.EBUSY else ""
            out["reason"] = f"KVM_CREATE_VM failed: {exc.strerror}{hint}"
            return out
        os.close(vm)
        out["usable"] = True
        return out
    finally:
        os.close(fd)
