"""The proof every GPU canary runs, as data: a compute job and a render, plus their checks.

Vulkan, wgpu and Dawn all execute this same scene; the inputs (compute data,
clear colour) are drawn fresh per run so no result can be canned, and the
checks here read only what came back from the device.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

from flywheel_runtime.canary.report import Report

# 80 px rows are 320 bytes: a WebGPU readback pads them to 512, which the checks must undo
WIDTH, HEIGHT = 80, 64
COMPUTE_N = 4096
WORKGROUP = 64
PITCH_ALIGN = 256  # WebGPU's bytesPerRow alignment for texture-to-buffer copies
MULT, XOR = 3, 0xA5A5A5A5  # data[i] = (data[i] * 3 + i) ^ 0xA5A5A5A5 (mod 2**32), as in the shaders

# Quads in pixel space (x0, y0, x1, y1), half-open, y down; the shaders hold the same
# rectangles in NDC with +y up (the Vulkan vertex shader flips y to match).
QUADS = (
    ((10, 8, 40, 32), (255, 0, 0, 255)),    # NDC x -0.75..0, y 0..0.75: red, top left
    ((50, 40, 70, 56), (0, 255, 0, 255)),   # NDC x 0.25..0.75, y -0.75..-0.25: green, bottom right
)


@dataclass(frozen=True)
class Inputs:
    seed: int
    data: tuple[int, ...]
    clear: tuple[int, int, int, int]  # RGBA8, rendered from clear / 255.0
    # Fills the render readback before the copy: a correct copy leaves it in every
    # row's padding, so the row pitch is read from what came back.
    pad: int = 0xA7

    @property
    def clear_float(self) -> tuple[float, float, float, float]:
        return tuple(c / 255.0 for c in self.clear)  # type: ignore[return-value]

    def data_bytes(self) -> bytes:
        return struct.pack(f"<{len(self.data)}I", *self.data)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "n": len(self.data), "clear": list(self.clear), "width": WIDTH, "height": HEIGHT,
                "workgroup": WORKGROUP, "pad": self.pad}


def make_inputs(seed: int | None = None) -> Inputs:
    seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
    rng = random.Random(seed)
    data = tuple(rng.randrange(1 << 32) for _ in range(COMPUTE_N))
    # keep the clear colour away from the quad colours so a missing quad is visible
    clear = (rng.randrange(16, 200), rng.randrange(16, 200), rng.randrange(16, 200), 255)
    # a pad byte no pixel can hold (quads are 0/255, the clear colour is known)
    pad = rng.choice([v for v in range(1, 255) if v not in clear])
    return Inputs(seed, data, clear, pad)


def expected_compute(data: tuple[int, ...]) -> list[int]:
    return [((v * MULT + i) & 0xFFFFFFFF) ^ XOR for i, v in enumerate(data)]


def expected_pixel(x: int, y: int, clear: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    for (x0, y0, x1, y1), colour in QUADS:
        if x0 <= x < x1 and y0 <= y < y1:
            return colour
    return clear


# Probes named for the report: the quads, the clear colour on every side, and the
# spots a y-flipped image would paint.
PROBES = (("red quad", 20, 20), ("green quad", 60, 48), ("clear top-left", 2, 2), ("clear bottom-right", 77, 61),
          ("clear top-right (flip guard)", 60, 20), ("clear bottom-left (flip guard)", 20, 48))


def check_compute(report: Report, inputs: Inputs, out: bytes) -> None:
    n = len(inputs.data)
    if len(out) < 4 * n:
        report.check("compute readback", False, f"read back {len(out)} bytes, expected {4 * n}")
        return
    got = struct.unpack_from(f"<{n}I", out)
    want = expected_compute(inputs.data)
    bad = [i for i in range(n) if got[i] != want[i]]
    detail = (f"{n} elements of (x*{MULT}+i)^0x{XOR:08X} match (seed {inputs.seed})" if not bad else
              f"{len(bad)}/{n} elements differ; first at [{bad[0]}]: got {got[bad[0]]:#x}, want {want[bad[0]]:#x}")
    report.check("compute element-by-element", not bad, detail)


def check_row_pitch(report: Report, inputs: Inputs, rgba: bytes) -> int | None:
    """The render readback's row pitch as the bytes show it, checked; None if it has none.

    The readback was filled with ``inputs.pad`` before the copy, so the pitch is
    the readback's length over its rows, and a copy whose rows were laid out at any
    other pitch leaves pixel bytes in the padding (or pad bytes in a row).
    """
    pitch, rest = divmod(len(rgba), HEIGHT)
    row = WIDTH * 4
    if rest or pitch < row:
        report.check(f"render row pitch aligned to {PITCH_ALIGN}", False,
                     f"read back {len(rgba)} bytes: not {HEIGHT} rows of at least {row} bytes")
        return None
    fill = bytes([inputs.pad]) * (pitch - row)
    dirty = [y for y in range(HEIGHT) if rgba[y * pitch + row:(y + 1) * pitch] != fill]
    ok = pitch % PITCH_ALIGN == 0 and not dirty
    detail = (f"{len(rgba)} bytes = {HEIGHT} rows of {pitch} ({row} of pixels, {pitch - row} of padding"
              + (", untouched)" if not dirty else f"; padding of {len(dirty)} rows overwritten, first row {dirty[0]})"))
    report.check(f"render row pitch aligned to {PITCH_ALIGN}", ok, detail)
    return pitch


def check_render(report: Report, inputs: Inputs, rgba: bytes, row_pitch: int | None = None) -> None:
    pitch = row_pitch or WIDTH * 4
    if len(rgba) < pitch * (HEIGHT - 1) + WIDTH * 4:
        report.check("render readback", False, f"read back {len(rgba)} bytes, expected {pitch * HEIGHT}")
        return

    def px(x: int, y: int) -> tuple[int, ...]:
        o = y * pitch + x * 4
        return tuple(rgba[o:o + 4])

    for name, x, y in PROBES:
        want, got = expected_pixel(x, y, inputs.clear), px(x, y)
        report.check(f"pixel {name} ({x},{y})", got == want, f"got {got}, want {want}")
    wrong = [(x, y) for y in range(HEIGHT) for x in range(WIDTH) if px(x, y) != expected_pixel(x, y, inputs.clear)]
    report.check("render full image", not wrong,
                 f"all {WIDTH * HEIGHT} pixels match" if not wrong else
                 f"{len(wrong)} pixels differ; first at {wrong[0]}: got {px(*wrong[0])}, "
                 f"want {expected_pixel(*wrong[0], inputs.clear)}")


def tight_rgba(rgba: bytes, row_pitch: int) -> bytes:
    """Drop the row padding a 256-byte-aligned readback carries."""
    if row_pitch == WIDTH * 4:
        return bytes(rgba[: WIDTH * HEIGHT * 4])
    return b"".join(bytes(rgba[y * row_pitch: y * row_pitch + WIDTH * 4]) for y in range(HEIGHT))
