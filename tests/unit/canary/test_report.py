"""Reports, the adapter policy, the PNG writer and the group outcome."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from flywheel_runtime.canary import adapter, png, scene
from flywheel_runtime.canary.report import SCHEMA_FILE, Adapter, Report, to_document, write_outputs
from flywheel_runtime.canary.runner import outcome
from flywheel_runtime.errors import DeviceAbsentError

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("desc,kind", [
    ({"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "type": "cpu"}, "software"),
    ({"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "type": "other"}, "software"),
    ({"device": "SwiftShader Device (Subzero)", "type": "cpu"}, "software"),
    ({"device": "Mystery", "type": "integrated", "vendor_id": 0x10005}, "software"),
    ({"device": "softpipe", "type": "other"}, "software"),
    ({"device": "NVIDIA GeForce RTX 4090", "type": "discrete", "vendor_id": 0x10DE}, "hardware"),
    ({"device": "AMD Radeon Graphics (RADV GFX1103_R1)", "type": "integrated", "driver": "radv Mesa 25.0"},
     "hardware"),
])
def test_classify(desc: dict, kind: str) -> None:
    assert adapter.classify(**desc) == kind


def test_pick_prefers_hardware_and_enforces_it() -> None:
    cands = [{"device": "llvmpipe", "type": "cpu", "kind": "software"},
             {"device": "RTX", "type": "discrete", "kind": "hardware"}]
    assert adapter.pick(cands, lambda c: c, require_hardware=True)["device"] == "RTX"
    with pytest.raises(DeviceAbsentError, match="only a software adapter"):
        adapter.pick(cands[:1], lambda c: c, require_hardware=True)
    with pytest.raises(DeviceAbsentError, match="no GPU adapter"):
        adapter.pick([], lambda c: c, require_hardware=False)


def test_png_round_trips_through_pillow() -> None:
    w, h, pitch = 3, 2, 16  # padded rows, as a 256-aligned readback has
    rows = [bytes([10 * y + x, 100, 200, 255 - x]) for y in range(h) for x in range(w)]
    raw = b"".join(b"".join(rows[y * w:(y + 1) * w]) + b"\xee" * (pitch - 4 * w) for y in range(h))
    img = Image.open(io.BytesIO(png.encode_rgba(w, h, raw, pitch)))
    assert img.mode == "RGBA" and img.size == (w, h)
    assert [img.getpixel((x, y)) for y in range(h) for x in range(w)] == [tuple(r) for r in rows]
    with pytest.raises(ValueError):
        png.encode_rgba(4, 4, b"\0" * 10)


def test_a_report_without_checks_never_passes() -> None:
    r = Report("vulkan").finish()
    assert r.status == "failed" and r.exit_code == 1 and not r.passed


def test_render_checks_catch_a_flipped_image() -> None:
    inputs = scene.make_inputs(7)
    good = bytes(b for y in range(scene.HEIGHT) for x in range(scene.WIDTH)
                 for b in scene.expected_pixel(x, y, inputs.clear))
    r = Report("vulkan")
    scene.check_render(r, inputs, good)
    assert r.finish().passed
    row = scene.WIDTH * 4
    flipped = b"".join(good[y * row:(y + 1) * row] for y in reversed(range(scene.HEIGHT)))
    r = Report("vulkan")
    scene.check_render(r, inputs, flipped)
    assert not r.finish().passed and "flip guard" in r.reason


def test_compute_check_names_the_first_bad_element() -> None:
    inputs = scene.make_inputs(3)
    want = scene.expected_compute(inputs.data)
    want[17] ^= 1
    r = Report("webgpu")
    scene.check_compute(r, inputs, b"".join(v.to_bytes(4, "little") for v in want))
    assert not r.finish().passed and "first at [17]" in r.reason


def _sample_reports() -> list[Report]:
    ok = Report("vulkan")
    ok.adapter = Adapter("0x10005", "llvmpipe", "vulkan 1.3", "cpu", "llvmpipe Mesa", "software")
    ok.check("compute element-by-element", True, "4096 match")
    ok.artifacts.append("vulkan-render.png")
    ok.finish()
    absent = Report("dawn")
    absent.status, absent.exit_code, absent.reason = "unsupported", 10, "Dawn rejected the adapter: x"
    return [ok, absent]


def test_documents_validate_against_the_schema() -> None:
    reports = _sample_reports()
    for r in reports:
        VALIDATOR.validate(r.to_dict())
    VALIDATOR.validate(to_document(reports, "gpu"))
    bad = reports[0].to_dict() | {"passed": False}  # status passed but passed false
    assert list(VALIDATOR.iter_errors(bad))


def test_outputs_and_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    write_outputs(_sample_reports(), tmp_path / "art", environ={"GITHUB_STEP_SUMMARY": str(summary)}, name="gpu")
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, not overwritten
    assert "canary `vulkan`: passed" in text and "**software**" in text and "](vulkan-render.png)" in text
    assert "canary `dawn`: unsupported" in text
    VALIDATOR.validate(json.loads((tmp_path / "art" / "canary-gpu.json").read_text()))


def test_outcome_ranks_a_failed_check_first() -> None:
    ok, unsupported = _sample_reports()
    failed = Report("kvm")
    failed.check("guest sum on port", False, "got 1, want 2")
    failed.finish()
    assert outcome([ok]) is None
    assert int(outcome([ok, unsupported]).exit_code) == 10
    err = outcome([unsupported, failed])
    assert int(err.exit_code) == 1 and "kvm failed" in str(err) and "dawn unsupported" in str(err)


def test_importing_the_canary_cli_stays_light() -> None:
    code = ("import sys, flywheel_runtime.canary, flywheel_runtime.canary._cli, flywheel_runtime.cli as c; "
            "c.build_parser(); "
            "print(sorted(m for m in ('vulkan', 'wgpu', 'kubernetes', 'pynvml', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
