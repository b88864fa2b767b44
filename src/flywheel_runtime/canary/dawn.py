"""Dawn canary: the same scene through Dawn's Node bindings (npm ``webgpu``).

The Node script (``canaries/dawn/canary.mjs``) only runs the GPU work and hands
back raw readbacks; every check happens here, in ``scene``.  When Dawn rejects
the adapter (Mesa 22.3's lavapipe lacks the array-dynamic-indexing features Dawn
requires) it yields no adapter and prints a warning: that warning becomes the
UnsupportedError message (exit 10).  Only that rejection is "unsupported":
a missing Node.js, script or bindings, a crash and a timeout mean the lane's
image or stack is broken, so they fail (exit 1; a timeout exit 13) with their
reason.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from flywheel_runtime.canary import adapter as policy
from flywheel_runtime.canary import scene
from flywheel_runtime.canary.png import write_rgba
from flywheel_runtime.canary.report import Adapter, Report
from flywheel_runtime.errors import DeviceAbsentError, ExitCode, FlywheelError, UnsupportedError

WGSL = Path(__file__).with_name("shaders") / "canary.wgsl"
DEFAULT_FLAGS = ("backend=vulkan",)
TIMEOUT_S = 120.0


def timeout_s() -> float:
    """$FLYWHEEL_DAWN_TIMEOUT_S, else :data:`TIMEOUT_S` (a hung driver must not hang the lane)."""
    return float(os.environ.get("FLYWHEEL_DAWN_TIMEOUT_S") or TIMEOUT_S)


class DawnFailure(FlywheelError):
    """Dawn could not run here (no Node, no script, no bindings, a crash): a failure, not unsupported."""

    exit_code = ExitCode.FAILED


def default_dir() -> Path:
    """$FLYWHEEL_DAWN_DIR, else canaries/dawn in the source checkout this package runs from."""
    env = os.environ.get("FLYWHEEL_DAWN_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "canaries" / "dawn"


# Dawn's diagnostics when it yields no adapter: a driver-level failure means the device
# is absent; a message raised "While initializing adapter" means Dawn refused it.
_MSG = re.compile(r"^(?:Warning|Error): (?P<msg>.+)(?P<ctx>(?:\n[ \t]+.*)*)", re.MULTILINE)
NO_DRIVER_MARKERS = ("Found no drivers", "VK_ERROR_INCOMPATIBLE_DRIVER", "Failed to open JSON file")


def dawn_messages(stderr: str) -> list[tuple[str, str]]:
    """(message, indented context) for each ``Warning:``/``Error:`` block Dawn printed."""
    return [(m.group("msg").strip(), m.group("ctx")) for m in _MSG.finditer(stderr)]


def no_adapter_error(stderr: str) -> Exception:
    msgs = dawn_messages(stderr)
    rejected = [m for m, ctx in msgs if "While initializing adapter" in ctx]
    if rejected:
        return UnsupportedError(f"Dawn rejected the adapter: {rejected[0]}")
    driver = [m for m, _ in msgs if any(k in m for k in NO_DRIVER_MARKERS)]
    if driver:
        return DeviceAbsentError(f"Dawn found no WebGPU adapter: {driver[-1]}")
    if msgs:  # no adapter, and not for a reason Dawn gave as its own rejection
        return DawnFailure(f"Dawn found no usable adapter: {msgs[0][0]}")
    return DeviceAbsentError("Dawn found no WebGPU adapter (no Vulkan driver/ICD?)")


def run_script(dawn_dir: Path, payload: dict[str, Any], node: str | None = None,
               timeout: float | None = None) -> tuple[dict[str, Any], str]:
    timeout = timeout_s() if timeout is None else timeout
    exe = node or shutil.which("node")
    if not exe:
        raise DawnFailure("Dawn canary needs Node.js: `node` is not on PATH")
    script = dawn_dir / "canary.mjs"
    if not script.is_file():
        raise DawnFailure(f"Dawn canary script missing: {script} (set FLYWHEEL_DAWN_DIR)")
    if not (dawn_dir / "node_modules" / "webgpu" / "package.json").is_file():
        raise DawnFailure(f"Dawn bindings not installed: run `npm ci` in {dawn_dir}")
    try:
        proc = subprocess.run([exe, str(script)], input=json.dumps(payload), capture_output=True, text=True,
                              cwd=dawn_dir, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DawnFailure(f"Dawn canary did not finish within {timeout:.0f} s",
                          exit_code=ExitCode.TIMEOUT) from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DawnFailure(f"Dawn canary crashed (node exit {proc.returncode}): {tail}")
    return json.loads(lines[-1]), proc.stderr


def _describe(info: dict[str, Any]) -> dict[str, Any]:
    arch = info.get("architecture", "")
    t = "cpu" if arch == "software" or info.get("isFallbackAdapter") else (info.get("adapterType") or "unknown")
    d = {"vendor": info.get("vendor", ""), "device": info.get("device", ""),
         "backend": f"dawn {info.get('backendType', 'vulkan')}".lower(), "type": str(t).lower(),
         "driver": info.get("description", "")}
    d["kind"] = policy.classify(device=d["device"], driver=d["driver"], type=d["type"], vendor=d["vendor"])
    return d


def canary(artifacts: Path | None = None, *, require_hardware: bool = False, report: Report | None = None,
           seed: int | None = None, dawn_dir: Path | None = None, flags: tuple[str, ...] = DEFAULT_FLAGS) -> Report:
    report = report or Report("dawn")
    inputs = scene.make_inputs(seed)
    payload = {**inputs.to_json(), "data_b64": base64.b64encode(inputs.data_bytes()).decode(),
               "wgsl": WGSL.read_text(), "flags": list(flags)}
    with report.timed("node"):
        out, stderr = run_script(dawn_dir or default_dir(), payload)
    report.timings.update({f"dawn_{k}": round(float(v), 6) for k, v in out.get("timings", {}).items()})
    if out.get("status") == "no-adapter":
        raise no_adapter_error(stderr)
    if out.get("status") != "ran":
        report.check("dawn run", False, out.get("message", f"unexpected status {out.get('status')!r}"))
        return report.finish()
    d = _describe(out.get("adapter", {}))
    report.adapter = Adapter(vendor=d["vendor"], device=d["device"], backend=d["backend"], type=d["type"],
                             driver=d["driver"], kind=d["kind"])
    if require_hardware:
        policy.enforce_hardware(d)
    errors = out.get("errors") or []
    report.check("no WebGPU validation errors", not errors, "; ".join(errors[:3]) or "none reported")
    scene.check_compute(report, inputs, base64.b64decode(out.get("compute_b64", "")))
    rgba = base64.b64decode(out.get("render_b64", ""))
    # the pitch the script says it used is not trusted: the readback shows it
    pitch = scene.check_row_pitch(report, inputs, rgba)
    scene.check_render(report, inputs, rgba, pitch)
    if artifacts is not None and pitch is not None:
        png = write_rgba(Path(artifacts) / "dawn-render.png", scene.WIDTH, scene.HEIGHT, rgba, pitch)
        report.artifacts.append(png.name)
    return report.finish()
