"""The jobs file: parsing and validating every line before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kling_async.batch import JobsFileError, parse_jobs_file


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
