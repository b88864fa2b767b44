"""/dev/dri cards and render nodes, described from sysfs."""

from __future__ import annotations

import grp
import os
import re
import stat
from pathlib import Path
from typing import Any

VENDORS = {
    "0x10de": "NVIDIA", "0x1002": "AMD", "0x1022": "AMD", "0x8086": "Intel", "0x1af4": "virtio",
    "0x1234": "QEMU", "0x15ad": "VMware", "0x1a03": "ASPEED", "0x5143": "Qualcomm", "0x13b5": "ARM",
}


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _open_check(path: Path) -> tuple[bool, str | None]:
    """(permission to open read-write, error of a real open attempt).

    Permission is what a job needs from the pod; a node with no driver behind
    it (ENXIO/ENODEV, e.g. a captured tree) is reported, not confused with it."""
    allowed = os.access(path, os.R_OK | os.W_OK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return allowed and exc.errno not in (13, 1), exc.strerror
    os.close(fd)
    return True, None


def probe_dri(root: str | Path = "/") -> dict[str, Any]:
    r = Path(root)
    ddir = r / "dev" / "dri"
    devices: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(ddir))
    except FileNotFoundError:
        return {"present": False, "devices": [], "reason": "/dev/dri does not exist"}
    except OSError as exc:
        return {"present": False, "devices": [], "reason": f"cannot list /dev/dri: {exc.strerror}"}
    for name in names:
        m = re.fullmatch(r"(card|renderD)(\d+)", name)
        if not m:
            continue
        path = ddir / name
        try:
            st = os.stat(path)
        except OSError:
            continue
        sysdev = r / "sys" / "class" / "drm" / name / "device"
        vendor_id, device_id = _read(sysdev / "vendor"), _read(sysdev / "device")
        driver = None
        try:
            driver = os.path.basename(os.readlink(sysdev / "driver"))
        except OSError:
            pass
        slot = None
        uevent = _read(sysdev / "uevent") or ""
        for line in uevent.splitlines():
            if line.startswith("PCI_SLOT_NAME="):
                slot = line.split("=", 1)[1]
        if slot is None:
            try:
                slot = os.path.basename(os.readlink(sysdev))
            except OSError:
                pass
        boot_vga = _read(sysdev / "boot_vga")
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        devices.append({
            "path": f"/dev/dri/{name}",
            "kind": "card" if m.group(1) == "card" else "render",
            "char_device": stat.S_ISCHR(st.st_mode),
            "vendor_id": vendor_id,
            "device_id": device_id,
            "vendor": VENDORS.get(vendor_id or "", "unknown") if vendor_id else None,
            "driver": driver,
            "pci_slot": slot,
            "boot_vga": boot_vga == "1" if boot_vga is not None else None,
            "group": group,
            "accessible": False,
            "open_error": None,
        })
        if stat.S_ISCHR(st.st_mode):
            devices[-1]["accessible"], devices[-1]["open_error"] = _open_check(path)
    return {"present": bool(devices), "devices": devices,
            "reason": None if devices else "/dev/dri has no card or render nodes"}
