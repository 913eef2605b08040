"""Video generation requests: text2video, image2video-*, extend, lipsync, motion, sound, omni.

Every rule below is declared on the field (see `fields`); endpoints.md is the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import attrs

from .base import GenerationRequest, register
from .fields import (
    Alt,
    When,
    choice,
    flag,
    ident,
    ident_list,
    integer,
    media,
    media_list,
    multi_shot,
    number,
    text,
)
from .media import ImageSource

__all__ = [
    "ASPECT_RATIOS_VIDEO",
    "AddSound",
    "ExtendVideo",
    "Image2VideoEffects",
    "Image2VideoElements",
    "Image2VideoFrames",
    "LipSync",
    "MotionCreate",
    "Text2Video",
    "VideoOmni",
]

ASPECT_RATIOS_VIDEO: Final = ("16:9", "9:16", "1:1")
MODES: Final = ("std", "pro")
V3: Final = "kling-v3-0"
TURBO: Final = "kling-v3-0-turbo"
TEXT2VIDEO_MODELS: Final = (
    V3,
    TURBO,
    "kling-v2-6",
    "kling-v2-5",
    "kling-v2-1-master",
    "kling-v1-6",
    "kling-v1-5",
)
FRAMES_MODELS: Final = (
    V3,
    TURBO,
    "kling-v2-6",
    "kling-v2-5",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v1-6",
    "kling-v1-5",
)
IS_V3: Final = When("model_name", (V3,))
IS_TURBO: Final = When("model_name", (TURBO,))
MULTI_SHOT: Final = When("shots")
#: kling-v2-6 with audio needs mode pro.
AUDIO_NEEDS_PRO: Final = Alt(
    when=(When("model_name", ("kling-v2-6",)), When("mode", ("pro",), negate=True)),
    choices=(False,),
)


def _duration(**rules: Any) -> Any:
    """5 or 10 s, 3-15 s with v3; sent as a string, as the pages' examples do."""
    return integer(
        "duration",
        choices=(5, 10),
        as_text=True,
        default=5,
        alts=(Alt(when=(IS_V3,), low=3, high=15),),
        **rules,
    )


def _video_seconds(mode: str | None, duration: int | None) -> float:
    seconds = 150.0
    if mode in ("pro", "4k"):
        seconds *= 2
    if duration is not None and duration > 5:
        seconds *= duration / 5
    return seconds


@register
@attrs.frozen(kw_only=True)
class Text2Video(GenerationRequest):
    """POST videos/text2video: a video from text.

    ``prompt`` required (max 2500) unless multi-shot; ``negative_prompt`` max 2500;
    ``aspect_ratio`` 16:9, 9:16, 1:1; ``cfg_scale`` 0-1; ``duration`` 5 or 10, 3-15 with
    kling-v3-0, not with multi-shot; ``mode`` std/pro (pro only for kling-v2-1-master and
    kling-v2-5); ``model_name`` one of `TEXT2VIDEO_MODELS` (default kling-v1-6);
    ``enable_audio`` (not with turbo; kling-v2-6 needs mode pro for audio);
    ``shots=[(prompt, seconds), ...]`` 2-6 shots summing to 3-15 s, kling-v3-0 only.
    """

    endpoint: ClassVar[str] = "videos/text2video"
    kind: ClassVar[str] = "video"

    prompt: str | None = text("prompt", required=True, optional_when=(MULTI_SHOT,))
    negative_prompt: str | None = text("negative_prompt")
    aspect_ratio: str | None = choice("aspect_ratio", ASPECT_RATIOS_VIDEO)
    cfg_scale: float | None = number("cfg_scale", 0, 1)
    duration: int | None = _duration(not_when=(MULTI_SHOT,))
    mode: str | None = choice(
        "mode",
        MODES,
        alts=(
            Alt(when=(When("model_name", ("kling-v2-1-master", "kling-v2-5")),), choices=("pro",)),
        ),
    )
    model_name: str | None = choice("model_name", TEXT2VIDEO_MODELS, default="kling-v1-6")
    enable_audio: bool | None = flag("enable_audio", not_when=(IS_TURBO,), alts=(AUDIO_NEEDS_PRO,))
    shots: Sequence[tuple[str, int]] = multi_shot(only_when=(IS_V3,))

    @property
    def expected_seconds(self) -> float:
        """Minutes on the real service: longer for pro and for longer clips."""
        return _video_seconds(self.mode, self.duration)


