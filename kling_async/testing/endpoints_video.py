"""Wire table of the video generation endpoints (endpoints.md), for the generic validator.

Texts of the cross-field rules are the simulator's own (the pages publish none); each names
the field at fault.
"""

from __future__ import annotations

from typing import Final

from kling_async.testing.table import EXTRAS, Endpoint, F, Rule, Values, shot_fields

__all__ = ["VIDEO_ENDPOINTS"]

V3: Final = "kling-v3-0"
TURBO: Final = "kling-v3-0-turbo"
RATIOS: Final = ("16:9", "9:16", "1:1")
EMOTIONS: Final = ("neutral", "happy", "angry", "sad", "fearful", "disgusted", "surprised")
ELEMENTS: Final = (F("element_1", "id"), F("element_2", "id"), F("element_3", "id"))


def _shots(values: Values) -> list[int]:
    return [
        n for n in range(1, 7) if f"shot_{n}_prompt" in values or f"shot_{n}_duration" in values
    ]


def _multi_shot_rule(model_field: str, v3_value: str, default: str, *, prompt: bool = True) -> Rule:
    def rule(values: Values) -> str | None:
        shots = _shots(values)
        if not shots:
            if prompt and "prompt" not in values:
                return "prompt is required"
            return None
        if values.get(model_field, default) != v3_value:
            return f"shot_{shots[0]}_prompt (multi-shot) requires {model_field} {v3_value}"
        for n in shots:
            for part in ("prompt", "duration"):
                if f"shot_{n}_{part}" not in values:
                    return f"shot_{n}_prompt and shot_{n}_duration go together"
        if len(shots) < 2:
            return "multi-shot needs at least 2 shots (shot_1_prompt and shot_2_prompt)"
        if "duration" in values:
            return "duration is not accepted with multi-shot (give shot_N_duration)"
        total = sum(int(values[f"shot_{n}_duration"]) for n in shots)
        if not 3 <= total <= 15:
            return f"the shot durations must sum to 3-15 seconds, got {total}"
        return None

    return rule


def _duration_rule(values: Values) -> str | None:
    seconds = values.get("duration")
    if seconds is None:
        return None
    if values.get("model_name", "") in (V3, TURBO) or values.get("omni_version") == "v3":
        return None if 3 <= seconds <= 15 else f"duration must be 3 to 15 with v3, got {seconds}"
    return None if seconds in (5, 10) else f"duration must be 5 or 10, got {seconds}"


def _audio_rule(default_model: str) -> Rule:
    def rule(values: Values) -> str | None:
        model = values.get("model_name", default_model)
        if model == TURBO and "enable_audio" in values:
            return "enable_audio must not be sent with kling-v3-0-turbo (audio is always on)"
        if model == "kling-v2-6" and values.get("enable_audio") and values.get("mode") != "pro":
            return "enable_audio true with kling-v2-6 requires mode pro"
        if model in ("kling-v2-1-master", "kling-v2-5") and values.get("mode", "std") != "pro":
            return f"model_name {model} takes mode pro only"
        return None

    return rule


def _v3_elements(values: Values) -> str | None:
    for name in ("element_1", "element_2", "element_3"):
        if name in values and values.get("model_name") != V3:
            return f"{name} requires model_name kling-v3-0"
    return None


def _frames_rules(values: Values) -> str | None:
    model = values.get("model_name", "kling-v2-1")
    if values.get("mode") == "4k" and model != V3:
        return "mode 4k requires model_name kling-v3-0"
    if model == TURBO and "image_tail" in values:
        return "image_tail is not accepted with kling-v3-0-turbo (start frame only)"
    return None


def _one_of(first: str, second: str, *, needed: bool = True) -> Rule:
    def rule(values: Values) -> str | None:
        if first in values and second in values:
            return f"Use either {first} or {second}, not both"
        if needed and first not in values and second not in values:
            return f"Either {first} or {second} is required"
        return None

    return rule


def _avatar_rules(values: Values) -> str | None:
    if "text" in values and "speakerId" not in values:
        return "speakerId is required with text"
    return None


def _omni_rules(values: Values) -> str | None:
    version = values.get("omni_version", "v3")
    seconds = values.get("duration")
    if seconds is not None:
        high = 15 if version == "v3" else 10
        if not 3 <= seconds <= high:
            return f"duration must be 3 to {high} with omni_version {version}, got {seconds}"
    if ("video_1" in values or version == "o1") and "enable_audio" in values:
        return "enable_audio is not accepted with video_1 or omni_version o1"
    if "keep_audio" in values and "video_1" not in values:
        return "keep_audio requires video_1"
    if "frame_start" in values and values.get("aspect_ratio", "auto") != "auto":
        return "aspect_ratio must be auto with frame_start (frames workflow)"
    if "frame_start" not in values and values.get("aspect_ratio") == "auto":
        return "aspect_ratio auto is accepted only with frame_start (frames workflow)"
    return None


