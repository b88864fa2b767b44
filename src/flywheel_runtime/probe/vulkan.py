"""Vulkan: the loader, ICD manifests, and (deep) the physical devices.

Manifests are found the way the Khronos loader finds them on Linux:
VK_DRIVER_FILES (or the older VK_ICD_FILENAMES) replaces the search, each
entry a manifest or a directory of them; VK_ADD_DRIVER_FILES is searched
first, then $XDG_CONFIG_HOME, $XDG_CONFIG_DIRS (/etc/xdg), /etc,
$XDG_DATA_HOME, $XDG_DATA_DIRS (/usr/local/share:/usr/share), each with
``vulkan/icd.d``.  Only ``--deep`` loads a driver.
"""

from __future__ import annotations

import json
import os

from flywheel_runtime.probe._fs import as_seen, is_live, read_text, rooted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flywheel_runtime.probe._fs import RootLike

LOADER = "libvulkan.so.1"
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
            "/lib64", "/usr/lib", "/usr/local/lib")
# The standard directories named in the issue come last, always, even when the
# XDG variables point elsewhere (a container may set them to something narrow).
STANDARD_ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/usr/share/vulkan/icd.d")
DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}


def find_loader(root: RootLike = "/") -> str | None:
    """The loader's path as the pod sees it, or None."""
    for d in LIB_DIRS:
        if os.path.exists(rooted(root, f"{d}/{LOADER}")):
            return f"{d}/{LOADER}"
    if is_live(root):  # only the live system has an ld.so cache worth asking
        import ctypes.util

        found = ctypes.util.find_library("vulkan")
        if found:
            return found
    return None


def icd_search_dirs(environ: dict[str, str]) -> list[str]:
    home = environ.get("HOME", "")
    config_home = environ.get("XDG_CONFIG_HOME") or (f"{home}/.config" if home else "")
    data_home = environ.get("XDG_DATA_HOME") or (f"{home}/.local/share" if home else "")
    config_dirs = (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    data_dirs = (environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    bases = [config_home, *config_dirs, "/etc", data_home, *data_dirs]
    dirs = [f"{b.rstrip('/')}/vulkan/icd.d" for b in bases if b]
    return list(dict.fromkeys([*dirs, *STANDARD_ICD_DIRS]))


def _expand(root: RootLike, entries: list[str]) -> list[str]:
    out: list[str] = []
    for e in entries:
        p = rooted(root, e)
        if os.path.isdir(p):
            try:
                out += [os.path.join(p, n) for n in sorted(os.listdir(p)) if n.endswith(".json")]
            except OSError:
                pass
        elif os.path.exists(p):
            out.append(p)
    return out


def icd_files(root: RootLike = "/", environ: dict[str, str] | None = None) -> list[str]:
    """Manifest files in the loader's order (duplicates dropped)."""
    env = dict(os.environ if environ is None else environ)
    explicit = env.get("VK_DRIVER_FILES") or env.get("VK_ICD_FILENAMES")
    added = [p for p in env.get("VK_ADD_DRIVER_FILES", "").split(":") if p]
    if explicit:  # the loader then uses only these (plus VK_ADD_DRIVER_FILES)
        found = _expand(root, added) + _expand(root, [p for p in explicit.split(":") if p])
    else:
        found = _expand(root, added) + _expand(root, icd_search_dirs(env))
    return list(dict.fromkeys(found))


def parse_manifest(root: RootLike, f: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"manifest": as_seen(root, f), "library_path": None, "api_version": None,
                             "error": None}
    try:
        text = read_text(f)
        if text is None:
            raise OSError(f"cannot read {f} (missing, unreadable or not a regular file)")
        data = json.loads(text)
        icd = data["ICD"]
        lib, api = icd.get("library_path"), icd.get("api_version")
        # Strings or nothing: a manifest is the image's to write, and the schema says string.
        entry["library_path"] = lib if isinstance(lib, str) else None
        entry["api_version"] = api if isinstance(api, str) else None
        if lib is not None and not isinstance(lib, str):
            entry["error"] = f"TypeError: library_path is a JSON {type(lib).__name__}, not a string"
    except RecursionError:  # nested deeper than the JSON parser goes: a hostile or broken manifest
        entry["error"] = "ValueError: manifest is nested too deeply to parse"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def probe_vulkan(root: RootLike = "/", deep: bool = False,
                 environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Loader and manifests always; physical devices only with ``deep`` on the live system."""
    out: dict[str, Any] = {"loader": find_loader(root),
                           "icds": [parse_manifest(root, f) for f in icd_files(root, environ)],
                           "devices": None, "devices_reason": "not enumerated (use --deep)"}
    if deep:
        if not is_live(root):
            out["devices_reason"] = "not enumerated under --root (enumeration loads the live drivers)"
        elif out["loader"] is None:
            out["devices_reason"] = f"no Vulkan loader ({LOADER}) found"
        else:
            devs = physical_devices()
            if isinstance(devs, list):
                out["devices"], out["devices_reason"] = devs, None
            else:
                out["devices_reason"] = devs["error"]
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
                         "api_version": f"{p.apiVersion >> 22}.{(p.apiVersion >> 12) & 0x3FF}.{p.apiVersion & 0xFFF}",
                         "driver_version": int(p.driverVersion)})
        return devs
    except Exception as exc:
        return {"error": f"vkEnumeratePhysicalDevices failed: {exc.__class__.__name__}"}
    finally:
        vk.vkDestroyInstance(inst, None)
