"""NVIDIA GPUs via NVML (nvidia-ml-py, imported only here)."""

from __future__ import annotations

from typing import Any


def probe_nvidia() -> dict[str, Any]:
    out: dict[str, Any] = {"present": False, "driver_version": None, "cuda_version": None, "gpus": [],
                           "reason": None}
    try:
        import pynvml
    except ImportError:
        out["reason"] = "nvidia-ml-py (pynvml) is not installed"
        return out
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        # e.g. NVMLError_LibraryNotFound (12), DriverNotLoaded (9), NoPermission (4)
        out["reason"] = f"NVML: {exc} ({type(exc).__name__}, code {getattr(exc, 'value', '?')})"
        return out
    try:
        drv = pynvml.nvmlSystemGetDriverVersion()
        out["driver_version"] = drv.decode() if isinstance(drv, bytes) else drv
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        out["cuda_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                mig = pynvml.nvmlDeviceGetMigMode(h)[0] == 1
            except pynvml.NVMLError:
                mig = None
            out["gpus"].append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                                "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                                "memory_total": int(mem.total), "mig": mig})
        out["present"] = bool(out["gpus"])
        if not out["gpus"]:
            out["reason"] = "NVML initialised but reports no GPUs"
    except pynvml.NVMLError as exc:
        out["reason"] = f"NVML: {exc}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return out
