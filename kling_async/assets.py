"""The account's assets: ``GET /assets/uploaded``, ``DELETE /assets/uploaded`` and
``GET /assets/download`` for several works and file types (a zip unless one work and one
type is asked for), as documented on the assets page. Reached as ``kling.assets``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .accounts import email_params
from .errors import PayloadError, RequestValidationError
from .files import Downloads
from .requests import is_remote
from .transport import Transport

__all__ = ["ASSET_KINDS", "DOWNLOAD_FILE_TYPES", "Assets"]

#: ``contentType`` values of ``GET /assets/uploaded``.
ASSET_KINDS: Final = frozenset({"image", "video", "audio"})
#: ``fileTypes`` values of ``GET /assets/download``.
DOWNLOAD_FILE_TYPES: Final = ("MP4", "MP3", "WAV", "PNG")
_MAX_DELETE: Final = 10


def _positive(name: str, value: object, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestValidationError(f"{name}: must be an integer >= 1, got {value!r}", field=name)
    if maximum is not None and value > maximum:
        raise RequestValidationError(f"{name}: must be <= {maximum}, got {value!r}", field=name)
    return value


def _ids(name: str, values: object, maximum: int | None = None) -> str:
    if isinstance(values, int | str):
        values = [values]
    if not isinstance(values, Iterable):
        raise RequestValidationError(f"{name}: must be ids, got {values!r}", field=name)
    items = list(values)
    if not items:
        raise RequestValidationError(f"{name}: at least one id", field=name)
    if maximum is not None and len(items) > maximum:
        raise RequestValidationError(f"{name}: at most {maximum} ids, got {len(items)}", field=name)
    for item in items:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not text.isdigit():
            raise RequestValidationError(f"{name}: {item!r} is not an id", field=name)
    return ",".join(str(item) for item in items)


class Assets:
    """The asset calls of one client (``kling.assets``); ``email`` as in every call."""

    def __init__(
        self,
        transport: Transport,
        downloads: Downloads,
        for_call: Callable[[str | None], str | None],
    ) -> None:
        self._transport = transport
        self._downloads = downloads
        self._for_call = for_call

    async def uploaded(
        self,
        *,
        email: str | None = None,
        page_num: int = 1,
        page_size: int = 20,
        content_type: str | None = None,
        file_name: str | None = None,
        sort: str | None = None,
    ) -> list[Mapping[str, Any]]:
        """``GET /assets/uploaded``: the uploaded assets (``uploadAssetsList``), as dicts."""
        _positive("page_num", page_num)
        _positive("page_size", page_size, 100)
        if content_type is not None and content_type not in ASSET_KINDS:
            raise RequestValidationError(
                f"content_type: one of {', '.join(sorted(ASSET_KINDS))}, got {content_type!r}",
                field="content_type",
            )
        if sort is not None and sort not in ("asc", "desc"):
            raise RequestValidationError(f"sort: asc or desc, got {sort!r}", field="sort")
        if file_name is not None and not isinstance(file_name, str):
            raise RequestValidationError("file_name: must be a string", field="file_name")
        params = email_params(
            self._for_call(email),
            pageNum=page_num,
            pageSize=page_size,
            contentType=content_type,
            fileName=file_name,
            sort=sort,
        )
        answer = await self._transport.call("GET", "assets/uploaded/", params=params)
        items = answer.get("uploadAssetsList") if isinstance(answer, Mapping) else None
        if items is None:
            return []
        if not isinstance(items, list):
            raise PayloadError(f"GET assets/uploaded/: uploadAssetsList is not a list: {items!r}")
        return [item for item in items if isinstance(item, Mapping)]

    async def delete(
        self, ids: int | str | Sequence[int | str], *, email: str | None = None
    ) -> Any:
        """``DELETE /assets/uploaded``: delete up to 10 uploaded assets by id."""
        joined = _ids("ids", ids, _MAX_DELETE)
        params = email_params(self._for_call(email), id=joined)
        return await self._transport.call("DELETE", "assets/uploaded/", params=params)

    async def download_url(
        self,
        work_ids: int | Sequence[int],
        file_types: Sequence[str] | None = None,
        *,
        email: str | None = None,
    ) -> str:
        """``GET /assets/download``: the ``cdnUrl`` of the clean files of ``work_ids``
        (one file for one work and one type, else a zip; no ``file_types``: every file)."""
        joined = _ids("work_ids", work_ids)
        types = None
        if file_types is not None:
            if isinstance(file_types, str):
                file_types = [file_types]
            wrong = [t for t in file_types if t not in DOWNLOAD_FILE_TYPES]
            if wrong or not file_types:
                raise RequestValidationError(
                    f"file_types: each one of {', '.join(DOWNLOAD_FILE_TYPES)}, got "
                    f"{list(file_types)!r}",
                    field="file_types",
                )
            types = ",".join(file_types)
        params = email_params(self._for_call(email), workIds=joined, fileTypes=types)
        answer = await self._transport.call("GET", "assets/download", params=params)
        url = answer.get("cdnUrl") if isinstance(answer, Mapping) else None
        if not isinstance(url, str) or not is_remote(url):
            raise PayloadError(f"GET assets/download: no usable cdnUrl: {answer!r}"[:300])
        return url

    async def download(
        self,
        work_ids: int | Sequence[int],
        folder: str | os.PathLike[str],
        file_types: Sequence[str] | None = None,
        *,
        email: str | None = None,
    ) -> Path:
        """Download the clean files of ``work_ids`` into ``folder``: one file, or
        ``works-{ids}.zip`` (checked by type and size like every download)."""
        url = await self.download_url(work_ids, file_types, email=email)
        joined = _ids("work_ids", work_ids)
        single = file_types is not None and len(list(file_types)) == 1 and "," not in joined
        suffix = "." + next(iter(file_types)).lower() if single and file_types else ".zip"
        target = Path(folder)
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        name = f"works-{joined.replace(',', '-')[:100]}{suffix}"
        return await self._downloads.save(url, target / name)
