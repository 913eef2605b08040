"""Audio generation requests: tts/create."""

from __future__ import annotations

from typing import ClassVar

import attrs

from .base import GenerationRequest, register
from .fields import ident, number
from .fields import text as text_field

__all__ = ["TextToSpeech"]


@register
@attrs.frozen(kw_only=True)
class TextToSpeech(GenerationRequest):
    """POST tts/create: speech from text.

    ``speaker_id`` (from GET /tts/voices) and ``text`` (max 150 characters) required;
    ``speed`` 0.8-2; ``emotion`` one the voice offers (GET /tts/voices).
    maxJobs/replyUrl/replyRef not listed: kept for the client, not sent.
    """

    endpoint: ClassVar[str] = "tts/create"
    kind: ClassVar[str] = "audio"
    callbacks: ClassVar[bool] = False
    base_seconds: ClassVar[float] = 15.0

    speaker_id: str = ident("speakerId", required=True)
    text: str = text_field("text", max_len=150, required=True)
    speed: float | None = number("speed", 0.8, 2)
    emotion: str | None = ident("emotion")
