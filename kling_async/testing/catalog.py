"""The non-generation endpoints: lists that feed generation fields, elements, avatars,
generated and uploaded assets, and deleting tasks.

The pages publish none of these shapes (endpoints.md, "Unconfirmed"): each answer is a JSON
object with one list under a plural key, items in camelCase as Kling's other models.
"""

from __future__ import annotations

import random
import time
from typing import Any, Final

from aiohttp import web

from kling_async.testing import wire
from kling_async.testing.answers import ErrorAnswer, bad_request, json_response
from kling_async.testing.state import SimState
from kling_async.testing.table import Endpoint, F, validate_table
from kling_async.testing.validation import int_param, read_body

__all__ = ["EFFECTS", "EMOTIONS", "TAGS", "VOICES", "CatalogHandlers"]

EFFECTS: Final = ("hug", "kiss", "heart_gesture", "squish", "expansion", "fuzzyfuzzy", "bloombloom")
EMOTIONS: Final = ("neutral", "happy", "angry", "sad", "fearful", "disgusted", "surprised")
VOICES: Final = (
    ("sp_101", "Calm narrator", "en"),
    ("sp_102", "Bright girl", "en"),
    ("sp_201", "温柔女声", "zh"),
)
TAGS: Final = ("character", "animal", "object", "scene", "costume")
SCENES: Final = ("all", "social_media", "entertainment", "advertising_marketing", "business",
                 "education", "virtual_idol")  # fmt: skip

ELEMENT: Final = Endpoint(
    "elements",
    "image",
    "",
    (
        F("name", "text", required=True, max_len=15),
        F("coverImage", "url", required=True),
        F("type", "choice", choices=("IMAGE", "VIDEO")),
        F("voice", "id"),
        F("description", "text", max_len=100),
        F("tag", "choice", choices=TAGS),
        F("extraImage1", "url"),
        F("extraImage2", "url"),
        F("extraImage3", "url"),
        F("generateViews", "bool"),
    ),
    (
        lambda v: (
            "Use either extraImageN or generateViews, not both"
            if "generateViews" in v and any(f"extraImage{n}" in v for n in (1, 2, 3))
            else None
        ),
        lambda v: (
            "voice requires type VIDEO" if "voice" in v and v.get("type") != "VIDEO" else None
        ),
    ),
)
AVATAR: Final = Endpoint(
    "avatars",
    "image",
    "",
    (
        F("imageUrl", "url", required=True),
        F("nickname", "text", max_len=30),
        F("prompt", "text", max_len=2000),
        F("scene", "choice", choices=SCENES),
        F("ttsSpeaker", "choice", choices=tuple(v[0] for v in VOICES)),
        F("ttsSpeed", "number", low=0.8, high=2.0),
        F("ttsEmotionKey", "choice", choices=EMOTIONS),
    ),
)


def _page(query: Any, default_size: int) -> tuple[int, int]:
    num = int_param(query["pageNum"], "pageNum", 1, 10_000) if query.get("pageNum") else 1
    size = (
        int_param(query["pageSize"], "pageSize", 1, 500) if query.get("pageSize") else default_size
    )
    return num, size


def _content_type(query: Any) -> str | None:
    value = query.get("contentType") or None
    if value not in (None, "video", "image", "audio"):
        raise bad_request(f"contentType must be video, image or audio, got {value!r}")
    return value


def _sort(query: Any) -> bool:
    """True for newest first (``sort`` desc, the default)."""
    value = query.get("sort") or "desc"
    if value not in ("asc", "desc"):
        raise bad_request(f"sort must be asc or desc, got {value!r}")
    return value == "desc"


