"""Vulkan: the loader, ICD manifests, and (deep) the physical devices."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/local/lib")
ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/usr/share/vulkan/icd.d")
DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}


def _rooted(root: str | Path, p: str) -> Path:
    return Path(root) / p.lstrip("/")


def find_loader(root: str | Path = "/") -> str | None:
    for d in LIB_DIRS:
        p = _rooted(root, d) / "libvulkan.so.1"
        if p.exists():
            return str(Path(d) / "libvulkan.so.1")
    return None


def icd_files(root: str | Path = "/", environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    explicit = env.get("VK_DRIVER_FILES") or env.get("VK_ICD_FILENAMES")
    if explicit:  # the loader then uses only these
        return [_rooted(root, p) for p in explicit.split(":") if p]
    dirs = [d for d in ICD_DIRS]
    xdg = env.get("XDG_DATA_DIRS")
    if xdg:
        dirs += [os.path.join(d, "vulkan/icd.d") for d in xdg.split(":") if d]
    out = []
    for d in dict.fromkeys(dirs):
        try:
            out += sorted(_rooted(root, d).glob("*.json"))
        except OSError:
            pass
    return out


def probe_vulkan(root: str | Path = "/", deep: bool = False) -> dict[str, Any]:
    icds = []
    for f in icd_files(root):
        entry: dict[str, Any] = {"manifest": "/" + str(f.relative_to(root)) if str(f).startswith(str(root)) and
                                 str(root) != "/" else str(f), "library_path": None, "api_version": None,
                                 "error": None}
        try:
            data = json.loads(f.read_text())
            icd = data.get("ICD", {})
            entry["library_path"], entry["api_version"] = icd.get("library_path"), icd.get("api_version")
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        icds.append(entry)
    out: dict[str, Any] = {"loader": find_loader(root), "icds": icds, "devices": None}
    if deep:
        out["devices"] = physical_devices() if str(root) == "/" else None
    return out


def physical_devices() -> list[dict[str, Any]] | dict[str, str]:
    """Enumerate physical devices through the real loader (the `vulkan` binding)."""
    try:
        import vulkan as vk
    except Exception as exc:  # the binding raises OSError when libvulkan is missing
        return {"error": f"vulkan binding unavailable: {exc}"}
    try:
        app = vk.VkApplicationInfo(sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO, pApplicationName="flywheel-probe",
                                   apiVersion=vk.VK_MAKE_VERSION(1, 1, 0))
        inst = vk.vkCreateInstance(vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                                           pApplicationInfo=app), None)
    except Exception as exc:
        return {"error": f"vkCreateInstance failed: {exc.__class__.__name__}"}
    try:
        devs = []
        for pd in vk.vkEnumeratePhysicalDevices(inst):
            p = vk.vkGetPhysicalDeviceProperties(pd)
            devs.append({"name": p.deviceName, "type": DEVICE_TYPES.get(p.deviceType, str(p.deviceType)),
                         "vendor_id": f"0x{p.vendorID:04x}", "device_id": f"0x{p.deviceID:04x}",
                         "api_version": f"{p.apiVersion >> 22}.{(p.apiVersion >> 12) & 0x3FF}.{p.apiVersion & 0xFFF}"})
        return devs
    except Exception as exc:
        return {"error": f"vkEnumeratePhysicalDevices failed: {exc.__class__.__name__}"}
    finally:
        vk.vkDestroyInstance(inst, None)
