"""The runtime hints document a job sees before its first step.

One schema-versioned JSON document (``hints.schema.json`` beside this file),
rendered three ways: JSON, ``env`` (FLYWHEEL_* lines a job can append to
GITHUB_ENV) and ``markdown`` (a job-summary table).  Nothing here imports
YAML, NVML or Vulkan unless asked: this runs before every job.
"""

from __future__ import annotations

import json
import os
import re

from flywheel_runtime.probe._fs import rooted
from flywheel_runtime.probe.dri import probe_dri
from flywheel_runtime.probe.dri import usable as dri_usable
from flywheel_runtime.probe.kvm import probe_kvm
from flywheel_runtime.probe.vulkan import probe_vulkan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from flywheel_runtime.probe._fs import RootLike

SCHEMA = "flywheel.tinyland.dev/hints/v1"
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hints.schema.json")
# Written by flywheel_runtime.nixseed into the seeded /nix; read here without
# importing the seeder (its format may move on: unknown formats are reported).
STAMP_NAME = ".flywheel-seed.json"
PARTIAL_NAME = ".flywheel-seed.partial"
KNOWN_STAMP_SCHEMAS = ("flywheel.tinyland.dev/nix-seed/v1",)
# The pod's identity, set by the rendered runner pod (topology.render).
RUNNER_ENV = {"runner_class": "FLYWHEEL_RUNNER_CLASS", "scale_set": "FLYWHEEL_SCALE_SET",
              "overlay": "FLYWHEEL_OVERLAY", "node": "FLYWHEEL_NODE_NAME"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,:/+=@-]")
_MASKED_UNSAFE = re.compile(r"[^A-Za-z0-9_.,:/+=@\[\]-]")


def _read_stamp(path: str) -> tuple[str, dict[str, Any] | None]:
    import stat

    try:
        # Non-blocking, judged by fstat on the descriptor: a FIFO where the stamp
        # belongs must not hang the probe (nor a job-started hook) forever.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return "absent", None
    except OSError:
        return "unreadable", None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "unreadable", None
        raw = os.read(fd, 1 << 16)
    except OSError:
        return "unreadable", None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        return "unreadable", None
    if not isinstance(data, dict) or data.get("schema") not in KNOWN_STAMP_SCHEMAS:
        return "unknown-format", None
    return "seeded", data


def probe_nix(root: RootLike = "/") -> dict[str, Any]:
    """The store, and which image it was seeded from (the seeder's stamp)."""
    nix = rooted(root, "/nix")
    state, stamp = _read_stamp(os.path.join(nix, STAMP_NAME))
    if state == "absent" and os.path.exists(os.path.join(nix, PARTIAL_NAME)):
        state = "partial"  # a seed was interrupted; the next seed-nix finishes it
    out: dict[str, Any] = {"store_present": os.path.isdir(os.path.join(nix, "store")), "seed_state": state, "seeded_from": None,
                           "seeded_at": None, "seed_source": None}
    if stamp:
        for key, field in (("seeded_from", "identity"), ("seeded_at", "seeded_at"), ("seed_source", "source")):
            value = stamp.get(field)
            out[key] = value if isinstance(value, str) else None
    return out


def probe_runner(environ: dict[str, str]) -> dict[str, Any]:
    return {key: environ.get(var) or None for key, var in RUNNER_ENV.items()}


def collect(root: RootLike = "/", *, deep: bool = False, environ: dict[str, str] | None = None,
            nvidia: bool = True) -> dict[str, Any]:
    """Probe everything under ``root``; ``environ`` (default os.environ) names the pod."""
    env = dict(os.environ if environ is None else environ)
    doc: dict[str, Any] = {"schema": SCHEMA, "root": os.fspath(root)}
    doc["kvm"] = probe_kvm(root)
    doc["dri"] = probe_dri(root)
    if nvidia:
        from flywheel_runtime.probe.nvidia import probe_nvidia

        doc["nvidia"] = probe_nvidia(root)
    else:
        doc["nvidia"] = {"present": False, "driver_version": None, "cuda_version": None, "kernel_module": None,
                         "gpus": [], "reason": "NVML not consulted (disabled by the caller)", "error": None}
    doc["vulkan"] = probe_vulkan(root, deep=deep, environ=env)
    doc["nix"] = probe_nix(root)
    doc["runner"] = probe_runner(env)
    return doc


