"""Assets and files: POST /assets, GET /assets/download, and the file "CDN".

Uploads are kept in memory and served at ``/uploads/{fileName}``; result files are generated
on request at ``/files/{taskId}/{i}.png`` (``{i}-clean.png`` for the clean copy),
``/files/{taskId}/0.mp4`` (``0-clean.mp4``) and ``/files/{taskId}/cover.png``; several
files of one download are zipped at ``/files/zip/{key}.zip``.
"""

from __future__ import annotations

import io
import random
import time
import zipfile
from typing import Final

from aiohttp import web

from kling_async.testing import media, wire
from kling_async.testing.answers import (
    ASSET_CONTENT_TYPES,
    ErrorAnswer,
    bad_request,
    json_response,
)
from kling_async.testing.state import SimState, SimTask

__all__ = ["ASSET_TYPES", "AssetHandlers"]

# Content-Type -> (extension, max bytes, kind), from assets.md.
_MB: Final = 1024 * 1024
ASSET_TYPES: Final = {
    "image/png": ("png", 10 * _MB, "image"),
    "image/jpeg": ("jpg", 10 * _MB, "image"),
    "video/mp4": ("mp4", 100 * _MB, "video"),
    "video/quicktime": ("mov", 100 * _MB, "video"),
    "audio/wav": ("wav", 20 * _MB, "audio"),
    "audio/wave": ("wav", 20 * _MB, "audio"),
    "audio/mpeg": ("mp3", 20 * _MB, "audio"),
    "audio/mp4": ("m4a", 20 * _MB, "audio"),
    "audio/flac": ("flac", 20 * _MB, "audio"),
    "audio/aac": ("aac", 20 * _MB, "audio"),
    "audio/ogg": ("ogg", 20 * _MB, "audio"),
}
MIN_IMAGE_SIDE: Final = 300
DOWNLOAD_TYPES: Final = ("MP4", "MP3", "WAV", "PNG")


