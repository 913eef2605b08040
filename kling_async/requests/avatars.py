"""Avatar requests: avatars/video (a talking-avatar video)."""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from .base import GenerationRequest, register
from .fields import When, choice, ident, media, number
from .fields import text as text_field
from .media import ImageSource

__all__ = ["EMOTIONS", "AvatarVideo"]

EMOTIONS: Final = ("neutral", "happy", "angry", "sad", "fearful", "disgusted", "surprised")


@register
@attrs.frozen(kw_only=True)
class AvatarVideo(GenerationRequest):
    """POST avatars/video: a talking-avatar video.

    Exactly one of ``avatar_id`` (GET /avatars) or ``image_url``; exactly one of
    ``audio_url`` (recorded speech) or ``text`` (max 5000, spoken by TTS, needs
    ``speaker_id`` from GET /tts/voices); ``speed`` 0.8-2.0; ``emotion`` one of
    `EMOTIONS`; ``prompt`` max 2000; ``mode`` std or pro; ``max_jobs`` 1-50.
    """

    endpoint: ClassVar[str] = "avatars/video"
    kind: ClassVar[str] = "video"
    base_seconds: ClassVar[float] = 180.0
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("avatar_id", "image_url"),
        ("audio_url", "text"),
    )

    avatar_id: str | int | None = ident("avatarId")
    image_url: ImageSource | None = media("imageUrl")  # noqa: RUF009 (an attrs field factory)
    audio_url: ImageSource | None = media("audioUrl", "audio")  # noqa: RUF009 (an attrs field factory)
    text: str | None = text_field("text", max_len=5000)
    speaker_id: str | None = ident(
        "speakerId", required=True, optional_when=(When("text", negate=True),)
    )
    speed: float | None = number("speed", 0.8, 2.0)
    emotion: str | None = choice("emotion", EMOTIONS)
    prompt: str | None = text_field("prompt", max_len=2000)
    mode: str | None = choice("mode", ("std", "pro"))
