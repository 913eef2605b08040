"""Files: uploads to ``POST /assets`` and downloads of a task's results.

Uploads: the content type is sniffed from the bytes (PNG, JPEG, MP4/MOV) or guessed from
the file name, checked against the assets page's limits, and each content is uploaded
once per account (keyed by its sha256) for the life of the client.

Downloads: the clean (unwatermarked) copy from ``GET /assets/download`` is preferred; a
file's name is ``{task_id}-{index}{ext}`` with a known extension only, so it never leaves
the folder; it is streamed into a hidden ``.part`` file renamed when complete (removed on
any failure). Downloads never carry the token (`Transport.stream_to`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from .accounts import email_params
from .config import DEFAULT_MAX_DOWNLOAD_BYTES
from .convert import structure
from .errors import KlingError, PayloadError, RequestValidationError
from .models import AssetUpload, TaskResponse, Work
from .requests import ImageSource, is_remote, sniff
from .transport import Transport

__all__ = [
    "MIN_IMAGE_SIDE",
    "SAFE_EXTENSIONS",
    "UPLOAD_TYPES",
    "Downloads",
    "Uploads",
    "check_download",
    "check_upload",
    "download_kind",
    "guess_content_type",
    "image_size",
]

log = logging.getLogger("kling_async")

#: Upload content types and size limits (bytes), from the assets page.
UPLOAD_TYPES: Final[Mapping[str, int]] = {
    "image/png": 10 << 20,
    "image/jpeg": 10 << 20,
    "video/mp4": 100 << 20,
    "video/quicktime": 100 << 20,
    "audio/wav": 20 << 20,
    "audio/wave": 20 << 20,
    "audio/mpeg": 20 << 20,
    "audio/mp4": 20 << 20,
    "audio/flac": 20 << 20,
    "audio/aac": 20 << 20,
    "audio/ogg": 20 << 20,
}
#: The extensions a downloaded file may keep; any other becomes .png or .mp4.
SAFE_EXTENSIONS: Final = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".mov"}
    | {".mp3", ".wav", ".m4a", ".flac", ".aac", ".ogg"}
)


def guess_content_type(source: ImageSource, data: bytes) -> str | None:
    """The content type of an upload: sniffed from ``data`` (images, videos, audio, as
    the request layer tells them), else guessed from the name."""
    sniffed = sniff(data[:64])
    if sniffed is not None:
        return sniffed[1]
    if isinstance(source, str | os.PathLike):
        guessed, _ = mimetypes.guess_type(os.fspath(source))
        return guessed
    return None


#: The smallest image side the assets page accepts (pixels).
MIN_IMAGE_SIDE: Final = 300


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG, or None when the header cannot be read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 < len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
            if marker in _JPEG_FRAMES:
                return (
                    int.from_bytes(data[at + 7 : at + 9], "big"),
                    int.from_bytes(data[at + 5 : at + 7], "big"),
                )
            at += 2 + length
    return None


_JPEG_FRAMES: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB})


def check_upload(data: bytes, content_type: str) -> None:
    """`RequestValidationError` (field ``source``) for an image the assets page refuses:
    bytes that are not the image type claimed, or a side under 300 px."""
    if content_type not in ("image/png", "image/jpeg"):
        return
    size = image_size(data)
    if size is None:
        raise RequestValidationError(
            f"source: not a readable {content_type.split('/')[1].upper()} image", field="source"
        )
    if min(size) < MIN_IMAGE_SIDE:
        raise RequestValidationError(
            f"source: image is {size[0]}x{size[1]} px; the minimum side is {MIN_IMAGE_SIDE} px",
            field="source",
        )


def download_kind(path: Path) -> str:
    """The `ClientConfig.max_download_bytes` kind of a file name (by its extension)."""
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
        return "image"
    if suffix in (".mp4", ".mov"):
        return "video"
    if suffix in (".mp3", ".wav", ".m4a", ".flac", ".aac", ".ogg"):
        return "audio"
    return "other"


def check_download(data_head: bytes, data_tail: bytes, size: int, suffix: str) -> str | None:
    """Why a downloaded file is not what its name says (None when it is): the magic bytes
    of its type, and for PNG/JPEG the end marker, so a body cut short without a
    Content-Length is caught."""
    if suffix in (".png", ".jpg", ".jpeg"):
        # CDNs name files loosely: a PNG behind a .jpg URL is still the image asked for.
        if data_head.startswith(b"\x89PNG\r\n\x1a\n"):
            if not data_tail.endswith(b"IEND\xaeB`\x82"):
                return "a PNG file cut short (no IEND chunk)"
        elif data_head.startswith(b"\xff\xd8\xff"):
            if not data_tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
                return "a JPEG file cut short (no end marker)"
        else:
            return f"not a {suffix[1:].upper()} image"
    elif suffix in (".mp4", ".mov"):
        if len(data_head) < 12 or data_head[4:8] != b"ftyp":
            return "not an MP4/MOV file"
    elif suffix == ".zip" and not data_head.startswith(b"PK\x03\x04"):
        return "not a zip file"
    elif data_head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    return None


def _check_file(path: Path, suffix: str) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(64)
        handle.seek(max(0, size - 64))
        tail = handle.read(64)
    if suffix in (".mp4", ".mov"):
        reason = check_download(head, tail, size, suffix)
        return reason or _mp4_boxes_fit(path, size)
    return check_download(head, tail, size, suffix)


def _mp4_boxes_fit(path: Path, size: int) -> str | None:
    """An MP4's top-level boxes must end exactly at the end of the file."""
    at = 0
    with path.open("rb") as handle:
        while at < size:
            handle.seek(at)
            header = handle.read(16)
            if len(header) < 8:
                return "an MP4 file cut short"
            length = int.from_bytes(header[:4], "big")
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                return None  # the last box runs to the end of the file
            if length < 8:
                return "an MP4 file with a broken box"
            at += length
    return None if at == size else "an MP4 file cut short"