class AssetHandlers:
    """Handlers for uploads, downloads and files (routed by the server)."""

    def __init__(self, state: SimState, *, seed: int) -> None:
        self.state = state
        self._names = random.Random(f"{seed}:uploads")  # noqa: S311 (seeded on purpose)
        self._zips: dict[str, list[tuple[SimTask, int, str]]] = {}

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """POST assets/: store the raw body."""
        content_type = request.content_type
        spec = ASSET_TYPES.get(content_type)
        if spec is None:
            raise bad_request(
                f"Content-Type {content_type} is not supported. Valid values: {ASSET_CONTENT_TYPES}"
            )
        self.state.resolve(request.query.get("email"))
        ext, limit, kind = spec
        data = bytearray()
        async for chunk in request.content.iter_chunked(256 * 1024):
            data += chunk
            if len(data) > limit:
                raise bad_request(
                    f"File size exceeds the {limit // _MB}MB limit for Content-Type {content_type}"
                )
        if not data:
            raise bad_request("Request body is empty")
        if self.state.strict_assets and kind == "image":
            size = media.image_size(bytes(data))
            if size is None:
                raise bad_request(f"File is not a valid {ext.upper()} image")
            if min(size) < MIN_IMAGE_SIDE:
                raise bad_request(
                    f"Image dimensions {size[0]}x{size[1]} are below the minimum of "
                    f"{MIN_IMAGE_SIDE}px"
                )
        name = f"{self._names.getrandbits(60):015x}.{ext}"
        self.state.uploads[name] = (content_type, bytes(data))
        self.state.counters.uploads += 1
        url = f"{self.state.root_url}/uploads/{name}"
        if kind == "video":
            cover = f"{self.state.root_url}/uploads/{name.rsplit('.', 1)[0]}-cover.png"
            return json_response(
                {"status": 1, "url": url, "message": "", "fileName": name, "resourceUrl": url,
                 "coverUrl": cover}
            )  # fmt: skip
        return json_response({"status": 3, "url": url, "message": "", "fileName": name})

    def _work(self, raw: str, account: str) -> tuple[SimTask, int]:
        if not raw.strip().isdigit():
            raise bad_request(f"workIds must be comma-separated work ids, got {raw!r}")
        work = int(raw)
        task_id, index = divmod(work, wire.WORK_ID_FACTOR)
        task = self.state.tasks.get(task_id)
        if (
            task is None
            or task.account != account
            or task.status_at(time.monotonic())[1] != "succeed"
            or index >= task.request.work_count
        ):
            raise ErrorAnswer(404, {"error": f"Work {work} not found"})
        return task, index

    async def download(self, request: web.Request) -> web.StreamResponse:
        """GET assets/download: the clean file of one work, or a zip."""
        query = request.query
        account = self.state.resolve(query.get("email"))
        if not query.get("workIds"):
            raise bad_request("workIds is required")
        every = not query.get("fileTypes")  # absent: all files of the works, as one zip
        types = (
            list(DOWNLOAD_TYPES)
            if every
            else [t.strip().upper() for t in query["fileTypes"].split(",")]
        )
        for file_type in types:
            if file_type not in DOWNLOAD_TYPES:
                raise bad_request(f"fileTypes must be MP4, MP3, WAV or PNG, got {file_type!r}")
        files = []
        for raw in query["workIds"].split(","):
            task, index = self._work(raw, account.email)
            ext = task.request.ext
            if ext.upper() not in types:
                raise bad_request(
                    f"fileTypes {','.join(types)} not available for work "
                    f"{wire.work_id(task.id, index)} ({ext.upper()} only)"
                )
            files.append((task, index, ext))
        self.state.counters.downloads += 1
        root = self.state.root_url
        if len(files) == 1 and not every and len(types) == 1:
            task, index, ext = files[0]
            return json_response(
                {"cdnUrl": f"{root}/files/{task.id}/{index}-clean.{ext}", "status": "success"}
            )
        key = f"{self._names.getrandbits(64):016x}"
        self._zips[key] = files
        return json_response({"cdnUrl": f"{root}/files/zip/{key}.zip", "status": "success"})

    # files (the "CDN": no auth) ---------------------------------------------------------
    async def result_file(self, request: web.Request) -> web.StreamResponse:
        """GET /files/{task_id}/{i}.png | {i}-clean.png | 0.mp4 | 0-clean.mp4 | cover.png."""
        task_id = request.match_info["task_id"]
        stem, _, ext = request.match_info["name"].partition(".")
        task = self.state.tasks.get(int(task_id)) if task_id.isdigit() else None
        if task is None or task.status_at(time.monotonic())[1] != "succeed":
            raise web.HTTPNotFound()
        gen = task.request
        width, height = media.dimensions(gen.aspect_ratio)
        clean = stem.endswith("-clean")
        stem = stem.removesuffix("-clean")
        if gen.is_video and stem == "cover" and ext == "png" and not clean:
            cover = media.png(width, height, media.WATERMARKED_RGB, task.id)
            data, content_type = cover, "image/png"
        elif stem.isdigit() and ext == gen.ext:
            if int(stem) >= gen.work_count:
                raise web.HTTPNotFound()
            duration = wire.video_duration_ms(task) if gen.kind != "image" else 0
            data, content_type = media.result_file(
                ext, width, height, duration, clean=clean, pattern=task.id + int(stem)
            )
        else:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type=content_type)

    async def zip_file(self, request: web.Request) -> web.StreamResponse:
        """GET /files/zip/{key}.zip: several clean files of a download."""
        files = self._zips.get(request.match_info["key"])
        if files is None:
            raise web.HTTPNotFound()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for task, index, ext in files:
                width, height = media.dimensions(task.request.aspect_ratio)
                duration = wire.video_duration_ms(task) if task.request.kind != "image" else 0
                data, _ = media.result_file(
                    ext, width, height, duration, clean=True, pattern=task.id + index
                )
                archive.writestr(f"{wire.work_id(task.id, index)}.{ext}", data)
        return web.Response(body=buffer.getvalue(), content_type="application/zip")

    async def uploaded_file(self, request: web.Request) -> web.StreamResponse:
        """GET /uploads/{name}: an uploaded asset (or a video's cover)."""
        name = request.match_info["name"]
        stored = self.state.uploads.get(name)
        if stored is not None:
            return web.Response(body=stored[1], content_type=stored[0])
        stem = name.removesuffix("-cover.png")
        if stem != name and any(n.startswith(f"{stem}.") for n in self.state.uploads):
            return web.Response(body=media.png(64, 36, (0, 0, 0)), content_type="image/png")
        raise web.HTTPNotFound()
