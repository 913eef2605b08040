"""Result files the simulator serves: tiny but valid PNG and MP4 bytes.

Images are solid colour PNGs sized to the requested aspect ratio (about 64 pixels on the long
side); videos are hand-built ISO-BMFF files (``ftyp`` + ``moov`` + ``mdat``). The
"watermarked" files behind ``works[].resource.resource`` and the "clean" ones behind
``GET /assets/download`` differ in colour (PNG) and in their ``mdat`` payload (MP4), so tests
can tell which copy a client fetched.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Final

__all__ = [
    "CLEAN_MP4_PAYLOAD",
    "CLEAN_RGB",
    "WATERMARKED_MP4_PAYLOAD",
    "WATERMARKED_RGB",
    "dimensions",
    "image_size",
    "mp4",
    "png",
    "result_file",
]

WATERMARKED_RGB: Final = (200, 200, 200)
"""Colour of every pixel of a watermarked result image (``works[].resource.resource``)."""
CLEAN_RGB: Final = (30, 120, 200)
"""Colour of every pixel of a clean result image (``GET /assets/download``)."""
WATERMARKED_MP4_PAYLOAD: Final = b"kling-async simulator: watermarked video"
CLEAN_MP4_PAYLOAD: Final = b"kling-async simulator: clean video"

_LONG_SIDE: Final = 64
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def dimensions(aspect_ratio: str) -> tuple[int, int]:
    """Width and height of a result for ``aspect_ratio`` ("16:9" -> (64, 36)), exact ratio."""
    w, h = (int(part) for part in aspect_ratio.split(":"))
    k = max(1, _LONG_SIDE // max(w, h))
    return w * k, h * k


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=64)
def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid 8-bit RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *payload)  # version 0


_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@functools.lru_cache(maxsize=64)
def mp4(width: int, height: int, duration_ms: int, payload: bytes) -> bytes:
    """A small structurally valid MP4: ftyp, moov (one video track, no samples), mdat."""
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    mvhd = _full_box(
        b"mvhd",
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, duration_ms, 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),
    )
    tkhd = _full_box(
        b"tkhd",
        3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration_ms),
        bytes(8),
        struct.pack(">HHHH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, 1000, duration_ms, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, struct.pack(">I", 0), b"vide", bytes(12), b"VideoHandler\x00")
    dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, struct.pack(">I", 0)),
        _full_box(b"stts", 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, struct.pack(">I", 0)),
    )
    minf = _box(b"minf", _full_box(b"vmhd", 1, bytes(8)), dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return ftyp + _box(b"moov", mvhd, trak) + _box(b"mdat", payload)


def result_file(
    kind: str, width: int, height: int, duration_ms: int, *, clean: bool
) -> tuple[bytes, str]:
    """Bytes and content type of a result: ``kind`` is "png" or "mp4"."""
    if kind == "mp4":
        payload = CLEAN_MP4_PAYLOAD if clean else WATERMARKED_MP4_PAYLOAD
        return mp4(width, height, duration_ms, payload), "video/mp4"
    return png(width, height, CLEAN_RGB if clean else WATERMARKED_RGB), "image/png"


_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG or JPEG bytes, or None when they are neither."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + int(length)
    return None