async def _read_source(source: ImageSource) -> bytes:
    given: object = source  # callers without a type checker pass anything
    if not isinstance(given, str | bytes | bytearray | os.PathLike):
        raise RequestValidationError(
            f"source: a file path or bytes, got {type(given).__name__}", field="source"
        )
    if isinstance(source, bytes | bytearray):
        if not source:
            raise RequestValidationError("source: empty bytes", field="source")
        return bytes(source)
    if isinstance(source, str) and is_remote(source):
        raise RequestValidationError(
            "source: already a URL; pass it to the request as is", field="source"
        )
    path = Path(os.fspath(source))
    if not await asyncio.to_thread(path.is_file):
        raise RequestValidationError(f"source: no such file {str(path)!r}", field="source")
    return await asyncio.to_thread(path.read_bytes)


class Uploads:
    """``POST /assets`` with a per-account, per-content memory of what was uploaded."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._pending: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def upload(self, source: ImageSource, content_type: str | None, email: str | None) -> str:
        """Upload a file (path or bytes) to ``email``'s account; return its URL."""
        data = await _read_source(source)
        ctype = content_type or guess_content_type(source, data)
        if ctype is None or ctype not in UPLOAD_TYPES:
            raise RequestValidationError(
                f"content_type: {ctype or 'unknown'} is not supported; one of "
                + ", ".join(UPLOAD_TYPES),
                field="content_type",
            )
        if len(data) > UPLOAD_TYPES[ctype]:
            raise RequestValidationError(
                f"source: {len(data)} bytes is over the {UPLOAD_TYPES[ctype] >> 20} MB limit "
                f"for {ctype}",
                field="source",
            )
        check_upload(data, ctype)
        key = (email or "", hashlib.sha256(data).hexdigest())
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._post(data, ctype, email))
            self._pending[key] = pending
        try:
            return await asyncio.shield(pending)
        except BaseException:
            if pending.done() and (pending.cancelled() or pending.exception() is not None):
                self._pending.pop(key, None)  # let a later call try again
            raise

    async def _post(self, data: bytes, content_type: str, email: str | None) -> str:
        answer = await self._transport.call(
            "POST",
            "assets/",
            params=email_params(email),
            data=data,
            content_type=content_type,
            timeout=self._transport.transfer_timeout,
        )
        asset = structure(answer, AssetUpload)
        # A video's processed file is resourceUrl; its answer may have no url at all.
        url = asset.resource_url if content_type.startswith("video/") else None
        url = url or asset.url or asset.resource_url
        if not url:
            raise PayloadError(f"POST assets/: the answer has no url: {answer!r}"[:300])
        log.debug("uploaded %d bytes (%s) as %s", len(data), content_type, asset.file_name)
        return url


