"""One `KlingClient` method per generation endpoint, typed like its request class.

``await kling.text2video(prompt="a fox", duration=10)`` is ``await kling.run(Text2Video(
prompt="a fox", duration=10))``: the keywords are the class's own (IDE completion and mypy
see them), the job holds one of the account's slots, and the final `TaskResponse` comes back
(or `TaskFailedError`). Each method is built from its class, so no endpoint is written twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec

from .models import TaskResponse
from .requests import (
    AddSound,
    AvatarVideo,
    ExtendVideo,
    GenerationRequest,
    Image2VideoEffects,
    Image2VideoElements,
    Image2VideoFrames,
    ImageOmni,
    Kolors,
    KolorsElements,
    LipSync,
    MotionCreate,
    Text2Video,
    TextToSpeech,
    UpscaleImage,
    VideoOmni,
    VirtualTryOn,
)

__all__ = ["EndpointMethods", "job_method"]

P = ParamSpec("P")


def job_method(
    cls: Callable[P, GenerationRequest],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, TaskResponse]]:
    """A client method that builds a ``cls`` request from its keywords and runs it."""

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> TaskResponse:
        result: TaskResponse = await self.run(cls(*args, **kwargs))
        return result

    name = getattr(cls, "__name__", "request")
    endpoint = getattr(cls, "endpoint", "")
    method.__name__ = method.__qualname__ = _snake(name)
    method.__doc__ = (
        f"Run a ``{endpoint}`` job and return its final state: ``run({name}(...))`` with "
        f"the same keywords (see `{name}` for the fields and rules)."
    )
    return method


def _snake(name: str) -> str:
    out = [name[0].lower()]
    for before, char in itertools.pairwise(name):
        out.append(f"_{char.lower()}" if char.isupper() and not before.isupper() else char.lower())
    return "".join(out).replace("2_", "2")


class EndpointMethods:
    """The per-endpoint methods of `KlingClient` (each is `KlingClient.run` of its class)."""

    text2video = job_method(Text2Video)
    image2video_frames = job_method(Image2VideoFrames)
    image2video_elements = job_method(Image2VideoElements)
    image2video_effects = job_method(Image2VideoEffects)
    extend_video = job_method(ExtendVideo)
    lip_sync = job_method(LipSync)
    motion_create = job_method(MotionCreate)
    add_sound = job_method(AddSound)
    video_omni = job_method(VideoOmni)
    avatar_video = job_method(AvatarVideo)
    kolors = job_method(Kolors)
    kolors_elements = job_method(KolorsElements)
    virtual_try_on = job_method(VirtualTryOn)
    upscale_image = job_method(UpscaleImage)
    image_omni = job_method(ImageOmni)
    text_to_speech = job_method(TextToSpeech)
