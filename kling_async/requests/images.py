"""Image generation requests: kolors, kolors-elements, virtual-try-on, upscale, omni.

Every rule below is declared on the field (see `fields`); endpoints.md and
kolors-elements.md are the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

import attrs

from .base import GenerationRequest, register
from .fields import Alt, When, choice, flag, ident, integer, media, media_list, text
from .media import ImageSource

__all__ = [
    "ASPECT_RATIOS_IMAGE",
    "ImageOmni",
    "Kolors",
    "KolorsElements",
    "UpscaleImage",
    "VirtualTryOn",
]

ASPECT_RATIOS_IMAGE: Final = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")
KOLORS_VERSIONS: Final = ("kling-v3-0", "kling-v2-1", "kling-v2-0", "kling-v1-6", "kling-v1-5")
REFERENCES: Final = ("none", "subject", "face", "restyle")


class _ImageSeconds:
    """About half a minute per image job, a little more per extra image."""

    __slots__ = ()

    @property
    def expected_seconds(self) -> float:
        """About half a minute per image job on the real service."""
        count = getattr(self, "image_count", None) or 1
        return 30.0 + 5.0 * (count - 1)


@register
@attrs.frozen(kw_only=True)
class Kolors(_ImageSeconds, GenerationRequest):
    """POST images/kolors: a KOLORS image, optionally from a reference image.

    ``prompt`` required (max 2500); ``version`` one of `KOLORS_VERSIONS` (default
    kling-v3-0); ``reference`` none (default), subject, face or restyle;
    ``image_reference`` required unless reference is none; ``aspect_ratio`` one of
    `ASPECT_RATIOS_IMAGE` (not with restyle); ``image_count`` 1-9; ``face_strength``
    1-100 (face and subject); ``subject_strength`` 1-100 (subject); ``face_no`` a face
    index from images/recognize-faces (face).
    """

    endpoint: ClassVar[str] = "images/kolors"
    kind: ClassVar[str] = "image"

    prompt: str = text("prompt", required=True)
    version: str | None = choice("version", KOLORS_VERSIONS, default="kling-v3-0")
    reference: str | None = choice("reference", REFERENCES, default="none")
    image_reference: ImageSource | None = media(  # noqa: RUF009 (an attrs field factory)
        "imageReference", required=True, optional_when=(When("reference", ("none",)),)
    )
    aspect_ratio: str | None = choice(
        "aspect_ratio", ASPECT_RATIOS_IMAGE, not_when=(When("reference", ("restyle",)),)
    )
    image_count: int | None = integer("imageCount", 1, 9)
    face_strength: int | None = integer(
        "faceStrength", 1, 100, only_when=(When("reference", ("face", "subject")),)
    )
    subject_strength: int | None = integer(
        "subjectStrength", 1, 100, only_when=(When("reference", ("subject",)),)
    )
    face_no: int | None = integer("faceNo", 0, None, only_when=(When("reference", ("face",)),))


@register
@attrs.frozen(kw_only=True)
class KolorsElements(_ImageSeconds, GenerationRequest):
    """POST images/kolors-elements: images from up to 4 subjects plus a scene and a style.

    At least two images in all. ``prompt`` max 2500; ``aspect_ratio`` one of
    `ASPECT_RATIOS_IMAGE` (server default 16:9), ``image_count`` 1-9 (default 1),
    ``max_jobs`` 1-50.
    """

    endpoint: ClassVar[str] = "images/kolors-elements"
    kind: ClassVar[str] = "image"
    at_least: ClassVar[tuple[tuple[int, str, tuple[str, ...], str], ...]] = (
        (
            2,
            "subject_images",
            ("subject_images", "scene_image", "style_image"),
            "At least two images must be provided (any combination of subject_images, "
            "scene_image and style_image)",
        ),
    )

    prompt: str | None = text("prompt")
    subject_images: Sequence[ImageSource] = media_list("subjectImage{}", 1, 4)
    scene_image: ImageSource | None = media("sceneImage")  # noqa: RUF009 (an attrs field factory)
    style_image: ImageSource | None = media("styleImage")  # noqa: RUF009 (an attrs field factory)
    aspect_ratio: str | None = choice("aspect_ratio", ASPECT_RATIOS_IMAGE)
    image_count: int | None = integer("imageCount", 1, 9)


@register
@attrs.frozen(kw_only=True)
class VirtualTryOn(_ImageSeconds, GenerationRequest):
    """POST images/virtual-try-on: dress a person image in garments.

    ``human_image`` required; ``upper_input``, ``lower_input``, ``dress_input`` garment
    images (valid combinations are not documented); ``image_count`` 1-4.
    """

    endpoint: ClassVar[str] = "images/virtual-try-on"
    kind: ClassVar[str] = "image"

    human_image: ImageSource = media("humanImage", required=True)  # noqa: RUF009 (an attrs field factory)
    upper_input: ImageSource | None = media("upperInput")  # noqa: RUF009 (an attrs field factory)
    lower_input: ImageSource | None = media("lowerInput")  # noqa: RUF009 (an attrs field factory)
    dress_input: ImageSource | None = media("dressInput")  # noqa: RUF009 (an attrs field factory)
    image_count: int | None = integer("imageCount", 1, 4)


@register
@attrs.frozen(kw_only=True)
class UpscaleImage(GenerationRequest):
    """POST images/upscale: upscale one generated image.

    ``task_id`` (an image task that succeeded) and ``work_id`` (its ``works[].workId``)
    required; ``max_jobs`` 1-10 here.
    """

    endpoint: ClassVar[str] = "images/upscale"
    kind: ClassVar[str] = "image"
    max_jobs_range: ClassVar[tuple[int, int]] = (1, 10)
    base_seconds: ClassVar[float] = 30.0

    task_id: str | int = ident("task_id", required=True)
    work_id: str | int = ident("workId", required=True)


IS_V3: Final = When("omni_version", ("v3",))


@register
@attrs.frozen(kw_only=True)
class ImageOmni(_ImageSeconds, GenerationRequest):
    """POST images/omni: Omni image generation.

    ``prompt`` required (may cite @image_1, @element_1); ``omni_version`` v3 (default) or
    o1; ``resolution`` 1k, 2k, 4k (4k v3 only); ``aspect_ratio`` auto (v3 only), 16:9,
    9:16, 1:1, 4:3, 3:4, 3:2, 2:3, 21:9; ``image_count`` 1-9; ``story_mode`` v3 only and
    needs ``image`` or ``element``; ``image`` (image_1), ``element`` (element_1).
    maxJobs/replyUrl/replyRef not listed: kept for the client, not sent.
    """

    endpoint: ClassVar[str] = "images/omni"
    kind: ClassVar[str] = "image"
    callbacks: ClassVar[bool] = False
    needs: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("story_mode", ("image", "element")),
    )

    prompt: str = text("prompt", max_len=None, required=True)
    omni_version: str | None = choice("omni_version", ("v3", "o1"), default="v3")
    resolution: str | None = choice(
        "resolution",
        ("1k", "2k", "4k"),
        alts=(Alt(when=(When("omni_version", ("o1",)),), choices=("1k", "2k")),),
    )
    aspect_ratio: str | None = choice(
        "aspect_ratio",
        ("auto", "16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"),
        alts=(
            Alt(
                when=(When("omni_version", ("o1",)),),
                choices=("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"),
            ),
        ),
    )
    image_count: int | None = integer("imageCount", 1, 9)
    story_mode: bool | None = flag("story_mode", only_when=(IS_V3,))
    image: ImageSource | None = media("image_1")  # noqa: RUF009 (an attrs field factory)
    element: str | None = ident("element_1")
