"""The jobs file: parsing and validating every line before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kling_async.batch import JobsFileError, parse_jobs_file
from kling_async.testing.media import png, video, wav


def write_jobs(folder: Path, lines: list[Any]) -> Path:
    path = folder / "jobs.jsonl"
    text = [x if isinstance(x, str) else json.dumps(x) for x in lines]
    path.write_text("\n".join(text) + "\n")
    return path


def image_line(prompt: str) -> dict[str, Any]:
    return {"kind": "image", "prompt": prompt, "subject_images": ["a.png", "b.png"]}


def test_parse_resolves_paths_and_skips_comments(images: Path) -> None:
    path = write_jobs(
        images,
        [
            "# a comment",
            image_line("one"),
            "",
            {"kind": "video", "prompt": "two", "images": "a.png", "duration": "10"},
        ],
    )
    jobs = parse_jobs_file(path)
    assert [j.line for j in jobs] == [2, 4]
    assert jobs[0].request.image_inputs()["subject_images[0]"] == str(images / "a.png")
    assert jobs[1].kind == "video"
    assert jobs[1].request.duration == 10  # type: ignore[attr-defined]


def test_parse_reports_every_bad_line(images: Path) -> None:
    path = write_jobs(
        images,
        [
            image_line("ok"),
            {"kind": "image", "prompt": "x", "subject_images": ["a.png"], "image_count": 12},
            "{not json",
            {"kind": "audio", "prompt": "x"},
            {"kind": "video", "prompt": "x", "images": ["a.png"], "colour": "red"},
            {"kind": "video", "prompt": "x", "images": ["missing.png"]},
            {"kind": "image", "subject_images": 5},
        ],
    )
    with pytest.raises(JobsFileError) as info:
        parse_jobs_file(path)
    problems = info.value.problems
    assert len(problems) == 6
    assert problems[0].startswith("jobs.jsonl line 2: subject_images")
    assert "line 3: not valid JSON" in problems[1]
    assert "line 4: kind" in problems[2]
    assert "line 5: colour: unknown field" in problems[3]
    assert "line 6: images[0]" in problems[4]
    assert "line 7: subject_images" in problems[5]


def test_parse_empty_file(tmp_path: Path) -> None:
    with pytest.raises(JobsFileError) as info:
        parse_jobs_file(write_jobs(tmp_path, ["# nothing"]))
    assert info.value.problems == ("jobs.jsonl: no jobs (one JSON object per line)",)


def _media_files(folder: Path) -> None:
    (folder / "clip.mp4").write_bytes(video())
    (folder / "voice.wav").write_bytes(wav(500))
    (folder / "tiny.png").write_bytes(png(100, 100, (1, 2, 3)))


def test_endpoint_lines_take_python_or_wire_names_and_resolve_every_file_input(
    images: Path,
) -> None:
    _media_files(images)
    lines: list[Any] = [
        {"endpoint": "videos/text2video", "prompt": "a fox", "model_name": "kling-v3-0"},
        {"endpoint": "/videos/lipsync", "video": "clip.mp4", "audio": "voice.wav"},
        {"endpoint": "images/kolors-elements", "prompt": "p", "subjectImage1": "a.png",
         "sceneImage": "b.png"},
        {"endpoint": "videos/image2video-frames", "image": "a.png", "image_tail": "b.png"},
        {"endpoint": "avatars/video", "imageUrl": "a.png", "audio_url": "voice.wav"},
        {"endpoint": "videos/text2video", "model_name": "kling-v3-0",
         "shots": [["a fox runs", 5], ["it sleeps", 4]]},
        {"endpoint": "tts/create", "speakerId": "sp1", "text": "hello"},
        {"kind": "image", "endpoint": "images/kolors-elements", "prompt": "q",
         "subject_images": ["a.png", "b.png"]},
    ]  # fmt: skip
    jobs = parse_jobs_file(write_jobs(images, lines))
    assert [j.endpoint for j in jobs] == [
        "videos/text2video",
        "videos/lipsync",
        "images/kolors-elements",
        "videos/image2video-frames",
        "avatars/video",
        "videos/text2video",
        "tts/create",
        "images/kolors-elements",
    ]
    files = [j.request.file_inputs() for j in jobs]
    assert files[1] == {"video": str(images / "clip.mp4"), "audio": str(images / "voice.wav")}
    assert files[2]["subject_images[0]"] == str(images / "a.png")
    assert files[2]["scene_image"] == str(images / "b.png")
    assert files[3]["image_tail"] == str(images / "b.png")
    assert files[4] == {"image_url": str(images / "a.png"), "audio_url": str(images / "voice.wav")}
    assert jobs[5].request.shots == (("a fox runs", 5), ("it sleeps", 4))  # type: ignore[attr-defined]
    assert jobs[6].kind == "audio"


def test_every_bad_endpoint_line_is_listed_and_local_files_are_checked(images: Path) -> None:
    _media_files(images)
    lines: list[Any] = [
        {"endpoint": "videos/nope", "prompt": "x"},
        {"endpoint": "videos/text2video", "kind": "image", "prompt": "x"},
        {"endpoint": "videos/image2video-frames", "image": "tiny.png"},
        {"endpoint": "videos/lipsync", "video": "a.png", "audio": "voice.wav"},
        {"endpoint": "videos/lipsync", "video": "clip.mp4", "audio": "gone.wav"},
        {"endpoint": "videos/text2video", "prompt": "x", "duration": 12},
        {"endpoint": "images/kolors-elements", "prompt": "p", "subject_images": [1, 2]},
        {"endpoint": "avatars/video", "imageUrl": 5},
        {"prompt": "no endpoint"},
    ]
    with pytest.raises(JobsFileError) as info:
        parse_jobs_file(write_jobs(images, lines))
    problems = info.value.problems
    assert len(problems) == len(lines)
    expected = [
        "line 1: endpoint: unknown endpoint 'videos/nope'",
        "line 2: kind: 'image' contradicts endpoint 'videos/text2video'",
        "line 3: image: file",
        "line 4: video: file",
        "line 5: audio: ",
        "line 6: duration: 12 is not allowed",
        "line 7: subject_images: must be a list of URLs or file paths",
        "line 8: imageUrl: must be a URL or a file path",
        'line 9: kind: must be "image" or "video" (or give "endpoint"',
    ]
    for problem, start in zip(problems, expected, strict=True):
        assert start in problem, problem
    assert "100x100 px; at least 300 px" in problems[2]
    assert "image/png, expected a video" in problems[3]
    assert "gone.wav" in problems[4]
