"""Every documented invalid value or combination: a RequestValidationError naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from kling_async.errors import RequestValidationError
from kling_async.requests import REQUEST_TYPES

I1 = "https://example.com/1.png"
I2 = "https://example.com/2.png"
V1 = "https://example.com/clip.mp4"
A1 = "https://example.com/voice.mp3"
V3 = "kling-v3-0"
TURBO = "kling-v3-0-turbo"
SHOTS = [("a", 5), ("b", 5)]

#: The smallest valid request of each endpoint; a row's keywords are laid over it.
MINIMAL: dict[str, dict[str, Any]] = {
    "videos/text2video": {"prompt": "a fox"},
    "videos/image2video-frames": {"image": I1},
    "videos/image2video-elements": {"prompt": "p", "images": [I1]},
    "videos/image2video-effects": {"effect": "hug", "image": I1},
    "videos/extend": {"task_id": 1},
    "videos/lipsync": {"video": V1, "audio": A1},
    "videos/motion-create": {"image_url": I1, "motion_url": V1},
    "videos/add-sound": {"video": V1},
    "videos/omni": {"prompt": "p"},
    "avatars/video": {"avatar_id": "a", "audio_url": A1},
    "images/kolors": {"prompt": "p"},
    "images/kolors-elements": {"subject_images": [I1, I2]},
    "images/virtual-try-on": {"human_image": I1},
    "images/upscale": {"task_id": 1, "work_id": 2},
    "images/omni": {"prompt": "p"},
    "tts/create": {"speaker_id": "s", "text": "hi"},
}

T2V, FRAMES, ELEMENTS = (
    "videos/text2video",
    "videos/image2video-frames",
    ("videos/image2video-elements"),
)
OMNI, AVATAR, KOLORS, IOMNI = "videos/omni", "avatars/video", "images/kolors", "images/omni"

#: (endpoint, keywords over MINIMAL (None: remove), field named, message fragment).
ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    # text2video
    (T2V, {"prompt": None}, "prompt", "is required"),
    (T2V, {"prompt": "x" * 2501}, "prompt", "at most 2500 characters"),
    (T2V, {"negative_prompt": "x" * 2501}, "negative_prompt", "at most 2500"),
    (T2V, {"aspect_ratio": "4:3"}, "aspect_ratio", "is not allowed"),
    (T2V, {"cfg_scale": 1.5}, "cfg_scale", "from 0 to 1"),
    (T2V, {"cfg_scale": float("nan")}, "cfg_scale", "must be a number"),
    (T2V, {"cfg_scale": "0.5"}, "cfg_scale", "must be a number"),
    (T2V, {"duration": 7}, "duration", "must be 5 or 10"),
    (T2V, {"duration": 16, "model_name": V3}, "duration", "with model_name 'kling-v3-0'"),
    (T2V, {"duration": 2, "model_name": V3}, "duration", "from 3 to 15"),
    (T2V, {"mode": "4k"}, "mode", "is not allowed"),
    (T2V, {"mode": "std", "model_name": "kling-v2-5"}, "mode", "'pro'"),
    (T2V, {"mode": "std", "model_name": "kling-v2-1-master"}, "mode", "'pro'"),
    (T2V, {"model_name": "kling-v2-1"}, "model_name", "is not allowed"),
    (T2V, {"enable_audio": "yes"}, "enable_audio", "True or False"),
    (T2V, {"enable_audio": True, "model_name": TURBO}, "enable_audio", "not allowed with"),
    (T2V, {"enable_audio": True, "model_name": "kling-v2-6"}, "enable_audio", "mode"),
    (T2V, {"shots": SHOTS}, "shots", "only with model_name 'kling-v3-0'"),
    (T2V, {"shots": SHOTS, "model_name": TURBO}, "shots", "only with"),
    (T2V, {"shots": SHOTS, "model_name": V3, "duration": 10}, "duration", "not allowed"),
    (T2V, {"shots": [("a", 5)], "model_name": V3}, "shots", "2 to 6 shots"),
    (T2V, {"shots": [("a", 2)] * 7, "model_name": V3}, "shots", "2 to 6 shots"),
    (T2V, {"shots": [("a", 9), ("b", 9)], "model_name": V3}, "shots", "sum to 3-15"),
    (T2V, {"shots": [("a", 1), ("b", 1)], "model_name": V3}, "shots", "sum to 3-15"),
    (T2V, {"shots": [("", 5), ("b", 5)], "model_name": V3}, "shots[0]", "must not be empty"),
    (T2V, {"shots": [("a", "5"), ("b", 5)], "model_name": V3}, "shots[0]", "integer"),
    (T2V, {"shots": [("a",), ("b", 5)], "model_name": V3}, "shots[0]", "pair"),
    (T2V, {"shots": "a fox", "model_name": V3}, "shots", "(prompt, seconds) pairs"),
    # image2video-frames
    (FRAMES, {"image_tail": I2, "model_name": TURBO}, "image_tail", "not allowed with"),
    (FRAMES, {"elements": ["u_1"]}, "elements", "only with model_name 'kling-v3-0'"),
    (FRAMES, {"elements": ["a", "b", "c", "d"], "model_name": V3}, "elements", "at most 3"),
    (FRAMES, {"elements": [""], "model_name": V3}, "elements[0]", "must not be empty"),
    (FRAMES, {"elements": [1.5], "model_name": V3}, "elements[0]", "must be an id"),
    (FRAMES, {"mode": "4k"}, "mode", "is not allowed"),
    (FRAMES, {"mode": "std", "model_name": "kling-v2-1-master"}, "mode", "'pro'"),
    (FRAMES, {"duration": 12}, "duration", "5 or 10"),
    (FRAMES, {"model_name": "kling-v9"}, "model_name", "is not allowed"),
    (FRAMES, {"image": "https://"}, "image", "not a complete URL"),
    # image2video-elements (v3 rules; the v1-6 ones are in test_requests.py)
    (ELEMENTS, {"aspect_ratio": "16:9", "model_name": V3}, "aspect_ratio", "not allowed with"),
    (ELEMENTS, {"elements": ["u_1"]}, "elements", "only with model_name 'kling-v3-0'"),
    (ELEMENTS, {"duration": 16, "model_name": V3}, "duration", "from 3 to 15"),
    (ELEMENTS, {"duration": 12}, "duration", "5 or 10"),
    (ELEMENTS, {"enable_audio": False, "model_name": V3}, "enable_audio", "must be True"),
    (ELEMENTS, {"max_jobs": 51}, "max_jobs", "from 1 to 50"),
    (ELEMENTS, {"max_jobs": 2.5}, "max_jobs", "integer"),
    # image2video-effects, extend, lipsync, motion, add-sound
    ("videos/image2video-effects", {"effect": None}, "effect", "is required"),
    ("videos/image2video-effects", {"image": None}, "image", "is required"),
    ("videos/image2video-effects", {"mode": "4k"}, "mode", "is not allowed"),
    ("videos/extend", {"task_id": None}, "task_id", "is required"),
    ("videos/extend", {"task_id": True}, "task_id", "must be an id"),
    ("videos/extend", {"cfg_scale": -0.1}, "cfg_scale", "from 0 to 1"),
    ("videos/lipsync", {"audio": None}, "audio", "is required"),
    ("videos/lipsync", {"video": None}, "video", "is required"),
    ("videos/motion-create", {"motion_url": None}, "motion_url", "is required"),
    ("videos/motion-create", {"model_name": "kling-v1-6"}, "model_name", "is not allowed"),
    ("videos/motion-create", {"motion_direction": "up"}, "motion_direction", "not allowed"),
    (
        "videos/motion-create",
        {"element": "u_1", "model_name": "kling-v2-6"},
        "element",
        "only with model_name 'kling-v3-0'",
    ),
    ("videos/add-sound", {"video": None}, "video", "is required"),
    ("videos/add-sound", {"crop_video_original_sound": 1}, "crop_video_original_sound", "True"),
    # omni video
    (OMNI, {"prompt": None}, "prompt", "is required"),
    (OMNI, {"omni_version": "v2"}, "omni_version", "is not allowed"),
    (OMNI, {"duration": 16}, "duration", "from 3 to 15"),
    (OMNI, {"duration": 11, "omni_version": "o1"}, "duration", "from 3 to 10"),
    (OMNI, {"aspect_ratio": "auto"}, "aspect_ratio", "is not allowed"),
    (OMNI, {"aspect_ratio": "16:9", "frame_start": I1}, "aspect_ratio", "'auto'"),
    (OMNI, {"enable_audio": True, "video": V1}, "enable_audio", "not allowed with video"),
    (OMNI, {"enable_audio": True, "omni_version": "o1"}, "enable_audio", "omni_version"),
    (OMNI, {"video_mode": "reference"}, "video_mode", "only with video"),
    (OMNI, {"keep_audio": True}, "keep_audio", "only with video"),
    (OMNI, {"shots": SHOTS, "omni_version": "o1"}, "shots", "only with omni_version 'v3'"),
    (OMNI, {"shots": SHOTS, "duration": 5}, "duration", "not allowed with shots"),
    # avatars/video
    (AVATAR, {"avatar_id": None}, "avatar_id", "exactly one of avatar_id or image_url"),
    (AVATAR, {"image_url": I1}, "avatar_id", "got avatar_id, image_url"),
    (AVATAR, {"audio_url": None}, "audio_url", "exactly one of audio_url or text"),
    (AVATAR, {"text": "hi", "speaker_id": "s"}, "audio_url", "exactly one"),
    (AVATAR, {"audio_url": None, "text": "hi"}, "speaker_id", "is required"),
    (AVATAR, {"audio_url": None, "text": "x" * 5001, "speaker_id": "s"}, "text", "5000"),
    (AVATAR, {"speed": 2.5}, "speed", "from 0.8 to 2.0"),
    (AVATAR, {"emotion": "bored"}, "emotion", "is not allowed"),
    (AVATAR, {"prompt": "x" * 2001}, "prompt", "at most 2000"),
    # images/kolors
    (KOLORS, {"prompt": None}, "prompt", "is required"),
    (KOLORS, {"version": "kling-v9"}, "version", "is not allowed"),
    (KOLORS, {"reference": "face"}, "image_reference", "is required"),
    (KOLORS, {"reference": "pose", "image_reference": I1}, "reference", "is not allowed"),
    (
        KOLORS,
        {"reference": "restyle", "image_reference": I1, "aspect_ratio": "1:1"},
        "aspect_ratio",
        "not allowed with reference 'restyle'",
    ),
    (KOLORS, {"image_count": 10}, "image_count", "from 1 to 9"),
    (KOLORS, {"face_strength": 50}, "face_strength", "only with reference"),
    (
        KOLORS,
        {"reference": "subject", "image_reference": I1, "face_strength": 101},
        "face_strength",
        "from 1 to 100",
    ),
    (
        KOLORS,
        {"reference": "face", "image_reference": I1, "subject_strength": 5},
        "subject_strength",
        "only with reference 'subject'",
    ),
    (KOLORS, {"face_no": 1}, "face_no", "only with reference 'face'"),
    (
        KOLORS,
        {"reference": "face", "image_reference": I1, "face_no": -1},
        "face_no",
        "at least 0",
    ),
    # virtual try-on, upscale
    ("images/virtual-try-on", {"human_image": None}, "human_image", "is required"),
    ("images/virtual-try-on", {"image_count": 5}, "image_count", "from 1 to 4"),
    ("images/upscale", {"work_id": None}, "work_id", "is required"),
    ("images/upscale", {"max_jobs": 11}, "max_jobs", "from 1 to 10"),
    # images/omni
    (IOMNI, {"prompt": None}, "prompt", "is required"),
    (IOMNI, {"resolution": "8k"}, "resolution", "is not allowed"),
    (IOMNI, {"resolution": "4k", "omni_version": "o1"}, "resolution", "omni_version 'o1'"),
    (IOMNI, {"aspect_ratio": "auto", "omni_version": "o1"}, "aspect_ratio", "not allowed"),
    (IOMNI, {"image_count": 0}, "image_count", "from 1 to 9"),
    (IOMNI, {"story_mode": True}, "story_mode", "needs image or element"),
    (
        IOMNI,
        {"story_mode": True, "image": I1, "omni_version": "o1"},
        "story_mode",
        "only with omni_version 'v3'",
    ),
    # tts
    ("tts/create", {"text": "x" * 151}, "text", "at most 150"),
    ("tts/create", {"text": None}, "text", "is required"),
    ("tts/create", {"speaker_id": None}, "speaker_id", "is required"),
    ("tts/create", {"speed": 0.5}, "speed", "from 0.8 to 2"),
    # shared
    ("tts/create", {"reply_url": "ftp://x"}, "reply_url", "http(s) URL"),
    ("images/omni", {"max_jobs": 0}, "max_jobs", "from 1 to 50"),
    ("videos/omni", {"email": "nobody"}, "email", "e-mail"),
    ("videos/omni", {"reply_ref": "r\ud800"}, "reply_ref", "lone surrogate"),
    ("images/kolors", {"reply_ref": 5}, "reply_ref", "must be a string, got int"),
]


def _id(row: tuple[str, dict[str, Any], str, str]) -> str:
    return f"{row[0]}:{row[2]}:{'+'.join(sorted(row[1]))}"


@pytest.mark.parametrize(("endpoint", "changes", "field", "fragment"), ROWS, ids=map(_id, ROWS))
def test_invalid_value_or_combination(
    endpoint: str, changes: dict[str, Any], field: str, fragment: str
) -> None:
    kwargs = {**MINIMAL[endpoint], **changes}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    with pytest.raises(RequestValidationError) as info:
        REQUEST_TYPES[endpoint](**kwargs)
    err = info.value
    assert err.field == field, str(err)
    assert str(err).startswith(f"{field}: "), str(err)
    assert fragment in str(err), str(err)


@pytest.mark.parametrize("endpoint", sorted(MINIMAL))
def test_the_minimal_requests_are_valid(endpoint: str) -> None:
    assert REQUEST_TYPES[endpoint](**MINIMAL[endpoint]).to_wire()


def test_a_lone_surrogate_in_a_prompt_names_the_field() -> None:
    for endpoint in (T2V, KOLORS, OMNI):
        with pytest.raises(RequestValidationError) as info:
            REQUEST_TYPES[endpoint](prompt="a \ud800 fox")
        assert info.value.field == "prompt"
        assert "lone surrogate" in str(info.value)