class CatalogHandlers:
    """Handlers of the catalog endpoints (routed by the server); elements and avatars are
    kept per account."""

    def __init__(self, state: SimState, *, seed: int) -> None:
        self.state = state
        self._ids = random.Random(f"{seed}:catalog")  # noqa: S311 (seeded on purpose)
        self.elements: dict[str, dict[str, Any]] = {}
        self.avatars: dict[str, dict[str, Any]] = {}

    def routes(self, api: str, wrap: Any) -> list[web.RouteDef]:
        """The route table; ``wrap(group, handler)`` adds the server's plumbing (faults of
        ``group``: tasks and assets as their namesakes, the other lists as "accounts")."""
        return [
            web.get(f"{api}/videos/effects", wrap("accounts", self.effects)),
            web.get(f"{api}/videos/motions", wrap("accounts", self.motions)),
            web.get(f"{api}/tts/voices", wrap("accounts", self.voices)),
            web.get(f"{api}/elements", wrap("accounts", self.list_elements)),
            web.get(f"{api}/elements/tags", wrap("accounts", self.tags)),
            web.get(f"{api}/elements/voices", wrap("accounts", self.element_voices)),
            web.get(f"{api}/elements/{{element_id}}", wrap("accounts", self.get_element)),
            web.post(f"{api}/elements", wrap("accounts", self.create_element)),
            web.delete(f"{api}/elements/{{element_id}}", wrap("accounts", self.delete_element)),
            web.get(f"{api}/avatars", wrap("accounts", self.list_avatars)),
            web.post(f"{api}/avatars", wrap("accounts", self.create_avatar)),
            web.delete(f"{api}/avatars/{{avatar_id}}", wrap("accounts", self.delete_avatar)),
            web.delete(f"{api}/tasks/{{task_id}}", wrap("tasks", self.delete_task)),
            web.get(f"{api}/assets", wrap("assets", self.generated)),
            web.get(f"{api}/assets/", wrap("assets", self.generated)),
            web.get(f"{api}/assets/uploaded", wrap("assets", self.uploaded)),
            web.get(f"{api}/assets/uploaded/", wrap("assets", self.uploaded)),
            web.delete(f"{api}/assets/uploaded", wrap("assets", self.delete_uploaded)),
            web.delete(f"{api}/assets/uploaded/", wrap("assets", self.delete_uploaded)),
        ]

    def _account(self, request: web.Request) -> str:
        return self.state.resolve(request.query.get("email")).email

    def _id(self, prefix: str) -> str:
        return f"{prefix}{self._ids.randrange(10**14, 10**15)}"

    # lists ------------------------------------------------------------------------------
    async def effects(self, request: web.Request) -> web.StreamResponse:
        """GET videos/effects: the names image2video-effects takes."""
        self._account(request)
        items = [{"name": n, "title": n.replace("_", " ").title()} for n in EFFECTS]
        return json_response({"effects": items})

    async def motions(self, request: web.Request) -> web.StreamResponse:
        """GET videos/motions?mine=: official templates, or the account's own (none)."""
        self._account(request)
        mine = request.query.get("mine", "false").lower()
        if mine not in ("true", "false"):
            raise bad_request(f"mine must be true or false, got {mine!r}")
        root = self.state.root_url
        items = [] if mine == "true" else [
            {"id": f"m_{n}", "name": name, "resourceUrl": f"{root}/uploads/motion-{n}.mp4",
             "coverUrl": f"{root}/uploads/motion-{n}-cover.png", "duration": 5000}
            for n, name in enumerate(("Dance", "Wave", "Walk"), start=1)
        ]  # fmt: skip
        return json_response({"motions": items})

    async def voices(self, request: web.Request) -> web.StreamResponse:
        """GET tts/voices: speaker ids and their emotions."""
        self._account(request)
        items = [
            {"speakerId": sid, "name": name, "language": lang, "emotions": list(EMOTIONS)}
            for sid, name, lang in VOICES
        ]
        return json_response({"voices": items})

    async def tags(self, request: web.Request) -> web.StreamResponse:
        """GET elements/tags."""
        self._account(request)
        return json_response({"tags": [{"id": n, "name": t} for n, t in enumerate(TAGS, 1)]})

    async def element_voices(self, request: web.Request) -> web.StreamResponse:
        """GET elements/voices: voices for VIDEO elements."""
        self._account(request)
        items = [{"id": sid, "name": name, "language": lang} for sid, name, lang in VOICES]
        return json_response({"voices": items})

    # elements ---------------------------------------------------------------------------
    def _owned(self, store: dict[str, dict[str, Any]], key: str, request: web.Request) -> Any:
        item = store.get(key)
        if item is None or item["email"] != self._account(request):
            raise ErrorAnswer(404, {"error": f"{key} not found"})
        return item

    async def list_elements(self, request: web.Request) -> web.StreamResponse:
        """GET elements."""
        email = self._account(request)
        return json_response(
            {"elements": [e for e in self.elements.values() if e["email"] == email]}
        )

    async def get_element(self, request: web.Request) -> web.StreamResponse:
        """GET elements/{id}."""
        return json_response(self._owned(self.elements, request.match_info["element_id"], request))

    async def create_element(self, request: web.Request) -> web.StreamResponse:
        """POST elements: answered at once; the stored name gets a 5-character suffix."""
        body = await read_body(request)
        values = validate_table(ELEMENT, body).values
        email = self.state.resolve(body.get("email")).email
        suffix = "".join(self._ids.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(5))
        element = {
            "id": self._id("u_"),
            "email": email,
            "name": f"{values['name']}_{suffix}",
            "type": values.get("type", "IMAGE"),
            "coverImage": values["coverImage"],
            "extraImages": [
                values[f"extraImage{n}"] for n in (1, 2, 3) if f"extraImage{n}" in values
            ],
            "description": values.get("description", f"A {values['name']} (generated description)"),
            "tag": values.get("tag", "character"),
            "voice": values.get("voice"),
            "createTime": int(time.time() * 1000),
        }
        self.elements[element["id"]] = element
        return json_response(element)

    async def delete_element(self, request: web.Request) -> web.StreamResponse:
        """DELETE elements/{id}."""
        element = self._owned(self.elements, request.match_info["element_id"], request)
        del self.elements[element["id"]]
        return json_response({"id": element["id"], "deleted": True})

    # avatars ----------------------------------------------------------------------------
    async def list_avatars(self, request: web.Request) -> web.StreamResponse:
        """GET avatars."""
        email = self._account(request)
        return json_response({"avatars": [a for a in self.avatars.values() if a["email"] == email]})

    async def create_avatar(self, request: web.Request) -> web.StreamResponse:
        """POST avatars: answered at once; absent fields are "filled in by the AI"."""
        body = await read_body(request)
        values = validate_table(AVATAR, body).values
        email = self.state.resolve(body.get("email")).email
        avatar = {
            "avatarId": self._id("av_"),
            "email": email,
            "imageUrl": values["imageUrl"],
            "nickname": values.get("nickname", "Avatar"),
            "prompt": values.get("prompt", "Natural speaking"),
            "scene": values.get("scene", "advertising_marketing"),
            "ttsSpeaker": values.get("ttsSpeaker", VOICES[0][0]),
            "ttsSpeed": values.get("ttsSpeed", 1),
            "ttsEmotionKey": values.get("ttsEmotionKey", "neutral"),
            "createTime": int(time.time() * 1000),
        }
        self.avatars[avatar["avatarId"]] = avatar
        return json_response(avatar)

    async def delete_avatar(self, request: web.Request) -> web.StreamResponse:
        """DELETE avatars/{id}."""
        avatar = self._owned(self.avatars, request.match_info["avatar_id"], request)
        del self.avatars[avatar["avatarId"]]
        return json_response({"avatarId": avatar["avatarId"], "deleted": True})

    # tasks and assets -------------------------------------------------------------------
    async def delete_task(self, request: web.Request) -> web.StreamResponse:
        """DELETE tasks/{id}: ``{"deleted": true, "workIds": [...]}`` (tasks.md); later polls
        answer 404; a running job keeps its slot."""
        task = self.state.task_for(request.match_info["task_id"], request.query.get("email"))
        ids = [w["workId"] for w in wire.works(task, time.monotonic())]
        task.deleted = True
        return json_response({"deleted": True, "workIds": ids})

    async def generated(self, request: web.Request) -> web.StreamResponse:
        """GET assets: the works of the account's succeeded tasks, paged."""
        email = self._account(request)
        num, size = _page(request.query, 40)
        content, newest = _content_type(request.query), _sort(request.query)
        now = time.monotonic()
        tasks = [
            t for t in self.state.tasks.values()
            if t.account == email and not (t.deleted or t.vanish or t.expired)
            and t.status_at(now)[1] == "succeed"
            and content in (None, t.request.kind)
        ]  # fmt: skip
        tasks.sort(key=lambda t: t.created_at, reverse=newest)
        history = [{"works": wire.works(t, now)} for t in tasks[(num - 1) * size : num * size]]
        limits = [
            {"type": t, "remaining": 10000, "limit": 10000} for t in ("image", "video", "audio")
        ]
        return json_response({"limitations": limits, "history": history})

    async def uploaded(self, request: web.Request) -> web.StreamResponse:
        """GET assets/uploaded/: the uploaded files, paged (newest first by default)."""
        self._account(request)
        query = request.query
        num, size = _page(query, 20)
        content, newest = _content_type(query), _sort(query)
        keyword = query.get("fileName") or ""
        root = self.state.root_url
        items = []
        for name, (mime, _) in self.state.uploads.items():
            kind = mime.split("/")[0]
            if (content and kind != content) or keyword not in name:
                continue
            url = f"{root}/uploads/{name}"
            cover = f"{root}/uploads/{name.rsplit('.', 1)[0]}-cover.png" if kind == "video" else url
            items.append({
                "id": str(int(name.split(".")[0], 16)), "name": name, "userId": 0,
                "contentType": kind,
                "resource": {"resource": url, "height": 0, "width": 0, "duration": 0,
                             "resourceKey": ""},
                "cover": {"resource": cover, "height": 0, "width": 0, "duration": 0,
                          "resourceKey": ""},
                "createTime": 0, "updateTime": 0, "favored": False, "extraInfo": "{}",
                "entrance": "",
            })  # fmt: skip
        if newest:
            items.reverse()
        return json_response({"uploadAssetsList": items[(num - 1) * size : num * size]})

    async def delete_uploaded(self, request: web.Request) -> web.StreamResponse:
        """DELETE assets/uploaded/?id=1,2: up to 10 numeric ids."""
        self._account(request)
        raw = request.query.get("id") or ""
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if not ids:
            raise bad_request("id is required")
        if len(ids) > 10 or not all(i.isdigit() for i in ids):
            raise bad_request(f"id must be up to 10 comma-separated numeric ids, got {raw!r}")
        by_id = {str(int(name.split(".")[0], 16)): name for name in self.state.uploads}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ErrorAnswer(404, {"error": f"Uploaded asset {missing[0]} not found"})
        for i in ids:
            del self.state.uploads[by_id[i]]
        return json_response({"deleted": ids})