class Downloads:
    """A task's result files, streamed to a folder."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def download(
        self,
        response: TaskResponse,
        folder: str | os.PathLike[str],
        *,
        email: str | None,
        covers: bool,
        clean: bool | None,
    ) -> list[Path]:
        """Every work's file (and, with ``covers``, its cover) in ``folder``: the paths."""
        target = Path(folder)
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        task_id = response.task_id or 0
        paths: list[Path] = []
        for index, work in enumerate(response.works):
            url = work.url
            if not url:
                continue
            # Default (None): like useapi.net's own scripts, the clean copy for videos and
            # audio, the image straight from resource.resource (the clean download is
            # documented for paid accounts only).
            image = (work.content_type or "image").lower() == "image"
            if clean or (clean is None and not image):
                url = await self._clean_url(work, email) or url
            stem = f"{task_id}-{index}"
            paths.append(await self._fetch(url, target, stem, work))
            if covers and work.cover is not None and work.cover.resource:
                paths.append(await self._fetch(work.cover.resource, target, f"{stem}-cover", None))
        return paths

    async def _clean_url(self, work: Work, email: str | None) -> str | None:
        if work.work_id is None:
            return None
        file_type = "MP4" if (work.content_type or "").lower() == "video" else "PNG"
        try:
            data = await self._transport.call(
                "GET",
                "assets/download",
                params=email_params(email, workIds=work.work_id, fileTypes=file_type),
            )
        except KlingError as exc:
            log.info("no clean copy of work %s (%s); using the watermarked file", work.work_id, exc)
            return None
        url = data.get("cdnUrl") if isinstance(data, Mapping) else None
        return url if isinstance(url, str) and is_remote(url) else None

    async def _fetch(self, url: str, folder: Path, stem: str, work: Work | None) -> Path:
        if not is_remote(url):
            raise PayloadError(f"refusing to download a non-http(s) URL: {url[:100]!r}")
        suffix = Path(urlsplit(url).path).suffix.lower()
        if suffix not in SAFE_EXTENSIONS:
            kind = (work.content_type or "").lower() if work is not None else ""
            suffix = {"video": ".mp4", "audio": ".mp3"}.get(kind, ".png")
        return await self.save(url, folder / f"{stem}{suffix}")

    async def save(self, url: str, final: Path) -> Path:
        """Stream ``url`` into ``final`` through a hidden ``.part`` beside it: capped by
        `ClientConfig.max_download_bytes`, checked against the type its suffix names;
        `PayloadError` (nothing left on disk) otherwise."""
        if not is_remote(url):
            raise PayloadError(f"refusing to download a non-http(s) URL: {url[:100]!r}")
        suffix = final.suffix.lower()
        partial = final.with_name(f".{final.name}.part")
        what = f"download of {final.stem}"
        limits = self._transport.config.max_download_bytes
        kind = download_kind(final)
        limit = limits.get(kind, DEFAULT_MAX_DOWNLOAD_BYTES[kind])
        try:
            await self._transport.stream_to(url, partial, what, limit=limit)
            reason = await asyncio.to_thread(_check_file, partial, suffix)
            if reason is not None:
                raise PayloadError(f"{what}: {reason}, not saved as {final.name}")  # noqa: TRY301
        except BaseException:
            partial.unlink(missing_ok=True)  # failed or cancelled: no stray .part
            raise
        partial.replace(final)
        return final
