"""Local files checked at construction, `extra` checked at construction, the FIELD=VALUE parser."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from kling_async.errors import RequestValidationError
from kling_async.requests import (
    REQUEST_TYPES,
    AvatarVideo,
    Image2VideoElements,
    KolorsElements,
    LipSync,
    Text2Video,
    TextToSpeech,
    VideoOmni,
    describe_fields,
    parse_fields,
    request_from_fields,
    request_from_mapping,
)
from kling_async.testing.media import mp4, png

A = "https://example.com/a.png"
B = "https://example.com/b.png"
PNG = png(320, 320, (1, 2, 3))
MP4 = mp4(320, 320, 5000, b"x" * 16)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)
MP3 = b"ID3\x03\x00" + bytes(32)


def jpeg(width: int, height: int) -> bytes:
    """A minimal JPEG header: SOI, an APP0 segment, then SOF0 with the size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + bytes(3)
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def raises(field: str, *fragments: str) -> Any:
    return _Raises(field, fragments)


class _Raises:
    def __init__(self, field: str, fragments: tuple[str, ...]) -> None:
        self.field, self.fragments = field, fragments

    def __enter__(self) -> None:
        self._ctx = pytest.raises(RequestValidationError)
        self._info = self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        handled = bool(self._ctx.__exit__(*exc))
        if handled:
            err = self._info.value
            assert err.field == self.field, str(err)
            for fragment in self.fragments:
                assert fragment in str(err), (fragment, str(err))
        return handled


# --- local files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ("is empty",)),
        (b"just some text, not an image at all", ("not an image (PNG or JPEG)",)),
        (png(299, 400, (0, 0, 0)), ("299x400 px", "at least 300 px")),
        (png(400, 100, (0, 0, 0)), ("400x100 px",)),
        (jpeg(200, 500), ("200x500 px",)),
        (MP4, ("video/mp4, expected an image",)),
        (b"\x89PNG\r\n\x1a\n" + bytes(4), ("cannot read the image size",)),
    ],
)
def test_bad_local_image_files(tmp_path: Path, content: bytes, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with raises("subject_images[1]", "x.png", *fragments):
        KolorsElements(subject_images=[A, path])
    if content:
        with raises("images[0]", *fragments):
            Image2VideoElements(prompt="p", images=[content])


def test_oversized_files(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.write(PNG)
        f.seek(10 * 1024 * 1024)
        f.write(b"\x00")
    with raises("scene_image", "big.png", "10.0 MB", "at most 10 MB for image"):
        KolorsElements(subject_images=[A], scene_image=big)
    with raises("images[0]", "at most 10 MB"):
        Image2VideoElements(prompt="p", images=[PNG + bytes(10 * 1024 * 1024)])


def test_good_local_files_of_every_kind(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(300, 300))
    (tmp_path / "c.mp4").write_bytes(MP4)
    (tmp_path / "v.wav").write_bytes(WAV)
    assert KolorsElements(subject_images=[tmp_path / "a.jpg", PNG]).has_local_files()
    sync = LipSync(video=tmp_path / "c.mp4", audio=str(tmp_path / "v.wav"))
    assert sync.file_inputs() == {"video": tmp_path / "c.mp4", "audio": str(tmp_path / "v.wav")}
    assert LipSync(video=MP4, audio=MP3).has_local_images()


def test_media_kind_is_checked_per_field() -> None:
    with raises("audio", "video/mp4, expected audio"):
        LipSync(video=MP4, audio=MP4)
    with raises("video", "image/png, expected a video"):
        LipSync(video=PNG, audio=MP3)
    with raises("audio_url", "not audio"):
        AvatarVideo(avatar_id="a", audio_url=b"plain text")


def test_uploads_replace_local_files_of_every_kind() -> None:
    req = VideoOmni(prompt="p", image=PNG, video=MP4)
    assert req.file_inputs() == {"image": PNG, "video": MP4}
    with raises("image", "must be uploaded first"):
        req.to_wire()
    done = req.with_uploaded({"image": A, "video": "https://x/v.mp4"})
    assert not done.has_local_files()
    assert done.to_wire() == {"prompt": "p", "image_1": A, "video_1": "https://x/v.mp4"}
    assert req.with_image_urls({"image": A}).image_inputs() == {"image": A, "video": MP4}


# --- extra ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"x": float("nan")}, "x: nan is not a JSON number"),
        ({"x": float("inf")}, "not a JSON number"),
        ({"x": {"y": [1, float("-inf")]}}, "x.y[1]"),
        ({"x": {1, 2}}, "a set is not a JSON value"),
        ({"x": b"bytes"}, "a bytes is not a JSON value"),
        ({"x": object()}, "not a JSON value"),
        ({"x": {1: "a"}}, "key 1 is not a string"),
        ({"x": "\udc80"}, "lone surrogate"),
        ({"prompt": "other"}, "prompt also set by a keyword"),
        ({"shot_1_prompt": "z"}, "shot_1_prompt also set by a keyword"),
    ],
)
def test_extra_checked_at_construction(extra: dict[str, Any], fragment: str) -> None:
    with raises("extra", fragment):
        Text2Video(prompt="p", model_name="kling-v3-0", shots=[("a", 5), ("b", 5)], extra=extra)


