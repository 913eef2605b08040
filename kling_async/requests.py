"""Validated request types for the two generation endpoints.

Every documented rule is checked when the object is built, so bad input raises
`RequestValidationError` (a ValueError) naming the field before anything is sent::

    KolorsElements(prompt="a cat", subject_images=["https://x/cat.jpg", "dog.png"])
    Image2VideoElements(prompt="they dance", images=[b"...png bytes..."], duration=10)

An image is an ``http(s)`` URL (sent as is), a local path, or bytes; local files and bytes
are uploaded through POST /assets by the client first (once per content).

Newer server values or fields (say ``model_name="kling-v3-0"`` or ``element_1``) go in
``extra``: a mapping of wire names to values, sent as given and not validated; it may
not repeat a field a keyword sets (the body would be ambiguous). A typo in a keyword
still fails, since only ``extra`` is unchecked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar, Union
from urllib.parse import urlsplit

import attrs

from .errors import RequestValidationError

__all__ = [
    "ASPECT_RATIOS_IMAGE",
    "ASPECT_RATIOS_VIDEO",
    "GenerationRequest",
    "Image2VideoElements",
    "ImageSource",
    "KolorsElements",
    "is_remote",
]

#: An image: an http(s) URL, a local path, or the file's bytes.
ImageSource = Union[str, bytes, "os.PathLike[str]"]

ASPECT_RATIOS_IMAGE: Final = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")
ASPECT_RATIOS_VIDEO: Final = ("16:9", "9:16", "1:1")
MODES: Final = ("std", "pro")
DURATIONS: Final = (5, 10)
MODEL_NAMES: Final = ("kling-v1-6",)
MAX_PROMPT: Final = 2500
MAX_IMAGES: Final = 4

R = TypeVar("R", bound="GenerationRequest")


def is_remote(image: ImageSource) -> bool:
    """Whether an image is a URL the API can fetch (as opposed to a local file or bytes)."""
    if not isinstance(image, str):
        return False
    return image.startswith(("https://", "http://")) or image[:8].lower().startswith(
        ("https://", "http://")
    )


def _is_url(value: object) -> bool:
    """An http(s) URL with a host."""
    return isinstance(value, str) and is_remote(value) and bool(urlsplit(value).netloc)


def _fail(field: str, problem: str) -> RequestValidationError:
    return RequestValidationError(f"{field}: {problem}", field=field)


def _check_image(field: str, image: object) -> None:
    if isinstance(image, bytes | bytearray):
        if not image:
            raise _fail(field, "image bytes are empty")
        return
    if isinstance(image, str) and is_remote(image):
        if not _is_url(image):
            raise _fail(field, f"{image!r} is not a complete URL")
        return
    if isinstance(image, str | os.PathLike):
        if isinstance(image, str) and not image.strip():
            raise _fail(field, "empty string; give an http(s) URL, a local path or bytes")
        if not Path(image).is_file():
            raise _fail(
                field, f"{os.fspath(image)!r} is neither an http(s) URL nor an existing file"
            )
        return
    raise _fail(
        field, f"expected an http(s) URL, a local path or bytes, got {type(image).__name__}"
    )


def _check_text(field: str, value: object, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise _fail(field, "is required")
        return
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _fail(field, "is required and must not be empty")
    if len(value) > MAX_PROMPT:
        raise _fail(field, f"at most {MAX_PROMPT} characters, got {len(value)}")


def _check_choice(field: str, value: object, allowed: Sequence[object]) -> None:
    if value is not None and value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise _fail(
            field,
            f"{value!r} is not allowed; one of {choices} (newer values: pass them in extra=)",
        )


def _check_int(field: str, value: object, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise _fail(field, f"must be from {low} to {high}, got {value}")


def _check_common(req: GenerationRequest) -> None:
    _check_int("max_jobs", req.max_jobs, 1, 50)
    if req.reply_url is not None and not _is_url(req.reply_url):
        raise _fail("reply_url", f"must be an http(s) URL, got {req.reply_url!r}")
    # Users call these without a type checker: check the types the annotations promise.
    reply_ref: object = req.reply_ref
    email: object = req.email
    if reply_ref is not None and not isinstance(reply_ref, str):
        raise _fail("reply_ref", f"must be a string, got {type(reply_ref).__name__}")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise _fail("email", f"must be an account e-mail address, got {email!r}")
    extra: object = req.extra
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise _fail("extra", "must be a mapping of wire field names (strings) to values")


def _image_tuple(value: Sequence[ImageSource] | ImageSource | None) -> tuple[ImageSource, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes | bytearray | os.PathLike) or not isinstance(value, Iterable):
        # A lone image where a list is expected: accept it, it cannot mean anything else
        # (and a wrong type is then reported by the image check, naming the field).
        return (value,)
    return tuple(value)


def _frozen_mapping(value: object) -> Any:
    if value is None:
        return {}
    # Anything but a mapping is kept as is, for _check_common to reject by name.
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class GenerationRequest:
    """What every generation request has: account, per-request maxJobs, callbacks, extras.

    Subclasses name their endpoint (``endpoint``), list their image fields
    (``image_fields``) and check their own rules.
    """

    endpoint: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    image_fields: ClassVar[tuple[str, ...]] = ()

    max_jobs: int | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    email: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)

    def image_inputs(self) -> dict[str, ImageSource]:
        """Every image given, keyed by its Python field path (``subject_images[1]``)."""
        found: dict[str, ImageSource] = {}
        for name in self.image_fields:
            value = getattr(self, name)
            if isinstance(value, tuple):
                found.update({f"{name}[{i}]": v for i, v in enumerate(value)})
            elif value is not None:
                found[name] = value
        return found

    def has_local_images(self) -> bool:
        """Whether any image is a local file or bytes (uploaded before the POST)."""
        for name in self.image_fields:
            value = getattr(self, name)
            if value is None:
                continue
            for image in value if isinstance(value, tuple) else (value,):
                if not is_remote(image):
                    return True
        return False

    def with_image_urls(self: R, urls: Mapping[str, str]) -> R:
        """A copy with some images (by field path, as in `image_inputs`) replaced by URLs."""
        changes: dict[str, Any] = {}
        for name in self.image_fields:
            value = getattr(self, name)
            if isinstance(value, tuple):
                changes[name] = tuple(urls.get(f"{name}[{i}]", v) for i, v in enumerate(value))
            elif name in urls:
                changes[name] = urls[name]
        return attrs.evolve(self, **changes)

    @property
    def expected_seconds(self) -> float:
        """A rough estimate of the real service's run time, used for ordering and deadlines."""
        return 60.0

    @property
    def default_timeout(self) -> float:
        """How long a waiter waits for this job by default, in seconds (generous)."""
        return max(600.0, 6 * self.expected_seconds)


