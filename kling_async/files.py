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
from .convert import structure
from .errors import KlingError, PayloadError, RequestValidationError
from .models import AssetUpload, TaskResponse, Work
from .requests import ImageSource, is_remote
from .transport import Transport

__all__ = ["SAFE_EXTENSIONS", "UPLOAD_TYPES", "Downloads", "Uploads", "guess_content_type"]

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
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
#: The extensions a downloaded file may keep; any other becomes .png or .mp4.
SAFE_EXTENSIONS: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".mov"})


def guess_content_type(source: ImageSource, data: bytes) -> str | None:
    """The content type of an upload: sniffed from ``data``, else guessed from the name."""
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    if len(data) > 12 and data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:10] == b"qt" else "video/mp4"
    if isinstance(source, str | os.PathLike):
        guessed, _ = mimetypes.guess_type(os.fspath(source))
        return guessed
    return None


async def _read_source(source: ImageSource) -> bytes:
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
        if not asset.url:
            raise PayloadError(f"POST assets/: the answer has no url: {answer!r}"[:300])
        log.debug("uploaded %d bytes (%s) as %s", len(data), content_type, asset.file_name)
        return asset.url


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
        clean: bool,
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
            if clean:
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
            video = work is not None and (work.content_type or "").lower() == "video"
            suffix = ".mp4" if video else ".png"
        final = folder / f"{stem}{suffix}"
        partial = folder / f".{stem}{suffix}.part"
        try:
            await self._transport.stream_to(url, partial, f"download of {stem}")
        except BaseException:
            partial.unlink(missing_ok=True)  # failed or cancelled: no stray .part
            raise
        partial.replace(final)
        return final
