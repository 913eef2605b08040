"""The simulator's wire table refuses invalid generation bodies: status 400 and the text
naming the field, no task created."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, call

from kling_async.testing import KlingSimulator

IMG = "https://example.com/a.png"
VID = "https://example.com/a.mp4"
WAV = "https://example.com/a.wav"
SHOTS = {
    "shot_1_prompt": "a fox",
    "shot_1_duration": 4,
    "shot_2_prompt": "runs",
    "shot_2_duration": 6,
}


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(token=TOKEN, job_seconds=30, duration_sigma=0) as server:
        yield server


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("videos/text2video", {}, "prompt is required"),
    (
        "videos/text2video",
        {"prompt": "x" * 2501},
        "prompt must be at most 2500 characters, got 2501",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "aspect_ratio": "4:3"},
        "aspect_ratio must be one of 16:9, 9:16, 1:1, got '4:3'",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "cfg_scale": 2},
        "cfg_scale must be a number from 0 to 1, got 2",
    ),
    ("videos/text2video", {"prompt": "x", "duration": 7}, "duration must be 5 or 10, got 7"),
    (
        "videos/text2video",
        {"prompt": "x", "duration": 16, "model_name": "kling-v3-0"},
        "duration must be an integer from 3 to 15, got 16",
    ),
    ("videos/text2video", {"prompt": "x", "model_name": "kling-v9"}, "model_name must be one of"),
    (
        "videos/text2video",
        {"prompt": "x", "model_name": "kling-v2-5"},
        "model_name kling-v2-5 takes mode pro only",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "model_name": "kling-v2-6", "enable_audio": True},
        "enable_audio true with kling-v2-6 requires mode pro",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "model_name": "kling-v3-0-turbo", "enable_audio": True},
        "enable_audio must not be sent with kling-v3-0-turbo",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "enable_audio": "yes"},
        "enable_audio must be true or false, got 'yes'",
    ),
    ("videos/text2video", SHOTS, "shot_1_prompt (multi-shot) requires model_name kling-v3-0"),
    (
        "videos/text2video",
        {**SHOTS, "model_name": "kling-v3-0-turbo"},
        "requires model_name kling-v3-0",
    ),
    (
        "videos/text2video",
        {**SHOTS, "model_name": "kling-v3-0", "duration": 5},
        "duration is not accepted with multi-shot",
    ),
    (
        "videos/text2video",
        {"shot_1_prompt": "a", "shot_1_duration": 5, "model_name": "kling-v3-0"},
        "multi-shot needs at least 2 shots",
    ),
    (
        "videos/text2video",
        {**SHOTS, "shot_2_duration": 12, "model_name": "kling-v3-0"},
        "the shot durations must sum to 3-15 seconds, got 16",
    ),
    (
        "videos/text2video",
        {
            "shot_1_prompt": "a",
            "shot_2_prompt": "b",
            "shot_2_duration": 4,
            "model_name": "kling-v3-0",
        },
        "shot_1_prompt and shot_1_duration go together",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "maxJobs": 51},
        "maxJobs must be an integer from 1 to 50, got 51",
    ),
    (
        "videos/text2video",
        {"prompt": "x", "replyUrl": "ftp://x"},
        "replyUrl must be an http(s) URL",
    ),
    (
        "videos/image2video-frames",
        {"image": "a.png"},
        "image must be an http(s) URL (upload files with POST /assets)",
    ),
    (
        "videos/image2video-frames",
        {"image": IMG, "element_1": "u_1"},
        "element_1 requires model_name kling-v3-0",
    ),
    (
        "videos/image2video-frames",
        {"image": IMG, "mode": "4k"},
        "mode 4k requires model_name kling-v3-0",
    ),
    (
        "videos/image2video-frames",
        {"image": IMG, "image_tail": IMG, "model_name": "kling-v3-0-turbo"},
        "image_tail is not accepted with kling-v3-0-turbo",
    ),
    ("videos/image2video-effects", {"image": IMG}, "effect is required"),
    ("videos/image2video-effects", {"effect": "hug"}, "image is required"),
    ("videos/extend", {}, "task_id is required"),
    ("videos/extend", {"task_id": "abc"}, "task_id must be a task id, got 'abc'"),
    ("videos/lipsync", {"video": VID}, "audio is required"),
    ("videos/motion-create", {"imageUrl": IMG}, "motionUrl is required"),
    (
        "videos/motion-create",
        {"imageUrl": IMG, "motionUrl": VID, "model_name": "kling-v2-6", "element_1": "u"},
        "element_1 requires model_name kling-v3-0",
    ),
    (
        "videos/motion-create",
        {"imageUrl": IMG, "motionUrl": VID, "motionDirection": "up"},
        "motionDirection must be one of motion_direction, image_direction",
    ),
    ("videos/motion-upload", {"resourceUrl": VID}, "coverUrl is required"),
    ("videos/add-sound", {}, "video is required"),
    ("videos/omni", {}, "prompt is required"),
    (
        "videos/omni",
        {"prompt": "x", "omni_version": "o1", "duration": 12},
        "duration must be 3 to 10 with omni_version o1, got 12",
    ),
    (
        "videos/omni",
        {"prompt": "x", "video_1": VID, "enable_audio": True},
        "enable_audio is not accepted with video_1 or omni_version o1",
    ),
    ("videos/omni", {"prompt": "x", "keep_audio": True}, "keep_audio requires video_1"),
    (
        "videos/omni",
        {"prompt": "x", "frame_start": IMG, "aspect_ratio": "16:9"},
        "aspect_ratio must be auto with frame_start",
    ),
    (
        "videos/omni",
        {"prompt": "x", "aspect_ratio": "auto"},
        "aspect_ratio auto is accepted only with frame_start",
    ),
    ("videos/omni", {**SHOTS, "omni_version": "o1"}, "requires omni_version v3"),
    ("avatars/video", {"audioUrl": WAV}, "Either avatarId or imageUrl is required"),
    (
        "avatars/video",
        {"avatarId": "a", "imageUrl": IMG, "audioUrl": WAV},
        "Use either avatarId or imageUrl, not both",
    ),
    ("avatars/video", {"avatarId": "a"}, "Either audioUrl or text is required"),
    ("avatars/video", {"avatarId": "a", "text": "hi"}, "speakerId is required with text"),
    (
        "avatars/video",
        {"avatarId": "a", "text": "x" * 5001, "speakerId": "s"},
        "text must be at most 5000 characters",
    ),
    (
        "avatars/video",
        {"avatarId": "a", "audioUrl": WAV, "speed": 3},
        "speed must be a number from 0.8 to 2, got 3",
    ),
    (
        "avatars/video",
        {"avatarId": "a", "audioUrl": WAV, "emotion": "bored"},
        "emotion must be one of neutral",
    ),
    ("images/kolors", {}, "prompt is required"),
    (
        "images/kolors",
        {"prompt": "x", "reference": "face"},
        "imageReference is required with reference face",
    ),
    (
        "images/kolors",
        {"prompt": "x", "reference": "restyle", "imageReference": IMG, "aspect_ratio": "1:1"},
        "aspect_ratio is not accepted with reference restyle",
    ),
    (
        "images/kolors",
        {"prompt": "x", "imageCount": 10},
        "imageCount must be an integer from 1 to 9, got 10",
    ),
    (
        "images/kolors",
        {"prompt": "x", "faceStrength": 50},
        "faceStrength requires reference face or subject",
    ),
    (
        "images/kolors",
        {"prompt": "x", "reference": "face", "imageReference": IMG, "subjectStrength": 5},
        "subjectStrength requires reference subject",
    ),
    ("images/kolors", {"prompt": "x", "faceNo": 2}, "faceNo requires reference face"),
    ("images/virtual-try-on", {"upperInput": IMG}, "humanImage is required"),
    (
        "images/virtual-try-on",
        {"humanImage": IMG},
        "At least one garment (upperInput, lowerInput or dressInput) is required",
    ),
    (
        "images/virtual-try-on",
        {"humanImage": IMG, "dressInput": IMG, "imageCount": 5},
        "imageCount must be an integer from 1 to 4, got 5",
    ),
    ("images/upscale", {"task_id": 1}, "workId is required"),
    (
        "images/omni",
        {"prompt": "x", "omni_version": "o1", "resolution": "4k"},
        "resolution 4k requires omni_version v3",
    ),
    (
        "images/omni",
        {"prompt": "x", "omni_version": "o1", "aspect_ratio": "auto"},
        "aspect_ratio auto requires omni_version v3",
    ),
    ("images/omni", {"prompt": "x", "story_mode": True}, "story_mode needs image_1 or element_1"),
    ("tts/create", {"text": "hi"}, "speakerId is required"),
    (
        "tts/create",
        {"speakerId": "s", "text": "x" * 151},
        "text must be at most 150 characters, got 151",
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "text"), INVALID)
async def test_invalid_body_is_refused(
    sim: KlingSimulator, http: aiohttp.ClientSession, endpoint: str, body: dict[str, Any], text: str
) -> None:
    status, answer = await call(http, sim, "POST", endpoint, json=body)
    assert status == 400, answer
    assert text in answer["error"]
    assert sim.stats["tasks_created"] == 0
