"""/dev/dri cards and render nodes, described from sysfs.

The GPU lane passes the host's /dev/dri through (no device plugin), so what a
job can use is exactly what this finds: each node's PCI identity from
/sys/class/drm/<name>/device, its kernel driver, and whether this process may
open it read-write.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from flywheel_runtime.probe._access import access_via, group_name
from flywheel_runtime.probe._fs import read_text, rooted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flywheel_runtime.probe._fs import RootLike

# PCI vendor ids (lower-case, as sysfs writes them) of the GPUs a runner may meet.
VENDORS = {
    "0x10de": "NVIDIA", "0x1002": "AMD", "0x1022": "AMD", "0x8086": "Intel", "0x1af4": "virtio",
    "0x1234": "QEMU/bochs", "0x15ad": "VMware", "0x1a03": "ASPEED", "0x1b36": "Red Hat (QXL)",
    "0x102b": "Matrox", "0x5143": "Qualcomm", "0x13b5": "ARM", "0x1d17": "Zhaoxin", "0x1ed5": "Moore Threads",
}
NODE_RE = re.compile(r"(card|renderD)(\d+)")
# A node with no driver behind it (a bare mknod, an unbound device) answers
# its open with these: the permission may be there, the hardware is not.
NO_DRIVER_ERRNOS = (errno.ENXIO, errno.ENODEV)


def usable(dev: dict[str, Any]) -> bool:
    """The one decision, shared by the hints (FLYWHEEL_DRI) and the job gate: this
    process opened the node read-write and a kernel driver is bound to it in sysfs.
    A node whose open answers ENXIO/ENODEV was never opened, so it is not usable."""
    return bool(dev.get("accessible") and dev.get("driver"))


def _read(p: str) -> str | None:
    text = read_text(p, limit=4096)
    return None if text is None else text.strip()


def _link_name(p: str) -> str | None:
    try:
        return os.path.basename(os.readlink(p).rstrip("/"))
    except OSError:
        return None


def _open_check(path: str) -> tuple[bool, str | None]:
    """(did this process open it read-write, the error of the real attempt)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno in NO_DRIVER_ERRNOS:
            return False, f"{exc.strerror} (no driver behind the node)"
        return False, exc.strerror
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):  # swapped since it was stat'ed
            return False, "not a character device"
    finally:
        os.close(fd)
    return True, None


def describe(root: RootLike, name: str) -> dict[str, Any] | None:
    """One /dev/dri node, or None when it vanished or is not a DRM node name."""
    m = NODE_RE.fullmatch(name)
    if not m:
        return None
    path = rooted(root, f"/dev/dri/{name}")
    try:
        st = os.stat(path)
    except OSError:
        return None
    sysdev = rooted(root, f"/sys/class/drm/{name}/device")
    vendor_id, device_id = _read(f"{sysdev}/vendor"), _read(f"{sysdev}/device")
    slot = None
    for line in (_read(f"{sysdev}/uevent") or "").splitlines():
        if line.startswith("PCI_SLOT_NAME="):
            slot = line.split("=", 1)[1]
    if slot is None:  # non-PCI (platform) devices have no PCI_SLOT_NAME: the device dir names it
        slot = os.path.basename(os.path.realpath(sysdev)) if os.path.exists(sysdev) else None
    boot_vga = _read(f"{sysdev}/boot_vga")
    is_chr = stat.S_ISCHR(st.st_mode)
    dev: dict[str, Any] = {
        "path": f"/dev/dri/{name}",
        "kind": "card" if m.group(1) == "card" else "render",
        "char_device": is_chr,
        "device_number": f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if is_chr else None,
        "vendor_id": vendor_id,
        "device_id": device_id,
        "vendor": VENDORS.get(vendor_id.lower(), "unknown") if vendor_id else None,
        "driver": _link_name(f"{sysdev}/driver"),
        "pci_slot": slot,
        "boot_vga": boot_vga == "1" if boot_vga is not None else None,
        "group": group_name(st.st_gid),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "access_via": access_via(st),
        "accessible": False,
        "open_error": "not a character device" if not is_chr else None,
        "usable": False,
    }
    if is_chr:
        dev["accessible"], dev["open_error"] = _open_check(path)
    dev["usable"] = usable(dev)
    return dev


def probe_dri(root: RootLike = "/") -> dict[str, Any]:
    """Every card*/renderD* under ``root``/dev/dri, sorted by name."""
    try:
        names = sorted(os.listdir(rooted(root, "/dev/dri")))
    except FileNotFoundError:
        return {"present": False, "devices": [], "reason": "/dev/dri does not exist"}
    except OSError as exc:
        return {"present": False, "devices": [], "reason": f"cannot list /dev/dri: {exc.strerror}"}
    devices = [d for d in (describe(root, n) for n in names) if d is not None]
    return {"present": bool(devices), "devices": devices,
            "reason": None if devices else "/dev/dri has no card or render nodes"}
