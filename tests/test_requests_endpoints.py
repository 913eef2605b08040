"""Every generation endpoint: minimal and full requests, their exact wire bodies, round trips."""

from __future__ import annotations

from typing import Any

import pytest

from kling_async.config import default_deadline
from kling_async.errors import RequestValidationError
from kling_async.requests import REQUEST_TYPES, GenerationRequest

I1 = "https://example.com/1.png"
I2 = "https://example.com/2.png"
I3 = "https://example.com/3.png"
V1 = "https://example.com/clip.mp4"
A1 = "https://example.com/voice.mp3"
HOOK = "https://hook.example.com/cb"
SHARED = {"max_jobs": 3, "reply_url": HOOK, "reply_ref": "r-1", "email": "a@b.c"}
SHARED_WIRE = {"maxJobs": 3, "replyUrl": HOOK, "replyRef": "r-1", "email": "a@b.c"}
EMAIL_ONLY = {"email": "a@b.c"}

#: (endpoint, keyword arguments, exact wire body): minimal and full for every endpoint.
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("videos/text2video", {"prompt": "a fox"}, {"prompt": "a fox"}),
    (
        "videos/text2video",
        {
            "prompt": "a fox",
            "negative_prompt": "blur",
            "aspect_ratio": "9:16",
            "cfg_scale": 0.7,
            "duration": 12,
            "mode": "pro",
            "model_name": "kling-v3-0",
            "enable_audio": False,
            **SHARED,
        },
        {
            "prompt": "a fox",
            "negative_prompt": "blur",
            "aspect_ratio": "9:16",
            "cfg_scale": 0.7,
            "duration": "12",
            "mode": "pro",
            "model_name": "kling-v3-0",
            "enable_audio": False,
            **SHARED_WIRE,
        },
    ),
    (
        "videos/text2video",
        {"model_name": "kling-v3-0", "shots": [("a fox runs", 5), ("it sleeps", 4)]},
        {
            "model_name": "kling-v3-0",
            "shot_1_prompt": "a fox runs",
            "shot_1_duration": 5,
            "shot_2_prompt": "it sleeps",
            "shot_2_duration": 4,
        },
    ),
    ("videos/image2video-frames", {"image": I1}, {"image": I1}),
    (
        "videos/image2video-frames",
        {
            "image": I1,
            "image_tail": I2,
            "elements": ["u_1", "u_2", "u_3"],
            "prompt": "p",
            "negative_prompt": "n",
            "cfg_scale": 0,
            "duration": 3,
            "mode": "4k",
            "model_name": "kling-v3-0",
            "enable_audio": True,
            **SHARED,
        },
        {
            "image": I1,
            "image_tail": I2,
            "element_1": "u_1",
            "element_2": "u_2",
            "element_3": "u_3",
            "prompt": "p",
            "negative_prompt": "n",
            "cfg_scale": 0,
            "duration": "3",
            "mode": "4k",
            "model_name": "kling-v3-0",
            "enable_audio": True,
            **SHARED_WIRE,
        },
    ),
    (
        "videos/image2video-elements",
        {"prompt": "p", "images": [I1]},
        {"prompt": "p", "image_0": I1},
    ),
    (
        "videos/image2video-elements",
        {
            "prompt": "p",
            "images": [I1, I2],
            "elements": ["u_9"],
            "negative_prompt": "n",
            "duration": 15,
            "model_name": "kling-v3-0",
            "mode": "pro",
            "enable_audio": True,
            **SHARED,
        },
        {
            "prompt": "p",
            "image_0": I1,
            "image_1": I2,
            "element_1": "u_9",
            "negative_prompt": "n",
            "duration": "15",
            "model_name": "kling-v3-0",
            "mode": "pro",
            "enable_audio": True,
            **SHARED_WIRE,
        },
    ),
    (
        "videos/image2video-effects",
        {"effect": "hug", "image": I1},
        {"effect": "hug", "image": I1},
    ),
    (
        "videos/image2video-effects",
        {"effect": "hug", "image": I1, "mode": "pro", "prompt": "p", **SHARED},
        {"effect": "hug", "image": I1, "mode": "pro", "prompt": "p", **SHARED_WIRE},
    ),
    ("videos/extend", {"task_id": 123}, {"task_id": 123}),
    (
        "videos/extend",
        {
            "task_id": "123",
            "prompt": "p",
            "negative_prompt": "n",
            "cfg_scale": 1,
            "enable_audio": True,
            **SHARED,
        },
        {
            "task_id": "123",
            "prompt": "p",
            "negative_prompt": "n",
            "cfg_scale": 1,
            "enable_audio": True,
            **SHARED_WIRE,
        },
    ),
    ("videos/lipsync", {"video": V1, "audio": A1}, {"video": V1, "audio": A1}),
    (
        "videos/lipsync",
        {"video": V1, "audio": A1, **SHARED},
        {"video": V1, "audio": A1, **SHARED_WIRE},
    ),
    (
        "videos/motion-create",
        {"image_url": I1, "motion_url": V1},
        {"imageUrl": I1, "motionUrl": V1},
    ),
    (
        "videos/motion-create",
        {
            "image_url": I1,
            "motion_url": V1,
            "model_name": "kling-v3-0",
            "prompt": "p" * 3000,
            "keep_audio": True,
            "motion_direction": "image_direction",
            "mode": "std",
            "element": "u_1",
            **SHARED,
        },
        {
            "imageUrl": I1,
            "motionUrl": V1,
            "model_name": "kling-v3-0",
            "prompt": "p" * 3000,
            "keepAudio": True,
            "motionDirection": "image_direction",
            "mode": "std",
            "element_1": "u_1",
            **EMAIL_ONLY,
        },
    ),
    ("videos/add-sound", {"video": V1}, {"video": V1}),
    (
        "videos/add-sound",
        {"video": V1, "crop_video_original_sound": False, **SHARED},
        {"video": V1, "cropVideoOriginalSound": False, **EMAIL_ONLY},
    ),
    ("videos/omni", {"prompt": "p"}, {"prompt": "p"}),
    (
        "videos/omni",
        {
            "prompt": "@image_1 and @element_1",
            "omni_version": "v3",
            "duration": 15,
            "aspect_ratio": "1:1",
            "mode": "pro",
            "enable_audio": False,
            "image": I1,
            "element": "u_1",
            **SHARED,
        },
        {
            "prompt": "@image_1 and @element_1",
            "omni_version": "v3",
            "duration": "15",
            "aspect_ratio": "1:1",
            "mode": "pro",
            "enable_audio": False,
            "image_1": I1,
            "element_1": "u_1",
            **EMAIL_ONLY,
        },
    ),
    (
        "videos/omni",
        {"prompt": "p", "frame_start": I1, "frame_end": I2, "aspect_ratio": "auto"},
        {"prompt": "p", "frame_start": I1, "frame_end": I2, "aspect_ratio": "auto"},
    ),
    (
        "videos/omni",
        {"prompt": "@video_1", "video": V1, "video_mode": "transform", "keep_audio": True},
        {"prompt": "@video_1", "video_1": V1, "video_mode": "transform", "keep_audio": True},
    ),
    (
        "videos/omni",
        {"shots": [("a", 3), ("b", 3), ("c", 3)]},
        {
            "shot_1_prompt": "a",
            "shot_1_duration": 3,
            "shot_2_prompt": "b",
            "shot_2_duration": 3,
            "shot_3_prompt": "c",
            "shot_3_duration": 3,
        },
    ),
    (
        "avatars/video",
        {"avatar_id": "av1", "audio_url": A1},
        {"avatarId": "av1", "audioUrl": A1},
    ),
    (
        "avatars/video",
        {
            "image_url": I1,
            "text": "hello",
            "speaker_id": "sp1",
            "speed": 1.5,
            "emotion": "happy",
            "prompt": "smiles",
            "mode": "pro",
            **SHARED,
        },
        {
            "imageUrl": I1,
            "text": "hello",
            "speakerId": "sp1",
            "speed": 1.5,
            "emotion": "happy",
            "prompt": "smiles",
            "mode": "pro",
            **SHARED_WIRE,
        },
    ),
    ("images/kolors", {"prompt": "a cat"}, {"prompt": "a cat"}),
    (
        "images/kolors",
        {
            "prompt": "a cat",
            "version": "kling-v2-1",
            "reference": "subject",
            "image_reference": I1,
            "aspect_ratio": "21:9",
            "image_count": 9,
            "face_strength": 1,
            "subject_strength": 100,
            **SHARED,
        },
        {
            "prompt": "a cat",
            "version": "kling-v2-1",
            "reference": "subject",
            "imageReference": I1,
            "aspect_ratio": "21:9",
            "imageCount": 9,
            "faceStrength": 1,
            "subjectStrength": 100,
            **SHARED_WIRE,
        },
    ),
    (
        "images/kolors",
        {"prompt": "a cat", "reference": "face", "image_reference": I1, "face_no": 2},
        {"prompt": "a cat", "reference": "face", "imageReference": I1, "faceNo": 2},
    ),
    (
        "images/kolors-elements",
        {"subject_images": [I1, I2]},
        {"subjectImage1": I1, "subjectImage2": I2},
    ),
    (
        "images/kolors-elements",
        {
            "prompt": "p",
            "subject_images": [I1],
            "scene_image": I2,
            "style_image": I3,
            "aspect_ratio": "3:2",
            "image_count": 2,
            **SHARED,
        },
        {
            "prompt": "p",
            "subjectImage1": I1,
            "sceneImage": I2,
            "styleImage": I3,
            "aspect_ratio": "3:2",
            "imageCount": 2,
            **SHARED_WIRE,
        },
    ),
    ("images/virtual-try-on", {"human_image": I1}, {"humanImage": I1}),
    (
        "images/virtual-try-on",
        {
            "human_image": I1,
            "upper_input": I2,
            "lower_input": I3,
            "dress_input": I2,
            "image_count": 4,
            **SHARED,
        },
        {
            "humanImage": I1,
            "upperInput": I2,
            "lowerInput": I3,
            "dressInput": I2,
            "imageCount": 4,
            **SHARED_WIRE,
        },
    ),
    (
        "images/upscale",
        {"task_id": 77, "work_id": 88},
        {"task_id": 77, "workId": 88},
    ),
    (
        "images/upscale",
        {"task_id": "77", "work_id": "88", **SHARED, "max_jobs": 10},
        {"task_id": "77", "workId": "88", **SHARED_WIRE, "maxJobs": 10},
    ),
    ("images/omni", {"prompt": "p"}, {"prompt": "p"}),
    (
        "images/omni",
        {
            "prompt": "@image_1",
            "omni_version": "v3",
            "resolution": "4k",
            "aspect_ratio": "auto",
            "image_count": 3,
            "story_mode": True,
            "image": I1,
            "element": "u_1",
            **SHARED,
        },
        {
            "prompt": "@image_1",
            "omni_version": "v3",
            "resolution": "4k",
            "aspect_ratio": "auto",
            "imageCount": 3,
            "story_mode": True,
            "image_1": I1,
            "element_1": "u_1",
            **EMAIL_ONLY,
        },
    ),
    (
        "images/omni",
        {"prompt": "p", "omni_version": "o1", "resolution": "2k", "aspect_ratio": "4:3"},
        {"prompt": "p", "omni_version": "o1", "resolution": "2k", "aspect_ratio": "4:3"},
    ),
    ("tts/create", {"speaker_id": "sp1", "text": "hi"}, {"speakerId": "sp1", "text": "hi"}),
    (
        "tts/create",
        {"speaker_id": "sp1", "text": "x" * 150, "speed": 0.8, "emotion": "calm", **SHARED},
        {"speakerId": "sp1", "text": "x" * 150, "speed": 0.8, "emotion": "calm", **EMAIL_ONLY},
    ),
]


