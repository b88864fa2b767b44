"""Test helpers shared by the probe and hooks tests.

A captured host tree, built for real: mknod'ed DRI nodes (char 226:N) and a
sysfs description of each (vendor/device files, driver symlinks, uevent), as
/sys/class/drm/<node>/device -> ../../devices/pci.../<slot> on a real host."""

from __future__ import annotations

import grp
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DRM_MAJOR = 226
VIDEO_GID = grp.getgrnam("video").gr_gid  # Debian's group for card nodes ("render" may not exist here)


def make_root(tmp: Path, cards: list[dict[str, Any]]) -> Path:
    root = tmp / "root"
    (root / "dev" / "dri" / "by-path").mkdir(parents=True)  # udev's by-path dir: not a node, ignored
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu vme hypervisor\n")
    for c in cards:
        dev = root / "sys" / "devices" / "pci0000:00" / c["slot"]
        dev.mkdir(parents=True, exist_ok=True)
        (dev / "vendor").write_text(c["vendor"] + "\n")
        (dev / "device").write_text(c["device"] + "\n")
        if "boot_vga" in c:
            (dev / "boot_vga").write_text(c["boot_vga"] + "\n")
        uevent = f"DRIVER={c['driver']}\n" + (f"PCI_SLOT_NAME={c['slot']}\n" if c.get("pci", True) else "")
        (dev / "uevent").write_text(uevent)
        drv = root / "sys" / "bus" / "pci" / "drivers" / c["driver"]
        drv.mkdir(parents=True, exist_ok=True)
        if not (dev / "driver").is_symlink():
            (dev / "driver").symlink_to(os.path.relpath(drv, dev))
        for node, minor in ((c["card"], c["minor"]), (c["render"], 128 + c["minor"])):
            path = root / "dev" / "dri" / node
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(DRM_MAJOR, minor))
            os.chmod(path, 0o660)  # mknod applies the umask; udev sets 0660
            os.chown(path, 0, VIDEO_GID)
            cls = root / "sys" / "class" / "drm" / node
            cls.mkdir(parents=True)
            (cls / "device").symlink_to(os.path.relpath(dev, cls))
    return root


CARDS = [
    {"card": "card0", "render": "renderD128", "minor": 0, "slot": "0000:01:00.0", "vendor": "0x10de",
     "device": "0x2684", "driver": "nvidia", "boot_vga": "1"},
    {"card": "card1", "render": "renderD129", "minor": 1, "slot": "0000:06:00.0", "vendor": "0x1002",
     "device": "0x744c", "driver": "amdgpu", "boot_vga": "0"},
]



def as_nobody(fn: Callable[..., Any], *args: Any, cwd: Path | None = None) -> Any:
    """Run ``fn(*args)`` in a forked child that dropped to uid/gid 65534 with no
    supplementary groups; return its JSON-able result.  (Forked, not exec'ed:
    the interpreter lives under /root, which nobody cannot reach.)  ``cwd`` is
    entered before dropping, so a tree under pytest's 0700 tmp dir can be
    probed as ".": only the permissions inside the tree then count."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(r)
            if cwd is not None:
                os.chdir(cwd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps(fn(*args)).encode())
        except BaseException as exc:
            os.write(w, json.dumps({"__error__": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result