TEXT = (F("prompt", "text"), F("negative_prompt", "text"))
CFG = F("cfg_scale", "number", low=0, high=1)
DURATION = F("duration", "int", low=3, high=15)
AUDIO = F("enable_audio", "bool")
STD_PRO = F("mode", "choice", choices=("std", "pro"))

VIDEO_ENDPOINTS: Final = (
    Endpoint(
        "videos/text2video",
        "video",
        "m2v_txt2video_hq",
        (
            *TEXT,
            F("aspect_ratio", "choice", choices=RATIOS),
            CFG,
            DURATION,
            STD_PRO,
            F(
                "model_name",
                "choice",
                choices=(
                    V3,
                    TURBO,
                    "kling-v2-6",
                    "kling-v2-5",
                    "kling-v2-1-master",
                    "kling-v1-6",
                    "kling-v1-5",
                ),
            ),
            AUDIO,
            *shot_fields(),
            *EXTRAS,
        ),
        (
            _multi_shot_rule("model_name", V3, "kling-v1-6"),
            _duration_rule,
            _audio_rule("kling-v1-6"),
        ),
    ),
    Endpoint(
        "videos/image2video-frames",
        "video",
        "m2v_img2video_se_hq",
        (
            F("image", "url"),
            F("image_tail", "url"),
            *ELEMENTS,
            *TEXT,
            CFG,
            DURATION,
            F("mode", "choice", choices=("std", "pro", "4k")),
            F(
                "model_name",
                "choice",
                choices=(
                    V3,
                    TURBO,
                    "kling-v2-6",
                    "kling-v2-5",
                    "kling-v2-1",
                    "kling-v2-1-master",
                    "kling-v1-6",
                    "kling-v1-5",
                ),
            ),
            AUDIO,
            *shot_fields(),
            *EXTRAS,
        ),
        (
            _multi_shot_rule("model_name", V3, "kling-v2-1", prompt=False),
            _duration_rule,
            _v3_elements,
            _frames_rules,
            _audio_rule("kling-v2-1"),
        ),
    ),
    Endpoint(
        "videos/image2video-effects",
        "video",
        "m2v_img2video_effects",
        (
            F("effect", "id", required=True),
            F("image", "url", required=True),
            STD_PRO,
            F("prompt", "text"),
            *EXTRAS,
        ),
    ),
    Endpoint(
        "videos/extend",
        "video",
        "m2v_extend_video",
        (F("task_id", "task", required=True), *TEXT, CFG, AUDIO, *EXTRAS),
    ),
    Endpoint(
        "videos/lipsync",
        "video",
        "m2v_video_lip_sync",
        (F("video", "url", required=True), F("audio", "url", required=True), *EXTRAS),
    ),
    Endpoint(
        "videos/motion-create",
        "video",
        "m2v_motion_control",
        (
            F("model_name", "choice", choices=(V3, "kling-v2-6")),
            F("imageUrl", "url", required=True),
            F("motionUrl", "url", required=True),
            F("prompt", "text", max_len=None),
            F("keepAudio", "bool"),
            F("motionDirection", "choice", choices=("motion_direction", "image_direction")),
            STD_PRO,
            F("element_1", "id"),
        ),
        (
            lambda v: (
                "element_1 requires model_name kling-v3-0"
                if "element_1" in v and v.get("model_name", V3) != V3
                else None
            ),
        ),
    ),
    Endpoint(
        "videos/motion-upload",
        "video",
        "m2v_motion_upload",
        (F("resourceUrl", "url", required=True), F("coverUrl", "url", required=True)),
    ),
    Endpoint(
        "videos/add-sound",
        "video",
        "m2v_add_sound",
        (F("video", "url", required=True), F("cropVideoOriginalSound", "bool")),
    ),
    Endpoint(
        "videos/omni",
        "video",
        "m2v_omni_video",
        (
            F("prompt", "text", max_len=None),
            F("omni_version", "choice", choices=("v3", "o1")),
            F("duration", "int", low=1, high=60),
            F("aspect_ratio", "choice", choices=(*RATIOS, "auto")),
            STD_PRO,
            AUDIO,
            F("image_1", "url"),
            F("element_1", "id"),
            F("frame_start", "url"),
            F("frame_end", "url"),
            F("video_1", "url"),
            F("video_mode", "choice", choices=("reference", "transform")),
            F("keep_audio", "bool"),
            *shot_fields(),
        ),
        (_multi_shot_rule("omni_version", "v3", "v3"), _omni_rules),
    ),
    Endpoint(
        "avatars/video",
        "video",
        "m2v_avatar_video",
        (
            F("avatarId", "id"),
            F("imageUrl", "url"),
            F("audioUrl", "url"),
            F("text", "text", max_len=5000),
            F("speakerId", "id"),
            F("speed", "number", low=0.8, high=2.0),
            F("emotion", "choice", choices=EMOTIONS),
            F("prompt", "text", max_len=2000),
            STD_PRO,
            *EXTRAS,
        ),
        (_one_of("avatarId", "imageUrl"), _one_of("audioUrl", "text"), _avatar_rules),
    ),
)