def env_pairs(doc: dict[str, Any]) -> dict[str, str]:
    """The FLYWHEEL_* variables a job gets (names stable: workflows test them)."""
    kvm, dri, nv, vk, nix, runner = (doc[k] for k in ("kvm", "dri", "nvidia", "vulkan", "nix", "runner"))
    usable = [d for d in dri["devices"] if dri_usable(d)]
    devices = vk["devices"] if isinstance(vk.get("devices"), list) else []
    return {
        "FLYWHEEL_HINTS_SCHEMA": doc["schema"],
        "FLYWHEEL_KVM": "1" if kvm["usable"] else "0",
        "FLYWHEEL_KVM_API_VERSION": str(kvm["api_version"] or ""),
        "FLYWHEEL_DRI": "1" if usable else "0",
        "FLYWHEEL_DRI_CARDS": ",".join(d["path"] for d in usable if d["kind"] == "card"),
        "FLYWHEEL_DRI_RENDER_NODES": ",".join(d["path"] for d in usable if d["kind"] == "render"),
        "FLYWHEEL_DRI_VENDORS": ",".join(dict.fromkeys(d["vendor"] for d in usable if d["vendor"])),
        "FLYWHEEL_NVIDIA": "1" if nv["present"] else "0",
        "FLYWHEEL_NVIDIA_DRIVER": nv.get("driver_version") or "",
        "FLYWHEEL_NVIDIA_GPUS": str(len(nv["gpus"])),
        "FLYWHEEL_VULKAN_LOADER": "1" if vk["loader"] else "0",
        "FLYWHEEL_VULKAN_ICDS": str(len(vk["icds"])),
        "FLYWHEEL_VULKAN_DEVICE_TYPES": ",".join(d["type"] for d in devices),
        "FLYWHEEL_NIX_STORE": "1" if nix["store_present"] else "0",
        "FLYWHEEL_NIX_SEEDED_FROM": nix["seeded_from"] or "",
        "FLYWHEEL_RUNNER_CLASS": runner["runner_class"] or "",
        "FLYWHEEL_SCALE_SET": runner["scale_set"] or "",
        "FLYWHEEL_NODE": runner["node"] or "",
    }


def to_env(doc: dict[str, Any], mask: Callable[[str, str], str] | None = None) -> str:
    """KEY=value lines for GITHUB_ENV: one line each, no quoting needed in a shell.

    ``mask(name, raw value)`` (the hooks' redaction) sees each value before it
    is made shell-safe; a value it changes keeps its brackets ("[redacted]")
    and nothing else unsafe: no mask can add a line."""
    lines = []
    for k, v in env_pairs(doc).items():
        masked = mask(k, v) if mask is not None else v
        lines.append(f"{k}={_UNSAFE.sub('_', v) if masked == v else _MASKED_UNSAFE.sub('_', masked)}\n")
    return "".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "/").splitlines())


def to_markdown(doc: dict[str, Any]) -> str:
    """A short job-summary table."""
    kvm, dri, nv, vk, nix, runner = (doc[k] for k in ("kvm", "dri", "nvidia", "vulkan", "nix", "runner"))
    yes = {True: "yes", False: "no", None: "-"}
    if kvm["usable"]:
        kvm_cell = f"yes (API {kvm['api_version']}, via {kvm['access_via']})"
    else:
        kvm_cell = f"no — {kvm['reason']}"
    dri_cell = ", ".join(f"{d['path']} {d['vendor'] or '?'} {d['driver'] or ''}".strip()
                         + ("" if dri_usable(d) else " (not usable)") for d in dri["devices"])
    if nv["present"]:
        nv_cell = ", ".join(g["name"] for g in nv["gpus"]) + f" (driver {nv['driver_version']}, CUDA {nv['cuda_version']})"
    else:
        nv_cell = f"no — {nv['reason']}"
    vk_cell = f"loader {yes[bool(vk['loader'])]}, {len(vk['icds'])} ICD(s)"
    if isinstance(vk.get("devices"), list):
        vk_cell += ", devices: " + (", ".join(f"{d['name']} ({d['type']})" for d in vk["devices"]) or "none")
    seed_words = {"seeded": "seeded", "absent": "not seeded by flywheel", "partial": "seed interrupted",
                  "unreadable": "seed stamp unreadable", "unknown-format": "seed stamp of an unknown format"}
    nix_cell = f"store {yes[nix['store_present']]}, {seed_words.get(nix['seed_state'], nix['seed_state'])}"
    if nix["seeded_from"]:
        nix_cell += f" from {nix['seeded_from'][:19]}"
    rows = [
        ("Runner class", f"{runner['runner_class'] or '-'} (scale set {runner['scale_set'] or '-'}, "
                         f"node {runner['node'] or '-'})"),
        ("KVM", kvm_cell),
        ("DRI", dri_cell or f"no — {dri['reason']}"),
        ("NVIDIA", nv_cell),
        ("Vulkan", vk_cell),
        ("Nix", nix_cell),
    ]
    out = ["### flywheel runtime hints", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in rows]
    return "\n".join(out) + "\n"
