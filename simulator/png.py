"""Tiny PNG encoder (zlib only): the simulator's results are real PNGs without Pillow."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@lru_cache(maxsize=64)
def _blank(width: int, height: int) -> tuple[bytes, bytes]:
    """IHDR and IDAT of a one-bit palette image whose every pixel is palette entry 0."""
    header = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    return _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(row * height, 9))


@lru_cache(maxsize=1024)
def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``width`` x ``height`` PNG of one colour.

    The pixels are the same for every colour (a palette index); only the one-entry
    palette differs, so a new colour costs a few bytes, not an encode of the whole
    image: the simulator shares the machine with the worker it is benchmarking.
    """
    header, pixels = _blank(width, height)
    return (
        b"\x89PNG\r\n\x1a\n" + header + _chunk(b"PLTE", bytes(rgb)) + pixels + _chunk(b"IEND", b"")
    )


def colour_for(seed: int) -> tuple[int, int, int]:
    """A colour that differs by seed, so seed and seed+1 give different images."""
    mixed = ((seed % 251) * 2654435761) & 0xFFFFFF
    return (mixed >> 16) & 0xFF, (mixed >> 8) & 0xFF, mixed & 0xFF