@register
@attrs.frozen(kw_only=True)
class Image2VideoFrames(GenerationRequest):
    """POST videos/image2video-frames: a video from a start and/or end frame.

    ``image`` start frame, ``image_tail`` end frame (not with turbo); ``elements`` up to 3
    element ids, kling-v3-0 only; ``prompt`` / ``negative_prompt`` max 2500; ``cfg_scale``
    0-1; ``duration`` 5 or 10, 3-15 with kling-v3-0, not with multi-shot; ``mode`` std,
    pro, 4k (4k with kling-v3-0 only; kling-v2-1-master pro only); ``model_name`` one of
    `FRAMES_MODELS` (default kling-v2-1); ``enable_audio`` as for `Text2Video`; ``shots``
    as for `Text2Video`, kling-v3-0 only.
    """

    endpoint: ClassVar[str] = "videos/image2video-frames"
    kind: ClassVar[str] = "video"

    image: ImageSource | None = media("image")  # noqa: RUF009 (an attrs field factory)
    image_tail: ImageSource | None = media("image_tail", not_when=(IS_TURBO,))  # noqa: RUF009 (an attrs field factory)
    elements: Sequence[str] | None = ident_list("element_{}", 1, 3, only_when=(IS_V3,))
    prompt: str | None = text("prompt")
    negative_prompt: str | None = text("negative_prompt")
    cfg_scale: float | None = number("cfg_scale", 0, 1)
    duration: int | None = _duration(not_when=(MULTI_SHOT,))
    mode: str | None = choice(
        "mode",
        (*MODES, "4k"),
        alts=(
            Alt(when=(When("model_name", (V3,), negate=True),), choices=MODES),
            Alt(when=(When("model_name", ("kling-v2-1-master",)),), choices=("pro",)),
        ),
    )
    model_name: str | None = choice("model_name", FRAMES_MODELS, default="kling-v2-1")
    enable_audio: bool | None = flag("enable_audio", not_when=(IS_TURBO,), alts=(AUDIO_NEEDS_PRO,))
    shots: Sequence[tuple[str, int]] = multi_shot(only_when=(IS_V3,))

    @property
    def expected_seconds(self) -> float:
        """Minutes on the real service: longer for pro/4k and for longer clips."""
        return _video_seconds(self.mode, self.duration)


@register
@attrs.frozen(kw_only=True)
class Image2VideoElements(GenerationRequest):
    """POST videos/image2video-elements: a video in which up to 4 images appear.

    ``prompt`` is required (max 2500); one to four ``images``; ``elements`` up to 3
    element ids, kling-v3-0 only; ``duration`` 5 or 10 seconds (3-15 with kling-v3-0);
    ``aspect_ratio`` 16:9, 9:16 or 1:1 (not with kling-v3-0: the image decides);
    ``mode`` std or pro; ``model_name`` kling-v1-6 (default) or kling-v3-0;
    ``enable_audio`` adds sound effects (kling-v3-0 always has audio: only True).
    """

    endpoint: ClassVar[str] = "videos/image2video-elements"
    kind: ClassVar[str] = "video"

    prompt: str = text("prompt", required=True)
    images: Sequence[ImageSource] = media_list(
        "image_{}",
        0,
        4,
        required=True,
        required_message="At least one image (image_0, image_1, image_2 or image_3) is required",
    )
    elements: Sequence[str] | None = ident_list("element_{}", 1, 3, only_when=(IS_V3,))
    negative_prompt: str | None = text("negative_prompt")
    duration: int | None = _duration()
    aspect_ratio: str | None = choice("aspect_ratio", ASPECT_RATIOS_VIDEO, not_when=(IS_V3,))
    model_name: str | None = choice("model_name", (V3, "kling-v1-6"), default="kling-v1-6")
    mode: str | None = choice("mode", MODES)
    enable_audio: bool | None = flag("enable_audio", alts=(Alt(when=(IS_V3,), choices=(True,)),))

    @property
    def expected_seconds(self) -> float:
        """Minutes on the real service: longer for pro and for 10 s."""
        return _video_seconds(self.mode, self.duration)


