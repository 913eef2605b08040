"""Reading and validating the bodies of the two generation endpoints.

Documented fields are checked against the rules of the pages; fields the pages do not know
are kept in the received body and otherwise ignored, as the real service does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs
from aiohttp import web

from kling_async.testing.answers import (
    AT_LEAST_ONE_IMAGE,
    AT_LEAST_TWO_IMAGES,
    ErrorAnswer,
    bad_request,
)

__all__ = [
    "KOLORS",
    "KOLORS_IMAGE_FIELDS",
    "VIDEO",
    "VIDEO_IMAGE_FIELDS",
    "Generation",
    "int_param",
    "read_body",
    "validate",
]

KOLORS: Final = "images/kolors-elements"
VIDEO: Final = "videos/image2video-elements"
KOLORS_IMAGE_FIELDS: Final = (
    "subjectImage1",
    "subjectImage2",
    "subjectImage3",
    "subjectImage4",
    "sceneImage",
    "styleImage",
)
VIDEO_IMAGE_FIELDS: Final = ("image_0", "image_1", "image_2", "image_3")
KOLORS_RATIOS: Final = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")
VIDEO_RATIOS: Final = ("16:9", "9:16", "1:1")
# kling-v1-6 is what the page documents; kling-v3-0 comes from useapi.net's newer collection.
VIDEO_MODELS: Final = ("kling-v1-6", "kling-v3-0")
MAX_TEXT: Final = 2500


@attrs.frozen(kw_only=True)
class Generation:
    """A validated generation request, normalised (defaults filled in)."""

    endpoint: str
    email: str | None
    prompt: str
    negative_prompt: str
    images: tuple[tuple[str, str], ...]  # (field name, url), in field order
    aspect_ratio: str
    image_count: int
    duration: int
    model_name: str
    mode: str
    enable_audio: bool
    max_jobs: int | None
    reply_url: str | None
    reply_ref: str | None
    content: str = ""  # "image" | "video" | "audio"; "" on the two seed endpoints
    task_type: str = ""  # task.type; "" on the two seed endpoints (wire.TASK_TYPES)
    values: dict[str, Any] = attrs.field(factory=dict)  # table endpoints: normalised fields

    @property
    def kind(self) -> str:
        """What the works are: "image", "video" or "audio"."""
        return self.content or ("video" if self.endpoint == VIDEO else "image")

    @property
    def is_video(self) -> bool:
        """True when the works are videos."""
        return self.kind == "video"

    @property
    def ext(self) -> str:
        """The extension of the result files: png, mp4 or wav."""
        return {"video": "mp4", "audio": "wav"}.get(self.kind, "png")

    @property
    def work_count(self) -> int:
        """How many works the task makes (imageCount for images, else one)."""
        return self.image_count if self.kind == "image" else 1


async def read_body(request: web.Request) -> dict[str, Any]:
    """The body as a dict: JSON, or multipart / urlencoded form fields (files by name)."""
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        return {
            key: value if isinstance(value, str) else _file_placeholder(value)
            for key, value in form.items()
        }
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body


def _file_placeholder(value: object) -> str:
    return f"<file {getattr(value, 'filename', '')}>"


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or (required and value == ""):
        if required:
            raise bad_request(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    if len(value) > MAX_TEXT:
        raise bad_request(f"{name} must be at most {MAX_TEXT} characters, got {len(value)}")
    return value


def _url(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise bad_request(f"{name} must be an http(s) URL (upload files with POST /assets)")
    return value


def int_param(value: object, name: str, low: int, high: int) -> int:
    """An integer given as a number or a numeric string, within [low, high]."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return number


def _choice(body: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{name} must be true or false, got {value!r}")


def _duration(raw: object, *, v3: bool) -> int:
    if raw is None:
        return 5
    if v3:  # useapi.net's newer collection: 3-15 s on kling-v3-0
        return int_param(raw, "duration", 3, 15)
    try:
        seconds = int_param(raw, "duration", 5, 10)
    except ErrorAnswer:
        seconds = 0
    if seconds not in (5, 10):
        raise bad_request(f"duration must be 5 or 10, got {raw!r}")
    return seconds


def _images(body: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    found = []
    for name in fields:
        url = _url(body, name)
        if url is not None:
            found.append((name, url))
    return tuple(found)


def _v3_rules(body: Mapping[str, Any], *, v3: bool) -> None:
    """endpoints.md: element_1..3 are kling-v3-0 only; v3 takes no aspect_ratio."""
    for name in ("element_1", "element_2", "element_3"):
        value = body.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise bad_request(f"{name} must be a string")
        if not v3:
            raise bad_request(f"{name} requires model_name kling-v3-0")
    if v3 and body.get("aspect_ratio") is not None:
        raise bad_request("aspect_ratio is not accepted with kling-v3-0")


def validate(endpoint: str, body: Mapping[str, Any]) -> Generation:
    """Check ``body`` against the rules of ``endpoint``'s page; raise a 400 answer if broken."""
    video = endpoint == VIDEO
    email = body.get("email")
    if email is not None and not isinstance(email, str):
        raise bad_request("email must be a string")
    prompt = _text(body, "prompt", required=video) or ""
    negative_prompt = _text(body, "negative_prompt") or ""
    images = _images(body, VIDEO_IMAGE_FIELDS if video else KOLORS_IMAGE_FIELDS)
    if video and not images:
        raise bad_request(AT_LEAST_ONE_IMAGE)
    if not video and len(images) < 2:
        raise bad_request(AT_LEAST_TWO_IMAGES)
    model_name = _choice(body, "model_name", VIDEO_MODELS, "kling-v1-6") if video else ""
    v3 = model_name == "kling-v3-0"
    duration = _duration(body.get("duration"), v3=v3) if video else 0
    if video:
        _v3_rules(body, v3=v3)
    image_count = 1
    if not video and body.get("imageCount") is not None:
        image_count = int_param(body["imageCount"], "imageCount", 1, 9)
    max_jobs = None
    if body.get("maxJobs") is not None:
        max_jobs = int_param(body["maxJobs"], "maxJobs", 1, 50)
    reply_ref = body.get("replyRef")
    if reply_ref is not None and not isinstance(reply_ref, (str, int, float)):
        raise bad_request("replyRef must be a string")
    return Generation(
        endpoint=endpoint,
        email=email or None,
        prompt=prompt,
        negative_prompt=negative_prompt,
        images=images,
        aspect_ratio=_choice(
            body, "aspect_ratio", VIDEO_RATIOS if video else KOLORS_RATIOS, "16:9"
        ),
        image_count=image_count,
        duration=duration,
        model_name=model_name,
        mode=_choice(body, "mode", ("std", "pro"), "std") if video else "",
        enable_audio=_bool(body, "enable_audio") if video else False,
        max_jobs=max_jobs,
        reply_url=_url(body, "replyUrl"),
        reply_ref=None if reply_ref is None else str(reply_ref),
    )
