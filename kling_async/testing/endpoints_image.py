"""Wire table of the image and audio generation endpoints (endpoints.md).

images/recognize-faces is not here: the simulator answers it at once (see server.py).
"""

from __future__ import annotations

from typing import Final

from kling_async.testing.table import EXTRAS, Endpoint, F, Values

__all__ = ["IMAGE_ENDPOINTS"]

RATIOS: Final = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")
EMOTIONS: Final = ("neutral", "happy", "angry", "sad", "fearful", "disgusted", "surprised")


def _kolors_rules(values: Values) -> str | None:
    reference = values.get("reference", "none")
    if reference != "none" and "imageReference" not in values:
        return f"imageReference is required with reference {reference}"
    if reference == "restyle" and "aspect_ratio" in values:
        return "aspect_ratio is not accepted with reference restyle"
    if "faceStrength" in values and reference not in ("face", "subject"):
        return "faceStrength requires reference face or subject"
    if "subjectStrength" in values and reference != "subject":
        return "subjectStrength requires reference subject"
    if "faceNo" in values and reference != "face":
        return "faceNo requires reference face"
    return None


def _omni_rules(values: Values) -> str | None:
    version = values.get("omni_version", "v3")
    if version != "v3":
        if values.get("resolution") == "4k":
            return "resolution 4k requires omni_version v3"
        if values.get("aspect_ratio") == "auto":
            return "aspect_ratio auto requires omni_version v3"
        if "story_mode" in values:
            return "story_mode requires omni_version v3"
    if values.get("story_mode") and "image_1" not in values and "element_1" not in values:
        return "story_mode needs image_1 or element_1"
    return None


def _try_on_rules(values: Values) -> str | None:
    if not any(name in values for name in ("upperInput", "lowerInput", "dressInput")):
        return "At least one garment (upperInput, lowerInput or dressInput) is required"
    return None


IMAGE_ENDPOINTS: Final = (
    Endpoint(
        "images/kolors",
        "image",
        "mmu_txt2img_aiweb",
        (
            F("prompt", "text", required=True),
            F(
                "version",
                "choice",
                choices=("kling-v3-0", "kling-v2-1", "kling-v2-0", "kling-v1-6", "kling-v1-5"),
            ),
            F("reference", "choice", choices=("none", "subject", "face", "restyle")),
            F("imageReference", "url"),
            F("aspect_ratio", "choice", choices=RATIOS),
            F("imageCount", "int", low=1, high=9),
            F("faceStrength", "int", low=1, high=100),
            F("subjectStrength", "int", low=1, high=100),
            F("faceNo", "int", low=0, high=99),
            *EXTRAS,
        ),
        (_kolors_rules,),
    ),
    Endpoint(
        "images/virtual-try-on",
        "image",
        "mmu_img2img_vto",
        (
            F("humanImage", "url", required=True),
            F("upperInput", "url"),
            F("lowerInput", "url"),
            F("dressInput", "url"),
            F("imageCount", "int", low=1, high=4),
            *EXTRAS,
        ),
        (_try_on_rules,),
    ),
    Endpoint(
        "images/upscale",
        "image",
        "mmu_img_upscale",
        (
            F("task_id", "task", required=True),
            F("workId", "task", required=True),
            F("maxJobs", "int", low=1, high=10),
            *EXTRAS[1:],
        ),
    ),
    Endpoint(
        "images/omni",
        "image",
        "mmu_omni_image",
        (
            F("prompt", "text", required=True, max_len=None),
            F("omni_version", "choice", choices=("v3", "o1")),
            F("resolution", "choice", choices=("1k", "2k", "4k")),
            F("aspect_ratio", "choice", choices=("auto", *RATIOS)),
            F("imageCount", "int", low=1, high=9),
            F("story_mode", "bool"),
            F("image_1", "url"),
            F("element_1", "id"),
        ),
        (_omni_rules,),
    ),
    Endpoint(
        "tts/create",
        "audio",
        "tts_create",
        (
            F("speakerId", "id", required=True),
            F("text", "text", required=True, max_len=150),
            F("speed", "number", low=0.8, high=2.0),
            F("emotion", "choice", choices=EMOTIONS),
        ),
        duration=3,
    ),
)
