"""NVIDIA GPUs via NVML (nvidia-ml-py, module ``pynvml``, imported only here).

Never raises: no library, no driver or no permission is ``present: false``
with NVML's own reason and error name.  pynvml takes longer to import than
the rest of ``hints`` together, so it is imported only once NVML's library
can actually be loaded; otherwise the answer is the one NVML's binding gives
in that case (NVMLError_LibraryNotFound, "NVML Shared Library Not Found") —
a unit test checks the two agree on this machine.
"""

from __future__ import annotations

import re

from flywheel_runtime.probe._fs import is_live, read_text, rooted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flywheel_runtime.probe._fs import RootLike

NVML_LIBRARY = "libnvidia-ml.so.1"  # the soname pynvml dlopens on Linux
# What pynvml raises when that dlopen fails (NVML_ERROR_LIBRARY_NOT_FOUND).
LIBRARY_NOT_FOUND = ("NVMLError_LibraryNotFound", 12, "NVML Shared Library Not Found")
PROC_VERSION = "/proc/driver/nvidia/version"


def _empty() -> dict[str, Any]:
    return {"present": False, "driver_version": None, "cuda_version": None, "kernel_module": None, "gpus": [],
            "reason": None, "error": None}


def kernel_module_version(root: RootLike = "/") -> str | None:
    """The loaded kernel module's version from procfs (readable under a captured root too)."""
    text = read_text(rooted(root, PROC_VERSION))
    if text is None:
        return None
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return m.group(1) if m else None


def _library_loadable() -> str | None:
    """None when dlopen of NVML's library works, else dlerror's text."""
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError as exc:
        return str(exc)
    return None


def _fail(out: dict[str, Any], name: str, code: Any, message: str, detail: str = "") -> dict[str, Any]:
    out["error"] = {"name": name, "code": code, "message": message}
    out["reason"] = f"NVML: {message} ({name}, code {code})" + (f": {detail}" if detail else "")
    return out


def probe_nvidia(root: RootLike = "/") -> dict[str, Any]:
    """Driver, CUDA and per-GPU facts from NVML; ``present`` only when NVML lists a GPU."""
    out = _empty()
    out["kernel_module"] = kernel_module_version(root)
    if not is_live(root):
        out["reason"] = "NVML is not consulted under --root (it reads the live driver)"
        return out
    dlerror = _library_loadable()
    if dlerror is not None:
        return _fail(out, *LIBRARY_NOT_FOUND, detail=dlerror)
    try:
        import pynvml
    except ImportError:
        out["reason"] = "nvidia-ml-py (pynvml) is not installed: install flywheel-runtime[gpu]"
        return out
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # DriverNotLoaded (9), NoPermission (4), LibraryNotFound (12), ...
        return _fail(out, type(exc).__name__, getattr(exc, "value", None), str(exc))
    try:
        out["driver_version"] = _s(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        out["cuda_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                current, pending = pynvml.nvmlDeviceGetMigMode(h)
                mig: dict[str, Any] | None = {"enabled": current == 1, "pending": pending == 1}
            except pynvml.NVMLError:  # not MIG-capable (e.g. consumer boards)
                mig = None
            out["gpus"].append({"index": i, "name": _s(pynvml.nvmlDeviceGetName(h)),
                                "uuid": _s(pynvml.nvmlDeviceGetUUID(h)), "memory_total": int(mem.total),
                                "mig": mig})
        out["present"] = bool(out["gpus"])
        if not out["gpus"]:
            out["reason"] = "NVML initialised but reports no GPUs"
    except pynvml.NVMLError as exc:
        _fail(out, type(exc).__name__, getattr(exc, "value", None), str(exc))
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
