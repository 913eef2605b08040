"""Local file inputs checked before anything is sent: size, type by magic bytes, dimensions.

The limits are POST /assets' (assets.md): images PNG/JPEG up to 10 MB and at least 300 px on
each side, videos MP4/MOV up to 100 MB, audio WAV/MP3/M4A/FLAC/AAC/OGG up to 20 MB. A file
that breaks them would fail at upload time, after a batch may have paid for other jobs.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ..errors import RequestValidationError

#: A file input: an http(s) URL, a local path, or the file's bytes.
ImageSource = str | bytes | os.PathLike[str]

MB: Final = 1024 * 1024
MAX_BYTES: Final = {"image": 10 * MB, "video": 100 * MB, "audio": 20 * MB}
MIN_IMAGE_SIDE: Final = 300
_WHAT: Final = {
    "image": "an image (PNG or JPEG)",
    "video": "a video (MP4 or MOV)",
    "audio": "audio (WAV, MP3, M4A, FLAC, AAC or OGG)",
}
#: Enough of a video or audio file to tell its type.
_HEAD: Final = 64


def is_remote(image: ImageSource) -> bool:
    """Whether an input is a URL the API can fetch (as opposed to a local file or bytes)."""
    if not isinstance(image, str):
        return False
    return image[:8].lower().startswith(("https://", "http://"))


def is_url(value: object) -> bool:
    """An http(s) URL with a host."""
    return isinstance(value, str) and is_remote(value) and bool(urlsplit(value).netloc)


def fail(field: str, problem: str) -> RequestValidationError:
    """The error for a bad value of ``field`` (its Python name or path)."""
    return RequestValidationError(f"{field}: {problem}", field=field)


def sniff(head: bytes) -> tuple[str, str] | None:
    """(media, content type) of a file by its first bytes, or None when unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"M4A"):
            return "audio", "audio/mp4"
        if brand == b"qt  ":
            return "video", "video/quicktime"
        return "video", "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "video", "video/quicktime"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head.startswith(b"ID3") or (
        len(head) > 1 and head[0] == 0xFF and head[1] in (0xFB, 0xF3, 0xF2)
    ):
        return "audio", "audio/mpeg"
    if head.startswith(b"fLaC"):
        return "audio", "audio/flac"
    if len(head) > 1 and head[0] == 0xFF and head[1] in (0xF1, 0xF9):
        return "audio", "audio/aac"
    if head.startswith(b"OggS"):
        return "audio", "audio/ogg"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG, or None when it cannot be read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0-SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def _size_text(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{size} bytes"


def check_source(field: str, source: object, media: str) -> None:
    """Check one file input of ``media`` ("image", "video", "audio"); raise naming ``field``."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise fail(field, f"{media} bytes are empty")
        _check_content(field, bytes(source), len(source), media, "the bytes")
        return
    if isinstance(source, str) and is_remote(source):
        if not is_url(source):
            raise fail(field, f"{source!r} is not a complete URL")
        return
    if isinstance(source, str | os.PathLike):
        if isinstance(source, str) and not source.strip():
            raise fail(field, "empty string; give an http(s) URL, a local path or bytes")
        path = Path(source)
        if not path.is_file():
            raise fail(
                field, f"{os.fspath(source)!r} is neither an http(s) URL nor an existing file"
            )
        _check_file(field, path, media)
        return
    raise fail(
        field, f"expected an http(s) URL, a local path or bytes, got {type(source).__name__}"
    )


def _check_file(field: str, path: Path, media: str) -> None:
    name = repr(os.fspath(path))
    try:
        size = path.stat().st_size
        if size == 0:
            raise fail(field, f"file {name} is empty")
        if size > MAX_BYTES[media]:
            raise fail(
                field,
                f"file {name} is {_size_text(size)}; at most {MAX_BYTES[media] // MB} MB "
                f"for {media}",
            )
        with path.open("rb") as stream:
            # An image is read whole (at most 10 MB) to find a JPEG's size marker.
            data = stream.read() if media == "image" else stream.read(_HEAD)
    except OSError as exc:
        raise fail(field, f"cannot read {name}: {exc.strerror or exc}") from None
    _check_content(field, data, size, media, f"file {name}")


def _check_content(field: str, data: bytes, size: int, media: str, what: str) -> None:
    if size > MAX_BYTES[media]:
        raise fail(
            field, f"{what} are {_size_text(size)}; at most {MAX_BYTES[media] // MB} MB for {media}"
        )
    found = sniff(data[:_HEAD])
    if found is None:
        raise fail(field, f"{what}: not {_WHAT[media]} by its first bytes")
    kind, content_type = found
    if kind != media:
        raise fail(field, f"{what}: {content_type}, expected {_WHAT[media]}")
    if media == "image":
        dims = image_size(data)
        if dims is None:
            raise fail(field, f"{what}: cannot read the image size ({content_type})")
        width, height = dims
        if min(width, height) < MIN_IMAGE_SIDE:
            raise fail(
                field,
                f"{what}: {width}x{height} px; at least {MIN_IMAGE_SIDE} px on each side",
            )


def describe(source: object) -> str:
    """A short description of a local input for error messages (never its content)."""
    if isinstance(source, bytes | bytearray):
        return f"file bytes ({len(source)} bytes)"
    if isinstance(source, str | os.PathLike):
        return f"local file {os.fspath(source)!r}"
    return type(source).__name__