def _id(case: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    return f"{case[0]}-{len(case[1])}"


@pytest.mark.parametrize(("endpoint", "kwargs", "wire"), CASES, ids=[_id(c) for c in CASES])
def test_exact_wire_body_and_round_trip(
    endpoint: str, kwargs: dict[str, Any], wire: dict[str, Any]
) -> None:
    cls = REQUEST_TYPES[endpoint]
    req = cls(**kwargs)
    assert req.to_wire() == wire
    assert cls.endpoint == endpoint
    again = cls.from_wire(wire)
    assert again.to_wire() == wire
    if cls.callbacks or not set(SHARED) & set(kwargs):
        assert again == req


def test_every_documented_generation_endpoint_has_a_type() -> None:
    assert set(REQUEST_TYPES) == {
        "videos/text2video",
        "videos/image2video-frames",
        "videos/image2video-elements",
        "videos/image2video-effects",
        "videos/extend",
        "videos/lipsync",
        "videos/motion-create",
        "videos/add-sound",
        "videos/omni",
        "avatars/video",
        "images/kolors",
        "images/kolors-elements",
        "images/virtual-try-on",
        "images/upscale",
        "images/omni",
        "tts/create",
    }
    assert {c[0] for c in CASES} == set(REQUEST_TYPES)
    with pytest.raises(TypeError):
        REQUEST_TYPES["x"] = GenerationRequest  # type: ignore[index]


@pytest.mark.parametrize("cls", list(REQUEST_TYPES.values()), ids=list(REQUEST_TYPES))
def test_class_contract(cls: type[GenerationRequest]) -> None:
    assert issubclass(cls, GenerationRequest)
    assert cls.kind in ("image", "video", "audio")
    assert cls.__doc__
    assert cls.endpoint in cls.__doc__
    minimal = next(kw for ep, kw, _ in CASES if ep == cls.endpoint)
    req = cls(**minimal)
    assert req.default_timeout == default_deadline(cls.kind, req.expected_seconds)
    assert req.expected_seconds > 0
    with pytest.raises(TypeError):
        cls("positional")  # type: ignore[misc]


def test_kinds() -> None:
    kinds = {ep: cls.kind for ep, cls in REQUEST_TYPES.items()}
    assert kinds["tts/create"] == "audio"
    assert kinds["images/upscale"] == "image"
    assert kinds["videos/lipsync"] == "video"
    assert kinds["avatars/video"] == "video"


def test_from_wire_unknown_name_is_an_error_unless_in_extra() -> None:
    cls = REQUEST_TYPES["videos/text2video"]
    with pytest.raises(RequestValidationError) as info:
        cls.from_wire({"prompt": "p", "colour": "red"})
    assert info.value.field == "colour"
    assert "unknown field for videos/text2video" in str(info.value)
    req = cls.from_wire({"prompt": "p", "extra": {"colour": "red"}})
    assert req.extra == {"colour": "red"}
    assert req.to_wire() == {"prompt": "p", "colour": "red"}
    with pytest.raises(RequestValidationError) as info:
        cls.from_wire(["prompt"])  # type: ignore[arg-type]
    assert info.value.field == "body"


def test_from_wire_validates() -> None:
    cls = REQUEST_TYPES["images/kolors-elements"]
    with pytest.raises(RequestValidationError) as info:
        cls.from_wire({"subjectImage1": I1, "imageCount": 10, "sceneImage": I2})
    assert info.value.field == "image_count"


def test_callbacks_are_not_sent_where_the_endpoint_does_not_list_them() -> None:
    unlisted = {ep for ep, cls in REQUEST_TYPES.items() if not cls.callbacks}
    assert unlisted == {
        "videos/omni",
        "images/omni",
        "videos/motion-create",
        "videos/add-sound",
        "tts/create",
    }
    req = REQUEST_TYPES["videos/omni"](prompt="p", max_jobs=2, reply_url=HOOK)
    assert req.max_jobs == 2  # kept for the client's own limits
    assert req.to_wire() == {"prompt": "p"}


def test_from_wire_half_a_shot_is_named() -> None:
    cls = REQUEST_TYPES["videos/text2video"]
    body = {"model_name": "kling-v3-0", "shot_1_prompt": "a", "shot_1_duration": 5}
    with pytest.raises(RequestValidationError) as info:
        cls.from_wire({**body, "shot_2_duration": 5})
    assert info.value.field == "shots[1]"
    assert "must be a string, got NoneType" in str(info.value)
    with pytest.raises(RequestValidationError) as info:
        cls.from_wire({**body, "shot_2_prompt": "b"})
    assert info.value.field == "shots[1]"
    assert "seconds must be an integer" in str(info.value)