@register
@attrs.frozen(kw_only=True)
class Image2VideoEffects(GenerationRequest):
    """POST videos/image2video-effects: an image animated with a named effect.

    ``effect`` (a name from GET /videos/effects) and ``image`` required; ``mode`` std or
    pro; ``prompt`` max 2500.
    """

    endpoint: ClassVar[str] = "videos/image2video-effects"
    kind: ClassVar[str] = "video"
    base_seconds: ClassVar[float] = 150.0

    effect: str = ident("effect", required=True)
    image: ImageSource = media("image", required=True)  # noqa: RUF009 (an attrs field factory)
    mode: str | None = choice("mode", MODES)
    prompt: str | None = text("prompt")


@register
@attrs.frozen(kw_only=True)
class ExtendVideo(GenerationRequest):
    """POST videos/extend: extend a generated video.

    ``task_id`` (of the video task) required; ``prompt`` / ``negative_prompt`` max 2500;
    ``cfg_scale`` 0-1; ``enable_audio``. No model or duration field.
    """

    endpoint: ClassVar[str] = "videos/extend"
    kind: ClassVar[str] = "video"
    base_seconds: ClassVar[float] = 150.0

    task_id: str | int = ident("task_id", required=True)
    prompt: str | None = text("prompt")
    negative_prompt: str | None = text("negative_prompt")
    cfg_scale: float | None = number("cfg_scale", 0, 1)
    enable_audio: bool | None = flag("enable_audio")


@register
@attrs.frozen(kw_only=True)
class LipSync(GenerationRequest):
    """POST videos/lipsync: lip-sync a ``video`` to an ``audio`` track (both required)."""

    endpoint: ClassVar[str] = "videos/lipsync"
    kind: ClassVar[str] = "video"
    base_seconds: ClassVar[float] = 120.0

    video: ImageSource = media("video", "video", required=True)  # noqa: RUF009 (an attrs field factory)
    audio: ImageSource = media("audio", "audio", required=True)  # noqa: RUF009 (an attrs field factory)


@register
@attrs.frozen(kw_only=True)
class MotionCreate(GenerationRequest):
    """POST videos/motion-create: a person image driven by a motion video.

    ``image_url`` (the person) and ``motion_url`` (a 3-30 s video) required;
    ``model_name`` kling-v3-0 (default) or kling-v2-6; ``prompt``; ``keep_audio``;
    ``motion_direction`` motion_direction or image_direction; ``mode`` std or pro;
    ``element`` one element id, kling-v3-0 only. maxJobs/replyUrl/replyRef not listed:
    kept for the client, not sent.
    """

    endpoint: ClassVar[str] = "videos/motion-create"
    kind: ClassVar[str] = "video"
    callbacks: ClassVar[bool] = False
    base_seconds: ClassVar[float] = 180.0

    image_url: ImageSource = media("imageUrl", required=True)  # noqa: RUF009 (an attrs field factory)
    motion_url: ImageSource = media("motionUrl", "video", required=True)  # noqa: RUF009 (an attrs field factory)
    model_name: str | None = choice("model_name", (V3, "kling-v2-6"), default=V3)
    prompt: str | None = text("prompt", max_len=None)
    keep_audio: bool | None = flag("keepAudio")
    motion_direction: str | None = choice(
        "motionDirection", ("motion_direction", "image_direction")
    )
    mode: str | None = choice("mode", MODES)
    element: str | None = ident("element_1", only_when=(IS_V3,))


