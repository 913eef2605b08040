"""Validated request types for every generation endpoint of useapi.net's Kling API v1.

Every documented rule is checked when the object is built, so bad input raises
`RequestValidationError` (a ValueError) naming the field before anything is sent::

    Text2Video(prompt="a fox", model_name="kling-v3-0", duration=10)
    KolorsElements(prompt="a cat", subject_images=["https://x/cat.jpg", "dog.png"])
    Image2VideoElements(prompt="they dance", images=[b"...png bytes..."], duration=10)

A file input is an ``http(s)`` URL (sent as is), a local path, or bytes; local files and
bytes are read and checked at once (size, type by magic bytes, 300 px minimum for images)
and uploaded through POST /assets by the client before the POST (once per content).

Newer server values or fields go in ``extra``: a mapping of wire names to JSON values,
sent as given and not validated; it may not repeat a field a keyword sets (the body would
be ambiguous). A typo in a keyword still fails, since only ``extra`` is unchecked.

`REQUEST_TYPES` maps each endpoint path (``"videos/text2video"``) to its class; every class
has ``endpoint``, ``kind`` (the content of its results), ``from_wire(body)`` and
``to_wire()``. `parse_fields` / `request_from_fields` read CLI ``FIELD=VALUE`` strings and
`request_from_mapping` a batch line's fields.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from .audio import TextToSpeech
from .avatars import EMOTIONS, AvatarVideo
from .base import REGISTRY, GenerationRequest
from .fields import MAX_TEXT, Alt, Spec, When, spec_of
from .images import (
    ASPECT_RATIOS_IMAGE,
    ImageOmni,
    Kolors,
    KolorsElements,
    UpscaleImage,
    VirtualTryOn,
)
from .media import MAX_BYTES, MIN_IMAGE_SIDE, ImageSource, image_size, is_remote, sniff
from .parse import describe_fields, parse_fields, request_from_fields, request_from_mapping
from .videos import (
    ASPECT_RATIOS_VIDEO,
    AddSound,
    ExtendVideo,
    Image2VideoEffects,
    Image2VideoElements,
    Image2VideoFrames,
    LipSync,
    MotionCreate,
    Text2Video,
    VideoOmni,
)

__all__ = [
    "ASPECT_RATIOS_IMAGE",
    "ASPECT_RATIOS_VIDEO",
    "EMOTIONS",
    "MAX_BYTES",
    "MAX_TEXT",
    "MIN_IMAGE_SIDE",
    "REQUEST_TYPES",
    "AddSound",
    "Alt",
    "AvatarVideo",
    "ExtendVideo",
    "GenerationRequest",
    "Image2VideoEffects",
    "Image2VideoElements",
    "Image2VideoFrames",
    "ImageOmni",
    "ImageSource",
    "Kolors",
    "KolorsElements",
    "LipSync",
    "MotionCreate",
    "Spec",
    "Text2Video",
    "TextToSpeech",
    "UpscaleImage",
    "VideoOmni",
    "VirtualTryOn",
    "When",
    "describe_fields",
    "image_size",
    "is_remote",
    "parse_fields",
    "request_from_fields",
    "request_from_mapping",
    "sniff",
    "spec_of",
]

#: Endpoint path (no leading slash) -> request class, for every generation endpoint.
REQUEST_TYPES: Final = MappingProxyType(dict(sorted(REGISTRY.items())))

#: Every public name (kept for code that read it before ``__all__`` listed them all).
PUBLIC: Final = tuple(__all__)
