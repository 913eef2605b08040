"""Is this task the one a lost POST created? Compared on everything the task echoes.

The task list echoes the prompt, some (not always all) input image URLs, and some
settings (aspect ratio, counts, duration). A task is a lost POST's only when nothing it
echoes disagrees with the POST's recorded wire body and it echoes the same prompt: two
lines sharing a prompt but not their images are told apart by the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..models import TaskResponse

__all__ = ["matches_body"]

#: Settings the task list echoes under the body's own wire name.
ECHOED_SETTINGS: Final = ("aspect_ratio", "imageCount", "duration", "negative_prompt", "mode")


def _body_urls(body: Mapping[str, Any]) -> set[str]:
    urls = {v for k, v in body.items() if k.startswith(("subjectImage", "image_"))}
    urls |= {body[k] for k in ("sceneImage", "styleImage") if k in body}
    return {u for u in urls if isinstance(u, str)}


def matches_body(task: TaskResponse, body: Mapping[str, Any]) -> bool:
    """Whether ``task`` may be the one the POST of ``body`` created: the same prompt, every
    input image URL it echoes among the body's, and every setting it echoes equal."""
    if task.task_id is None:
        return False
    echoed = task.arguments
    if (echoed.get("prompt") or None) != (body.get("prompt") or None):
        return False
    info = task.task.task_info if task.task is not None else None
    inputs = {i.url for i in info.inputs if i.url} if info is not None else set()
    if not inputs <= _body_urls(body):
        return False
    for name in ECHOED_SETTINGS:
        value = echoed.get(name)
        if value is not None and name in body and str(body[name]) != value:
            return False
    return True
