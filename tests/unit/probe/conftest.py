from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def make_root(tmp: Path, cards: list[dict]) -> Path:
    """A captured host tree: mknod'ed DRI nodes with a sysfs description each."""
    root = tmp / "root"
    (root / "dev" / "dri").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text("processor : 0\nflags : fpu vme hypervisor\n")
    for c in cards:
        for node, minor in ((c["card"], c["minor"]), (c["render"], 128 + c["minor"])):
            path = root / "dev" / "dri" / node
            os.mknod(path, 0o660 | stat.S_IFCHR, os.makedev(226, minor))
            dev = root / "sys" / "devices" / "pci0000:00" / c["slot"]
            dev.mkdir(parents=True, exist_ok=True)
            (dev / "vendor").write_text(c["vendor"] + "\n")
            (dev / "device").write_text(c["device"] + "\n")
            (dev / "boot_vga").write_text(c.get("boot_vga", "0") + "\n")
            (dev / "uevent").write_text(f"DRIVER={c['driver']}\nPCI_SLOT_NAME={c['slot']}\n")
            drv = root / "sys" / "bus" / "pci" / "drivers" / c["driver"]
            drv.mkdir(parents=True, exist_ok=True)
            if not (dev / "driver").is_symlink():
                (dev / "driver").symlink_to(drv)
            cls = root / "sys" / "class" / "drm" / node
            cls.mkdir(parents=True)
            (cls / "device").symlink_to(dev)
    return root


CARDS = [
    {"card": "card0", "render": "renderD128", "minor": 0, "slot": "0000:01:00.0", "vendor": "0x10de",
     "device": "0x2684", "driver": "nvidia", "boot_vga": "1"},
    {"card": "card1", "render": "renderD129", "minor": 1, "slot": "0000:06:00.0", "vendor": "0x1002",
     "device": "0x744c", "driver": "amdgpu"},
]


@pytest.fixture
def captured_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    return make_root(tmp_path, CARDS)
