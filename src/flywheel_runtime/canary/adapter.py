"""Adapter policy: which GPU adapter a canary uses, and whether it is real hardware.

A CPU rasteriser proves the userspace stack, not the GPU lane: the gpu-lane
workflow passes ``--require-hardware`` so a software adapter fails it there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from flywheel_runtime.errors import DeviceAbsentError

HARDWARE, SOFTWARE = "hardware", "software"

# Names the software rasterisers report in their device or driver strings.
SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "softpipe", "swiftshader", "swrast", "basic render driver")
# PCI-style vendor ids that only software implementations use (Mesa's 0x10005 for lavapipe).
SOFTWARE_VENDOR_IDS = frozenset({0x10005})
# Order of preference when picking a device; a "cpu" type is always software.
TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "other": 3, "unknown": 4, "cpu": 5}


def classify(*, device: str = "", driver: str = "", type: str = "", vendor_id: int | None = None,
             vendor: str = "") -> str:
    """``"software"`` for CPU rasterisers (by type, vendor id or name), else ``"hardware"``."""
    if type.lower() == "cpu":
        return SOFTWARE
    if vendor_id is not None and vendor_id in SOFTWARE_VENDOR_IDS:
        return SOFTWARE
    text = " ".join((device, driver, vendor)).lower()
    return SOFTWARE if any(n in text for n in SOFTWARE_NAMES) else HARDWARE


T = TypeVar("T")


def pick(candidates: Sequence[T], describe: Any, *, require_hardware: bool) -> T:
    """Choose the best candidate: hardware before software, then by device type rank.

    ``describe(c)`` returns a dict with at least ``kind`` and ``type``.  With
    ``require_hardware`` a software-only host raises DeviceAbsentError (exit 6).
    """
    if not candidates:
        raise DeviceAbsentError("no GPU adapter found")
    ranked = sorted(candidates, key=lambda c: (describe(c)["kind"] != HARDWARE,
                                               TYPE_RANK.get(describe(c)["type"], 4)))
    best = ranked[0]
    if require_hardware:
        enforce_hardware(describe(best))
    return best


def enforce_hardware(desc: dict[str, Any]) -> None:
    if desc["kind"] != HARDWARE:
        raise DeviceAbsentError(
            f"hardware GPU required but only a software adapter is available: {desc.get('device', '?')} "
            f"({desc.get('driver', '?')}); pass /dev/dri through or drop --require-hardware")


def names(items: Iterable[dict[str, Any]]) -> str:
    return ", ".join(f"{d.get('device')} [{d.get('kind')}]" for d in items)
