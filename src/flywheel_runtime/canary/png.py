"""A tiny PNG writer (stdlib only): RGBA8, no filtering, one IDAT chunk.

Pillow is a test-only dependency, so the canaries write their renders themselves.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_rgba(width: int, height: int, rgba: bytes, row_pitch: int | None = None) -> bytes:
    """Encode tightly packed (or ``row_pitch``-strided) RGBA8 rows as a PNG file."""
    pitch = row_pitch or width * 4
    if width <= 0 or height <= 0 or pitch < width * 4 or len(rgba) < pitch * (height - 1) + width * 4:
        raise ValueError(f"bad image: {width}x{height}, pitch {pitch}, {len(rgba)} bytes")
    raw = b"".join(b"\x00" + bytes(rgba[y * pitch: y * pitch + width * 4]) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def write_rgba(path: str | Path, width: int, height: int, rgba: bytes, row_pitch: int | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(encode_rgba(width, height, rgba, row_pitch))
    return p
