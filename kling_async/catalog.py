"""The non-generation endpoints as plain calls: the lists that feed generation fields
(effects, motions, TTS voices), saved elements, Avatar 2.0 avatars, generated assets and
deleting a task.

``kling.catalog`` is a `Catalog` bound to the client's session and accounts::

    effects = await kling.catalog.effects()             # names for Image2VideoEffects
    element = await kling.catalog.create_element(name="fox", cover_image="https://...")
    await kling.catalog.delete_task(123456789)

Each call answers at once (none creates a task) and checks its arguments before anything
is sent (`RequestValidationError` naming the field). Reads and deletes are retried as any
GET; ``create_element`` and ``create_avatar`` are retried only when the server cannot have
created anything (as a job's POST is), so a reset never saves an element twice.

The service publishes the shape of `GET /assets` and `DELETE /tasks/{id}` only: those
answer typed models (`GeneratedAssets`, `TaskDeletion`); every other call answers the
decoded JSON as the service sent it (a dict), unknown fields included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .accounts import Accounts, email_params
from .convert import structure, structure_task
from .errors import PayloadError, RequestValidationError
from .models import Limitation, TaskResponse
from .payload import WireModel
from .requests import EMOTIONS
from .requests.media import is_url
from .transport import Transport

__all__ = [
    "AVATAR_SCENES",
    "ELEMENT_TYPES",
    "Catalog",
    "GeneratedAssets",
    "TaskDeletion",
]

#: ``scene`` values of POST /avatars.
AVATAR_SCENES: Final = (
    "all",
    "social_media",
    "entertainment",
    "advertising_marketing",
    "business",
    "education",
    "virtual_idol",
)
#: ``type`` values of POST /elements.
ELEMENT_TYPES: Final = ("IMAGE", "VIDEO")
_CONTENT_TYPES: Final = ("video", "image", "audio")


@attrs.frozen(kw_only=True)
class TaskDeletion(WireModel):
    """The answer of DELETE /tasks/{task_id}: whether it was deleted, and its works."""

    deleted: Any = None
    work_ids: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class GeneratedAssets(WireModel):
    """The answer of GET /assets: quotas, and the works of each generated task (newest
    first unless ``sort="asc"``)."""

    limitations: tuple[Limitation, ...] = ()
    history: tuple[TaskResponse, ...] = ()

    @property
    def urls(self) -> list[str]:
        """Every work's (watermarked) file URL, in order."""
        return [url for item in self.history for url in item.urls]


