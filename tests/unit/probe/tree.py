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


# A character device any kernel opens: /dev/null's number, standing in for a
# render node whose driver answers (a DRM number answers ENXIO on a GPU-less host).
OPENABLE = os.makedev(1, 3)


def make_root(tmp: Path, cards: list[dict[str, Any]], *, openable: bool = False) -> Path:
    """``openable``: the nodes are 1:3 (they open) instead of 226:N (ENXIO here)."""
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
            os.mknod(path, stat.S_IFCHR | 0o600, OPENABLE if openable else os.makedev(DRM_MAJOR, minor))
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
    return as_uid(65534, fn, *args, cwd=cwd)


def as_uid(uid: int, fn: Callable[..., Any], *args: Any, cwd: Path | None = None, raises: bool = False) -> Any:
    """Run ``fn(*args)`` in a forked child that dropped to uid/gid ``uid`` with no
    supplementary groups; return its JSON-able result (with ``raises``, an
    exception comes back as {"__error__": class name, "message": str(exc)}).  (Forked, not exec'ed:
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
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(fn(*args)).encode())
        except BaseException as exc:
            os.write(w, json.dumps({"__error__": type(exc).__name__ if raises else repr(exc),
                                    "message": str(exc)}).encode())
            code = 0 if raises else 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result
