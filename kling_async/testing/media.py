"""Result files the simulator serves: tiny but real PNG images and playable MP4 videos.

Images are PNGs sized to the requested aspect ratio (about 64 pixels on the long side) in one
base colour with diagonal stripes whose spacing and colour follow a per-task ``pattern``, so a
gallery of results shows different pictures. Videos are one real H.264 clip (constrained
baseline, yuv420p, faststart, 64x36, 1 s; made once with ffmpeg's ``testsrc2`` and shipped as
``clip.mp4`` beside this module) that browsers play. The "watermarked" files behind
``works[].resource.resource`` and the "clean" ones behind ``GET /assets/download`` differ in
base colour (PNG; the first pixel always has it) and by a trailing ``free`` box holding
:data:`CLEAN_MP4_PAYLOAD` or :data:`WATERMARKED_MP4_PAYLOAD` (MP4; players ignore it), so tests
can tell which copy a client fetched.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math
import struct
import wave
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
    "video",
    "wav",
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


@functools.lru_cache(maxsize=256)
def png(width: int, height: int, rgb: tuple[int, int, int], pattern: int | None = None) -> bytes:
    """A valid 8-bit RGB PNG in colour ``rgb``; with ``pattern``, striped after that number.

    Equal ``pattern`` values give equal pictures, different ones (e.g. task id + work index)
    visibly different stripes; pixel (0, 0) always has ``rgb``.
    """
    if pattern is None:
        raw = (b"\x00" + bytes(rgb) * width) * height
    else:
        period = 4 + pattern % 7
        ink = bytes(((pattern * 97) % 256, (pattern * 57 + 80) % 256, (pattern * 31 + 160) % 256))
        base = bytes(rgb)
        rows = []
        for y in range(height):
            pixels = (
                ink if (x + y + pattern) % period < 2 and (x, y) != (0, 0) else base
                for x in range(width)
            )
            rows.append(b"\x00" + b"".join(pixels))
        raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=2)
def video(payload: bytes = b"") -> bytes:
    """The shipped playable H.264 clip, with ``payload`` in a trailing ``free`` box if given."""
    clip = importlib.resources.files(__package__).joinpath("clip.mp4").read_bytes()
    return clip + (_box(b"free", payload) if payload else b"")


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *payload)  # version 0


_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@functools.lru_cache(maxsize=64)
def mp4(width: int, height: int, duration_ms: int, payload: bytes) -> bytes:
    """A small structurally valid MP4 (ftyp, moov with one sample-less track, mdat); not
    playable: results use :func:`video`. Kept for code that wants a synthetic file."""
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
    kind: str, width: int, height: int, duration_ms: int, *, clean: bool, pattern: int = 0
) -> tuple[bytes, str]:
    """Bytes and content type of a result: ``kind`` is "png" (striped after ``pattern``),
    "wav" (a tone) or "mp4" (the playable clip; ``width``/``height``/``duration_ms`` are what
    the task reports)."""
    if kind == "wav":
        return wav(max(duration_ms, 100), pattern), "audio/wav"
    if kind == "mp4":
        return video(CLEAN_MP4_PAYLOAD if clean else WATERMARKED_MP4_PAYLOAD), "video/mp4"
    return png(width, height, CLEAN_RGB if clean else WATERMARKED_RGB, pattern), "image/png"


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


_WAV_RATE: Final = 8000


@functools.lru_cache(maxsize=16)
def wav(duration_ms: int, pattern: int = 0) -> bytes:
    """A real mono 8 kHz 16-bit WAV: a sine tone whose pitch follows ``pattern``, at most 1 s
    long (the task reports the longer ``duration_ms``; the file stays tiny)."""
    frames = _WAV_RATE * min(duration_ms, 1000) // 1000
    pitch = 220 + (pattern % 8) * 55
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * pitch * i / _WAV_RATE)))
        for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_WAV_RATE)
        out.writeframes(samples)
    return buffer.getvalue()
