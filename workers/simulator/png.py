"""Tiny PNG encoder (zlib only): the simulator's results are real PNGs without Pillow."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@lru_cache(maxsize=1024)
def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``width`` x ``height`` PNG of one colour (cached: the simulator serves many)."""
    row = b"\x00" + bytes(rgb) * width
    pixels = zlib.compress(row * height, 6)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def colour_for(seed: int) -> tuple[int, int, int]:
    """A colour that differs by seed, so seed and seed+1 give different images. One of 251
    colours, so that the encoded images stay in the cache: the simulator's CPU is not the
    worker's, and a benchmark on one machine should spend it on the worker."""
    mixed = ((seed % 251) * 2654435761) & 0xFFFFFF
    return (mixed >> 16) & 0xFF, (mixed >> 8) & 0xFF, mixed & 0xFF