@register
@attrs.frozen(kw_only=True)
class AddSound(GenerationRequest):
    """POST videos/add-sound: add a soundtrack to a 3-20 s ``video`` (required).

    ``crop_video_original_sound`` is sent as ``cropVideoOriginalSound`` (its meaning is
    not confirmed). maxJobs/replyUrl/replyRef not listed: kept, not sent.
    """

    endpoint: ClassVar[str] = "videos/add-sound"
    kind: ClassVar[str] = "video"
    callbacks: ClassVar[bool] = False
    base_seconds: ClassVar[float] = 90.0

    video: ImageSource = media("video", "video", required=True)  # noqa: RUF009 (an attrs field factory)
    crop_video_original_sound: bool | None = flag("cropVideoOriginalSound")


IS_O1: Final = When("omni_version", ("o1",))
HAS_VIDEO: Final = When("video")
FRAMES: Final = When("frame_start")


@register
@attrs.frozen(kw_only=True)
class VideoOmni(GenerationRequest):
    """POST videos/omni: Omni video (reference, frames, video, multi-shot).

    ``prompt`` required unless multi-shot (may cite @image_1, @element_1, @video_1);
    ``omni_version`` v3 (default) or o1; ``duration`` 3-15 s (o1: 3-10), not with
    multi-shot; ``aspect_ratio`` 16:9, 9:16, 1:1 (with ``frame_start``: only auto);
    ``mode`` std/pro; ``enable_audio`` only v3 without ``video``; ``image`` (image_1),
    ``element`` (element_1), ``frame_start`` / ``frame_end``, ``video`` (video_1),
    ``video_mode`` reference/transform and ``keep_audio`` only with ``video``; ``shots``
    v3 only. maxJobs/replyUrl/replyRef not listed: kept, not sent.
    """

    endpoint: ClassVar[str] = "videos/omni"
    kind: ClassVar[str] = "video"
    callbacks: ClassVar[bool] = False

    prompt: str | None = text("prompt", max_len=None, required=True, optional_when=(MULTI_SHOT,))
    omni_version: str | None = choice("omni_version", ("v3", "o1"), default="v3")
    duration: int | None = integer(
        "duration",
        3,
        15,
        as_text=True,
        default=5,
        not_when=(MULTI_SHOT,),
        alts=(Alt(when=(IS_O1,), low=3, high=10),),
    )
    aspect_ratio: str | None = choice(
        "aspect_ratio",
        ASPECT_RATIOS_VIDEO,
        alts=(Alt(when=(FRAMES,), choices=("auto",)),),
    )
    mode: str | None = choice("mode", MODES)
    enable_audio: bool | None = flag("enable_audio", not_when=(HAS_VIDEO, IS_O1))
    image: ImageSource | None = media("image_1")  # noqa: RUF009 (an attrs field factory)
    element: str | None = ident("element_1")
    frame_start: ImageSource | None = media("frame_start")  # noqa: RUF009 (an attrs field factory)
    frame_end: ImageSource | None = media("frame_end")  # noqa: RUF009 (an attrs field factory)
    video: ImageSource | None = media("video_1", "video")  # noqa: RUF009 (an attrs field factory)
    video_mode: str | None = choice(
        "video_mode", ("reference", "transform"), only_when=(HAS_VIDEO,)
    )
    keep_audio: bool | None = flag("keep_audio", only_when=(HAS_VIDEO,))
    shots: Sequence[tuple[str, int]] = multi_shot(only_when=(When("omni_version", ("v3",)),))

    @property
    def expected_seconds(self) -> float:
        """Minutes on the real service: longer for pro and for longer clips."""
        return _video_seconds(self.mode, self.duration)
