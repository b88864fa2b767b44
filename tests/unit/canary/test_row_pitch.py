"""The render's row-pitch check reads the pitch from the readback, never from what a script says it used."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from flywheel_runtime.canary import dawn, scene
from flywheel_runtime.canary.report import Report

CHECK = f"render row pitch aligned to {scene.PITCH_ALIGN}"


def _image(inputs: scene.Inputs, pitch: int, pad: int) -> bytes:
    """What a texture-to-buffer copy at ``pitch`` leaves in a buffer pre-filled with ``pad``."""
    rows = []
    for y in range(scene.HEIGHT):
        px = b"".join(bytes(scene.expected_pixel(x, y, inputs.clear)) for x in range(scene.WIDTH))
        rows.append(px + bytes([pad]) * (pitch - len(px)))
    return b"".join(rows)


def _result(report: Report, name: str) -> bool:
    [c] = [c for c in report.checks if c.name == name]
    return c.passed


def test_aligned_readback_with_untouched_padding_passes() -> None:
    inputs = scene.make_inputs(7)
    report = Report("t")
    assert scene.check_row_pitch(report, inputs, _image(inputs, 512, inputs.pad)) == 512
    assert _result(report, CHECK)


@pytest.mark.parametrize("pitch,pad_from,why", [
    (320, None, "tight rows: a 256-aligned copy cannot have produced them"),
    (512, "clear", "padding holds pixel bytes, not the pad the buffer was filled with"),
])
def test_misaligned_or_overwritten_readback_fails(pitch: int, pad_from: str | None, why: str) -> None:
    inputs = scene.make_inputs(7)
    pad = inputs.clear[0] if pad_from == "clear" else inputs.pad
    report = Report("t")
    scene.check_row_pitch(report, inputs, _image(inputs, pitch, pad))
    assert not _result(report, CHECK), why


def test_pad_byte_differs_from_every_pixel_value() -> None:
    for seed in range(50):
        inputs = scene.make_inputs(seed)
        assert inputs.pad not in (*inputs.clear, 0, 255)
        assert inputs.to_json()["pad"] == inputs.pad


def test_dawn_pitch_comes_from_the_readback_not_the_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A script that claims a 512-byte pitch but returns tight 320-byte rows fails the check."""

    def fake_run(_dir: Path, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
        inputs = scene.Inputs(payload["seed"], tuple(scene.make_inputs(payload["seed"]).data),
                              tuple(payload["clear"]), payload["pad"])
        compute = b"".join(v.to_bytes(4, "little") for v in scene.expected_compute(inputs.data))
        return ({"status": "ran", "adapter": {"vendor": "mesa", "device": "llvmpipe", "architecture": "software"},
                 "errors": [], "compute_b64": base64.b64encode(compute).decode(),
                 "render_b64": base64.b64encode(_image(inputs, scene.WIDTH * 4, inputs.pad)).decode(),
                 "row_pitch": 512}, "")

    monkeypatch.setattr(dawn, "run_script", fake_run)
    report = dawn.canary(seed=11, dawn_dir=tmp_path)
    assert _result(report, "compute element-by-element")
    assert not _result(report, CHECK)
    assert report.status != "passed"
