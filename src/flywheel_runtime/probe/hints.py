"""The runtime hints document a job sees before its first step."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from flywheel_runtime.probe.dri import probe_dri
from flywheel_runtime.probe.kvm import probe_kvm
from flywheel_runtime.probe.vulkan import probe_vulkan

SCHEMA = "flywheel.tinyland.dev/hints/v1"
STAMP_NAME = ".flywheel-seed.json"  # written by flywheel_runtime.nixseed


def _nix(root: str | Path) -> dict[str, Any]:
    nix = Path(root) / "nix"
    out: dict[str, Any] = {"store_present": (nix / "store").is_dir(), "seeded_from": None, "seeded_at": None}
    try:
        stamp = json.loads((nix / STAMP_NAME).read_text())
        out["seeded_from"], out["seeded_at"] = stamp.get("identity"), stamp.get("seeded_at")
    except (OSError, ValueError, AttributeError):
        pass
    return out


def _runner(environ: dict[str, str]) -> dict[str, Any]:
    return {"runner_class": environ.get("FLYWHEEL_RUNNER_CLASS"), "scale_set": environ.get("FLYWHEEL_SCALE_SET"),
            "overlay": environ.get("FLYWHEEL_OVERLAY"), "node": environ.get("FLYWHEEL_NODE_NAME")}


def collect(root: str | Path = "/", *, deep: bool = False, environ: dict[str, str] | None = None,
            nvidia: bool = True) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    doc: dict[str, Any] = {"schema": SCHEMA, "root": str(root)}
    doc["kvm"] = probe_kvm(root)
    doc["dri"] = probe_dri(root)
    if nvidia and str(root) == "/":
        from flywheel_runtime.probe.nvidia import probe_nvidia

        doc["nvidia"] = probe_nvidia()
    else:
        doc["nvidia"] = {"present": False, "driver_version": None, "cuda_version": None, "gpus": [],
                         "reason": "NVML is not consulted under --root (it reads the live driver)"}
    doc["vulkan"] = probe_vulkan(root, deep=deep)
    doc["nix"] = _nix(root)
    doc["runner"] = _runner(env)
    return doc


def to_env(doc: dict[str, Any]) -> str:
    """FLYWHEEL_* lines for GITHUB_ENV (values are single-line, shell-safe)."""
    kvm, dri, nv, vk, nix, runner = (doc[k] for k in ("kvm", "dri", "nvidia", "vulkan", "nix", "runner"))
    renders = [d["path"] for d in dri["devices"] if d["kind"] == "render" and d["accessible"]]
    pairs = {
        "FLYWHEEL_HINTS_SCHEMA": doc["schema"],
        "FLYWHEEL_KVM": "1" if kvm["usable"] else "0",
        "FLYWHEEL_KVM_API_VERSION": str(kvm["api_version"] or ""),
        "FLYWHEEL_DRI": "1" if any(d["accessible"] for d in dri["devices"]) else "0",
        "FLYWHEEL_DRI_RENDER_NODES": ",".join(renders),
        "FLYWHEEL_NVIDIA": "1" if nv["present"] else "0",
        "FLYWHEEL_NVIDIA_DRIVER": nv.get("driver_version") or "",
        "FLYWHEEL_VULKAN_LOADER": "1" if vk["loader"] else "0",
        "FLYWHEEL_VULKAN_ICDS": str(len(vk["icds"])),
        "FLYWHEEL_NIX_STORE": "1" if nix["store_present"] else "0",
        "FLYWHEEL_NIX_SEEDED_FROM": nix["seeded_from"] or "",
        "FLYWHEEL_RUNNER_CLASS": runner["runner_class"] or "",
        "FLYWHEEL_NODE": runner["node"] or "",
    }
    return "".join(f"{k}={re.sub(r'[^A-Za-z0-9_.,:/+=@-]', '_', v)}\n" for k, v in pairs.items())


def to_markdown(doc: dict[str, Any]) -> str:
    kvm, dri, nv, vk, nix, runner = (doc[k] for k in ("kvm", "dri", "nvidia", "vulkan", "nix", "runner"))
    yes = {True: "yes", False: "no", None: "-"}
    rows = [
        ("Runner class", f"{runner['runner_class'] or '-'} (scale set {runner['scale_set'] or '-'}, "
                         f"node {runner['node'] or '-'})"),
        ("KVM", f"{yes[kvm['usable']]}" + (f" (API {kvm['api_version']})" if kvm["usable"] else
                                          f" — {kvm['reason']}")),
        ("DRI", ", ".join(f"{d['path']} {d['vendor'] or '?'} {d['driver'] or ''}".strip() for d in dri["devices"])
         or f"no — {dri['reason']}"),
        ("NVIDIA", ", ".join(g["name"] for g in nv["gpus"]) + f" (driver {nv['driver_version']})" if nv["present"]
         else f"no — {nv['reason']}"),
        ("Vulkan", f"loader {'yes' if vk['loader'] else 'no'}, {len(vk['icds'])} ICD(s)"
                   + (", devices: " + ", ".join(f"{d['name']} ({d['type']})" for d in vk["devices"])
                      if isinstance(vk.get("devices"), list) else "")),
        ("Nix", f"store {'yes' if nix['store_present'] else 'no'}"
                + (f", seeded from {nix['seeded_from'][:19]}" if nix["seeded_from"] else "")),
    ]
    out = ["### flywheel runtime hints", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v.replace('|', '/')} |" for k, v in rows]
    return "\n".join(out) + "\n"