def test_extra_nested_too_deep() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with raises("extra", "nested deeper"):
        Text2Video(prompt="p", extra={"x": deep})


def test_extra_json_values_are_sent() -> None:
    extra = {"a": None, "b": [1, 2.5, "x", True], "c": {"d": {}}}
    assert Text2Video(prompt="p", extra=extra).to_wire() == {"prompt": "p", **extra}


# --- FIELD=VALUE parser --------------------------------------------------------------------


def test_parse_fields_by_kind() -> None:
    kwargs = parse_fields(
        Text2Video,
        [
            "prompt=a fox = red",
            "model_name=kling-v3-0",
            "duration=10",
            "cfg_scale=0.25",
            "enable_audio=no",
            "maxJobs=4",
            "extra.seed=42",
            "extra.note=plain text",
        ],
    )
    assert kwargs == {
        "prompt": "a fox = red",
        "model_name": "kling-v3-0",
        "duration": 10,
        "cfg_scale": 0.25,
        "enable_audio": False,
        "max_jobs": 4,
        "extra": {"seed": 42, "note": "plain text"},
    }
    req = Text2Video(**kwargs)
    assert req.to_wire()["duration"] == "10"


def test_parse_list_fields() -> None:
    assert parse_fields(KolorsElements, ["subject_images=a.png", "subject_images=b.png"]) == {
        "subject_images": ["a.png", "b.png"]
    }
    assert parse_fields(KolorsElements, ["subjectImage2=b", "subjectImage1=a"]) == {
        "subject_images": ["a", "b"]
    }
    assert parse_fields(Text2Video, ["shots=5:a: fox", "shots=4:b"]) == {
        "shots": [("a: fox", 5), ("b", 4)]
    }
    assert parse_fields(
        Text2Video, ["shot_1_prompt=a", "shot_1_duration=5", "shot_2_prompt=b", "shot_2_duration=4"]
    ) == {"shots": [("a", 5), ("b", 4)]}


def test_request_from_fields_for_the_cli() -> None:
    req = request_from_fields(
        REQUEST_TYPES["videos/text2video"], ["prompt=a fox", "model_name=kling-v3-0", "duration=10"]
    )
    assert req.to_wire() == {"prompt": "a fox", "model_name": "kling-v3-0", "duration": "10"}


@pytest.mark.parametrize(
    ("items", "field", "fragment"),
    [
        (["duration=ten"], "duration", "must be an integer"),
        (["cfg_scale=half"], "cfg_scale", "must be a number"),
        (["enable_audio=maybe"], "enable_audio", "true or false"),
        (["colour=red"], "colour", "unknown field for videos/text2video"),
        (["prompt"], "prompt", "expected FIELD=VALUE"),
        (["shots=a fox"], "shots", "SECONDS:PROMPT"),
        (["max_jobs=2.5"], "max_jobs", "must be an integer"),
        (["shot_1_duration=x"], "shot_1_duration", "must be an integer"),
    ],
)
def test_parse_fields_errors(items: list[str], field: str, fragment: str) -> None:
    with raises(field, fragment):
        parse_fields(Text2Video, items)


def test_request_from_mapping_for_batch_lines() -> None:
    req = request_from_mapping(
        KolorsElements, {"prompt": "p", "subjectImage1": A, "scene_image": B, "imageCount": 2}
    )
    assert req.to_wire() == {"prompt": "p", "subjectImage1": A, "sceneImage": B, "imageCount": 2}
    tts = request_from_mapping(TextToSpeech, {"speakerId": "s", "text": "hi", "max_jobs": 2})
    assert tts.max_jobs == 2
    shots = request_from_mapping(
        Text2Video,
        {"model_name": "kling-v3-0", "shot_2_prompt": "b", "shot_1_prompt": "a"}
        | {"shot_1_duration": 5, "shot_2_duration": 5},
    )
    assert shots.shots == (("a", 5), ("b", 5))
    with raises("colour", "unknown field"):
        request_from_mapping(TextToSpeech, {"speakerId": "s", "text": "hi", "colour": 1})


def test_describe_fields() -> None:
    rows = describe_fields(Image2VideoElements)
    assert ("images", "image_{}", "files") in rows
    assert ("duration", "duration", "int") in rows
    assert ("max_jobs", "maxJobs", "shared") in rows
    assert ("max_jobs", "maxJobs", "shared") not in describe_fields(TextToSpeech)