@attrs.frozen(kw_only=True)
class KolorsElements(GenerationRequest):
    """POST images/kolors-elements: images from up to 4 subjects plus a scene and a style.

    At least two images in all. ``aspect_ratio`` one of `ASPECT_RATIOS_IMAGE` (server
    default 16:9), ``image_count`` 1-9 (default 1), ``max_jobs`` 1-50.
    """

    endpoint: ClassVar[str] = "images/kolors-elements"
    kind: ClassVar[str] = "image"
    image_fields: ClassVar[tuple[str, ...]] = ("subject_images", "scene_image", "style_image")

    prompt: str | None = None
    subject_images: tuple[ImageSource, ...] = attrs.field(default=(), converter=_image_tuple)
    scene_image: ImageSource | None = None
    style_image: ImageSource | None = None
    aspect_ratio: str | None = None
    image_count: int | None = None

    def __attrs_post_init__(self) -> None:
        _check_text("prompt", self.prompt)
        if len(self.subject_images) > MAX_IMAGES:
            raise _fail(
                "subject_images", f"at most {MAX_IMAGES} images, got {len(self.subject_images)}"
            )
        given = self.image_inputs()
        for key, image in given.items():
            _check_image(key, image)
        if len(given) < 2:
            raise _fail(
                "subject_images",
                "At least two images must be provided (any combination of subject_images, "
                f"scene_image and style_image); got {len(given)}",
            )
        _check_choice("aspect_ratio", self.aspect_ratio, ASPECT_RATIOS_IMAGE)
        _check_int("image_count", self.image_count, 1, 9)
        _check_common(self)

    @property
    def expected_seconds(self) -> float:
        """About half a minute per image job on the real service."""
        return 30.0 + 5.0 * ((self.image_count or 1) - 1)


def _duration(value: object) -> object:
    # The page's example sends "5": accept the string forms of the documented numbers.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


@attrs.frozen(kw_only=True)
class Image2VideoElements(GenerationRequest):
    """POST videos/image2video-elements: a video in which up to 4 images appear.

    ``prompt`` is required; one to four ``images``; ``duration`` 5 or 10 seconds;
    ``aspect_ratio`` 16:9, 9:16 or 1:1; ``mode`` std or pro; ``model_name`` kling-v1-6;
    ``enable_audio`` adds sound effects.
    """

    endpoint: ClassVar[str] = "videos/image2video-elements"
    kind: ClassVar[str] = "video"
    image_fields: ClassVar[tuple[str, ...]] = ("images",)

    prompt: str = attrs.field(default=None)
    images: tuple[ImageSource, ...] = attrs.field(default=(), converter=_image_tuple)
    negative_prompt: str | None = None
    duration: int | None = attrs.field(default=None, converter=_duration)
    aspect_ratio: str | None = None
    model_name: str | None = None
    mode: str | None = None
    enable_audio: bool | None = None

    def __attrs_post_init__(self) -> None:
        _check_text("prompt", self.prompt, required=True)
        if not self.images:
            raise _fail(
                "images", "At least one image (image_0, image_1, image_2 or image_3) is required"
            )
        if len(self.images) > MAX_IMAGES:
            raise _fail("images", f"at most {MAX_IMAGES} images, got {len(self.images)}")
        for key, image in self.image_inputs().items():
            _check_image(key, image)
        _check_text("negative_prompt", self.negative_prompt)
        duration: object = self.duration
        if isinstance(duration, bool | float):
            # 5.0 == 5 would pass the choice check and go out as "5.0".
            raise _fail("duration", f"must be 5 or 10 (seconds), got {duration!r}")
        _check_choice("duration", self.duration, DURATIONS)
        _check_choice("aspect_ratio", self.aspect_ratio, ASPECT_RATIOS_VIDEO)
        _check_choice("model_name", self.model_name, MODEL_NAMES)
        _check_choice("mode", self.mode, MODES)
        if self.enable_audio is not None and not isinstance(self.enable_audio, bool):
            raise _fail("enable_audio", f"must be True or False, got {self.enable_audio!r}")
        _check_common(self)

    @property
    def expected_seconds(self) -> float:
        """Minutes on the real service: longer for pro and for 10 s."""
        seconds = 150.0
        if self.mode == "pro":
            seconds *= 2
        if self.duration == 10:
            seconds *= 2
        return seconds