def _fail(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(f"{field}: {message}", field=field)


def _text(field: str, value: object, max_len: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _fail(field, "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(field, f"must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise _fail(field, f"must be at most {max_len} characters, got {len(value)}")
    return value


def _url(field: str, value: object, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not is_url(value):
        raise _fail(
            field, f"must be an http(s) URL (upload a file with upload_asset), got {value!r}"
        )
    return value


def _choice(field: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise _fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _ident(field: str, value: object) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.strip() or any(c in text for c in "/?#"):
        raise _fail(field, f"must be an id (from the list call), got {value!r}")
    return text


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise PayloadError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return dict(data)


class Catalog:
    """The non-generation endpoints of one client (``kling.catalog``); ``email`` picks the
    account as in every call (default: the client's)."""

    def __init__(self, transport: Transport, accounts: Accounts) -> None:
        self._transport = transport
        self._accounts = accounts

    async def _call(
        self,
        method: str,
        path: str,
        email: str | None,
        *,
        query: Mapping[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        creates: bool = False,
    ) -> dict[str, Any]:
        email = await self._accounts.with_default(self._accounts.for_call(email))
        if body is not None:
            sent = {k: v for k, v in body.items() if v is not None}
            if email:
                sent["email"] = email
            data = await self._transport.call(method, path, json_body=sent, creates_job=creates)
        else:
            data = await self._transport.call(
                method, path, params=email_params(email, **(query or {}))
            )
        return _mapping(data, f"{method} {path}")

    # -- lists that feed generation fields --------------------------------------------------

    async def effects(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /videos/effects``: the effect names `Image2VideoEffects` takes."""
        return await self._call("GET", "videos/effects", email)

    async def motions(self, *, mine: bool = False, email: str | None = None) -> dict[str, Any]:
        """``GET /videos/motions``: Kling's motion templates, or (``mine``) the account's own."""
        if not isinstance(mine, bool):
            raise _fail("mine", f"must be True or False, got {mine!r}")
        return await self._call("GET", "videos/motions", email, query={"mine": str(mine).lower()})

    async def tts_voices(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /tts/voices``: speaker ids and emotions (`TextToSpeech`, `AvatarVideo`)."""
        return await self._call("GET", "tts/voices", email)

    # -- elements ---------------------------------------------------------------------------

    async def elements(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /elements``: the account's saved elements."""
        return await self._call("GET", "elements", email)

    async def element(self, element_id: str, *, email: str | None = None) -> dict[str, Any]:
        """``GET /elements/{element_id}``: one element (`NotFoundError` if unknown)."""
        return await self._call("GET", f"elements/{_ident('element_id', element_id)}", email)

    async def element_tags(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /elements/tags``: the tags an element may carry."""
        return await self._call("GET", "elements/tags", email)

    async def element_voices(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /elements/voices``: voices for VIDEO elements."""
        return await self._call("GET", "elements/voices", email)

    async def create_element(
        self,
        *,
        name: str,
        cover_image: str,
        type: str | None = None,
        voice: str | None = None,
        description: str | None = None,
        tag: str | None = None,
        extra_images: tuple[str, ...] | list[str] = (),
        generate_views: bool | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """``POST /elements``: save an element (cited as ``element_N`` by the v3 and omni
        endpoints) and return it. ``name`` max 15 (the service appends a suffix);
        ``cover_image`` a URL (of a video for ``type="VIDEO"``); ``description`` max 100;
        ``extra_images`` up to 3 URLs of other views, or ``generate_views`` (not both)."""
        extras = tuple(extra_images)
        if len(extras) > 3:
            raise _fail("extra_images", f"takes at most 3 URLs, got {len(extras)}")
        if extras and generate_views:
            raise _fail("generate_views", "give extra_images or generate_views, not both")
        if generate_views is not None and not isinstance(generate_views, bool):
            raise _fail("generate_views", f"must be True or False, got {generate_views!r}")
        body: dict[str, Any] = {
            "name": _text("name", name, 15, required=True),
            "coverImage": _url("cover_image", cover_image, required=True),
            "type": _choice("type", type, ELEMENT_TYPES),
            "voice": _text("voice", voice, 2000),
            "description": _text("description", description, 100),
            "tag": _text("tag", tag, 100),
            "generateViews": generate_views,
        }
        for n, url in enumerate(extras, start=1):
            body[f"extraImage{n}"] = _url(f"extra_images[{n - 1}]", url, required=True)
        return await self._call("POST", "elements", email, body=body, creates=True)

    async def delete_element(self, element_id: str, *, email: str | None = None) -> dict[str, Any]:
        """``DELETE /elements/{element_id}``."""
        return await self._call("DELETE", f"elements/{_ident('element_id', element_id)}", email)

    # -- avatars ----------------------------------------------------------------------------

    async def avatars(self, *, email: str | None = None) -> dict[str, Any]:
        """``GET /avatars``: the account's Avatar 2.0 avatars (ids for `AvatarVideo`)."""
        return await self._call("GET", "avatars", email)

    async def create_avatar(
        self,
        *,
        image_url: str,
        nickname: str | None = None,
        prompt: str | None = None,
        scene: str | None = None,
        tts_speaker: str | None = None,
        tts_speed: float | None = None,
        tts_emotion_key: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """``POST /avatars``: create an avatar from an image URL; what is left out the
        service fills in. ``nickname`` max 30, ``prompt`` max 2000, ``scene`` one of
        `AVATAR_SCENES`, ``tts_speaker`` from `tts_voices`, ``tts_speed`` 0.8-2.0,
        ``tts_emotion_key`` one of ``EMOTIONS``."""
        speed: object = tts_speed
        if speed is not None and (
            isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.8 <= speed <= 2
        ):
            raise _fail("tts_speed", f"must be a number from 0.8 to 2.0, got {tts_speed!r}")
        body = {
            "imageUrl": _url("image_url", image_url, required=True),
            "nickname": _text("nickname", nickname, 30),
            "prompt": _text("prompt", prompt, 2000),
            "scene": _choice("scene", scene, AVATAR_SCENES),
            "ttsSpeaker": _text("tts_speaker", tts_speaker, 200),
            "ttsSpeed": tts_speed,
            "ttsEmotionKey": _choice("tts_emotion_key", tts_emotion_key, EMOTIONS),
        }
        return await self._call("POST", "avatars", email, body=body, creates=True)

    async def delete_avatar(self, avatar_id: str, *, email: str | None = None) -> dict[str, Any]:
        """``DELETE /avatars/{avatar_id}``."""
        return await self._call("DELETE", f"avatars/{_ident('avatar_id', avatar_id)}", email)

    # -- images ---------------------------------------------------------------------------

    async def recognize_faces(
        self, *, image_reference: str, email: str | None = None
    ) -> dict[str, Any]:
        """``POST /images/recognize-faces``: the faces in an image (their numbers are the
        ``face_no`` of `Kolors` with ``reference="face"``). The pages do not say whether
        it answers at once; this call expects the answer in the response."""
        body = {"imageReference": _url("image_reference", image_reference, required=True)}
        return await self._call("POST", "images/recognize-faces", email, body=body)

    # -- tasks and generated assets ---------------------------------------------------------

    async def delete_task(self, task_id: int, *, email: str | None = None) -> TaskDeletion:
        """``DELETE /tasks/{task_id}``: delete a task's works; later polls answer 404."""
        given: object = task_id
        if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
            raise _fail("task_id", f"must be a positive integer, got {task_id!r}")
        data = await self._call("DELETE", f"tasks/{task_id}", email)
        ids = data.get("workIds")
        work_ids = tuple(i for i in ids if isinstance(i, int)) if isinstance(ids, list) else ()
        return TaskDeletion(deleted=data.get("deleted"), work_ids=work_ids)

    async def assets(
        self,
        *,
        page_num: int | None = None,
        page_size: int | None = None,
        content_type: str | None = None,
        sort: str | None = None,
        email: str | None = None,
    ) -> GeneratedAssets:
        """``GET /assets``: the account's generated works, paged (``page_num`` from 1,
        ``page_size`` default 40), ``content_type`` video / image / audio, ``sort``
        ``desc`` (newest first, the default) or ``asc``."""
        pages: tuple[tuple[str, object], ...] = (("page_num", page_num), ("page_size", page_size))
        for field, value in pages:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise _fail(field, f"must be a positive integer, got {value!r}")
        query = {
            "pageNum": page_num,
            "pageSize": page_size,
            "contentType": _choice("content_type", content_type, _CONTENT_TYPES),
            "sort": _choice("sort", sort, ("asc", "desc")),
        }
        data = await self._call("GET", "assets", email, query=query)
        limits, history = data.get("limitations"), data.get("history")
        return GeneratedAssets(
            limitations=tuple(structure(x, Limitation) for x in _objects(limits)),
            history=tuple(structure_task(x) for x in _objects(history)),
        )


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [x for x in value if isinstance(x, Mapping)] if isinstance(value, list) else []
