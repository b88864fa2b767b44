"""WebGPU canary on wgpu-py (wgpu-native over Vulkan): compute + offscreen render.

Runs the scene in ``scene.py`` with the WGSL in ``shaders/canary.wgsl``, reads
back through a buffer whose rows are padded to 256 bytes, checks every element
and pixel, and writes the render as PNG.  wgpu is imported only in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel_runtime.canary import adapter as policy
from flywheel_runtime.canary import scene
from flywheel_runtime.canary.png import write_rgba
from flywheel_runtime.canary.report import Adapter, Report
from flywheel_runtime.errors import DeviceAbsentError, UnsupportedError

WGSL = Path(__file__).with_name("shaders") / "canary.wgsl"


def aligned_row_pitch(width: int, bytes_per_pixel: int = 4) -> int:
    return -(-width * bytes_per_pixel // scene.PITCH_ALIGN) * scene.PITCH_ALIGN


def _describe(a: Any) -> dict[str, Any]:
    info = a.info
    d = {"vendor": info.get("vendor") or f"{info.get('vendor_id', 0):#x}", "device": info.get("device", ""),
         "backend": str(info.get("backend_type", "")).lower(), "type": str(info.get("adapter_type", "")).lower(),
         "driver": info.get("description", "")}
    t = {"discretegpu": "discrete", "integratedgpu": "integrated", "cpu": "cpu"}.get(d["type"], d["type"] or "unknown")
    d["type"] = t
    d["kind"] = policy.classify(device=d["device"], driver=d["driver"], type=t, vendor_id=info.get("vendor_id"),
                                vendor=d["vendor"])
    return d


def _import_wgpu() -> Any:
    try:
        import wgpu
        from wgpu.backends.wgpu_native import extras
    except ImportError as exc:
        raise UnsupportedError(f"wgpu-py is not installed ({exc}); pip install 'flywheel-runtime[gpu]'") from None
    try:
        # Only Vulkan: the GPU lane is a Vulkan lane, and the GL backend would find
        # llvmpipe through EGL even when no Vulkan driver is installed.
        extras.set_instance_extras(backends=["Vulkan"])
    except Exception:  # the instance already exists (second run in one process)
        pass
    return wgpu


def canary(artifacts: Path | None = None, *, require_hardware: bool = False, report: Report | None = None,
           seed: int | None = None) -> Report:
    report = report or Report("webgpu")
    with report.timed("import"):
        wgpu = _import_wgpu()
    with report.timed("adapter"):
        adapters = wgpu.gpu.enumerate_adapters_sync()
        if not adapters:
            raise DeviceAbsentError("wgpu found no Vulkan adapter (no Vulkan driver/ICD installed, or "
                                    "VK_ICD_FILENAMES/VK_DRIVER_FILES point at nothing)")
        descs = {id(a): _describe(a) for a in adapters}
        chosen = policy.pick(adapters, lambda a: descs[id(a)], require_hardware=False)
        d = descs[id(chosen)]
        report.adapter = Adapter(vendor=d["vendor"], device=d["device"], backend=d["backend"], type=d["type"],
                                 driver=d["driver"], kind=d["kind"])
        if require_hardware:
            policy.enforce_hardware(d)
        device = chosen.request_device_sync()
    inputs = scene.make_inputs(seed)
    src = WGSL.read_text()
    with report.timed("compute"):
        out = _compute(wgpu, device, src, inputs)
    scene.check_compute(report, inputs, out)
    with report.timed("render"):
        rgba = _render(wgpu, device, src, inputs)
    pitch = scene.check_row_pitch(report, inputs, rgba)
    scene.check_render(report, inputs, rgba, pitch)
    if artifacts is not None and pitch is not None:
        png = write_rgba(Path(artifacts) / "webgpu-render.png", scene.WIDTH, scene.HEIGHT, rgba, pitch)
        report.artifacts.append(png.name)
    return report.finish()


def _compute(wgpu: Any, device: Any, src: str, inputs: scene.Inputs) -> bytes:
    data = inputs.data_bytes()
    storage = device.create_buffer_with_data(data=data, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC)
    readback = device.create_buffer(size=len(data), usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
    module = device.create_shader_module(code=src)
    pipeline = device.create_compute_pipeline(layout="auto", compute={"module": module, "entry_point": "cs_main"})
    bind = device.create_bind_group(layout=pipeline.get_bind_group_layout(0),
                                    entries=[{"binding": 0, "resource": {"buffer": storage}}])
    enc = device.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipeline)
    cp.set_bind_group(0, bind)
    cp.dispatch_workgroups(-(-len(inputs.data) // scene.WORKGROUP))
    cp.end()
    enc.copy_buffer_to_buffer(storage, 0, readback, 0, len(data))
    device.queue.submit([enc.finish()])
    readback.map_sync(wgpu.MapMode.READ)
    try:
        return bytes(readback.read_mapped())
    finally:
        readback.unmap()


def _render(wgpu: Any, device: Any, src: str, inputs: scene.Inputs) -> bytes:
    w, h = scene.WIDTH, scene.HEIGHT
    fmt = wgpu.TextureFormat.rgba8unorm
    tex = device.create_texture(size=(w, h, 1), format=fmt,
                                usage=wgpu.TextureUsage.RENDER_ATTACHMENT | wgpu.TextureUsage.COPY_SRC)
    module = device.create_shader_module(code=src)
    pipeline = device.create_render_pipeline(
        layout="auto",
        vertex={"module": module, "entry_point": "vs_main", "buffers": []},
        primitive={"topology": wgpu.PrimitiveTopology.triangle_list, "cull_mode": wgpu.CullMode.none},
        fragment={"module": module, "entry_point": "fs_main", "targets": [{"format": fmt}]},
    )
    pitch = aligned_row_pitch(w)
    readback = device.create_buffer(size=pitch * h, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
    device.queue.write_buffer(readback, 0, bytes([inputs.pad]) * (pitch * h))  # what the padding must still hold
    r, g, b, a = inputs.clear_float
    enc = device.create_command_encoder()
    rp = enc.begin_render_pass(color_attachments=[{
        "view": tex.create_view(), "load_op": wgpu.LoadOp.clear, "store_op": wgpu.StoreOp.store,
        "clear_value": (r, g, b, a)}])
    rp.set_pipeline(pipeline)
    rp.draw(12)
    rp.end()
    enc.copy_texture_to_buffer({"texture": tex}, {"buffer": readback, "offset": 0, "bytes_per_row": pitch,
                                                  "rows_per_image": h}, (w, h, 1))
    device.queue.submit([enc.finish()])
    readback.map_sync(wgpu.MapMode.READ)
    try:
        return bytes(readback.read_mapped())
    finally:
        readback.unmap()
