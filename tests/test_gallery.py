"""The batch's manifest and gallery: a real simulator batch, its HTML, and the page opened
in Debian's headless Chromium (skipped, with the reason, only where no browser exists)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser import browser_missing, chromium, page_report, screenshot
from helpers import EMAIL, TOKEN

from kling_async import KlingClient
from kling_async.batch import (
    GALLERY_NAME,
    MANIFEST_NAME,
    BatchRunner,
    Journal,
    parse_jobs_file,
    read_manifest,
    write_gallery,
)
from kling_async.testing import KlingSimulator
from kling_async.testing.media import png, video

HOSTILE = 'a <script>window.__pwned = true</script> "cat" & dog'


def _jobs(folder: Path) -> Path:
    for name, rgb in (("a.png", (200, 40, 40)), ("b.png", (40, 160, 40))):
        (folder / name).write_bytes(png(320, 320, rgb))
    (folder / "clip.mp4").write_bytes(video())
    lines: list[dict[str, Any]] = [
        {"kind": "image", "prompt": HOSTILE, "subject_images": ["a.png", "b.png"]},
        {
            "kind": "image",
            "prompt": "two foxes",
            "subject_images": ["a.png", "b.png"],
            "image_count": 2,
        },
        {"kind": "video", "prompt": "they dance", "images": ["a.png"]},
        {"kind": "image", "prompt": "a forbidden thing", "subject_images": ["a.png", "b.png"]},
        {"endpoint": "videos/text2video", "prompt": "a fox", "model_name": "kling-v3-0"},
        {"endpoint": "tts/create", "speakerId": "sp1", "text": "hello there"},
        # A local video input is uploaded like an image.
        {"endpoint": "videos/lipsync", "video": "clip.mp4", "audio": "https://x.example/v.mp3"},
    ]
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def _batch(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    jobs = parse_jobs_file(_jobs(tmp_path))
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 3}, job_seconds=0.01, failure_words=("forbidden",)
    ) as sim:
        async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
            out.mkdir()
            with Journal(out / ".kling-journal.sqlite3") as journal:
                await BatchRunner(kling, journal, out).run(jobs)
    return out


async def test_a_batch_writes_its_manifest_and_a_self_contained_gallery(tmp_path: Path) -> None:
    out = await _batch(tmp_path)
    entries = read_manifest(out)
    states = [e["state"] for e in entries]
    assert states == ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 3
    assert entries[1]["options"]["imageCount"] == 2
    assert [e["endpoint"] for e in entries[3:]] == [
        "images/kolors-elements",
        "videos/text2video",
        "tts/create",
        "videos/lipsync",
    ]
    assert entries[5]["prompt"] == "hello there"  # a speech's text stands for its prompt
    assert all((out / f).is_file() for e in entries for f in e["files"])
    html = (out / GALLERY_NAME).read_text()
    assert html.count('class="card"') == 7
    assert "<script>window.__pwned" not in html  # the prompt is text, escaped
    assert "&lt;script&gt;window.__pwned = true&lt;/script&gt; &#34;cat&#34; &amp; dog" in html
    assert "http://" not in html
    assert "https://" not in html
    assert 'src="/' not in html
    assert "../" not in html
    assert html.count("<video controls") == 3
    assert html.count('-cover.png"') == 3  # every video has its cover as poster
    assert html.count("<audio controls") == 1


def test_gallery_of_a_hand_written_manifest_links_inside_the_folder(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text(
        json.dumps(
            {
                "line": 1,
                "state": "failed",
                "files": ["../../etc/passwd", "/abs/x.png"],
                "error": "refused by moderation",
                "prompt": "p",
            }
        )
        + "\nnot json\n"
    )
    html = write_gallery(tmp_path).read_text()
    assert 'href="etc/passwd"' in html
    assert 'src="abs/x.png"' in html
    assert "refused by moderation" in html
    assert html.count('class="card"') == 1


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
async def test_the_gallery_shows_every_result_in_a_real_browser(tmp_path: Path) -> None:
    out = await _batch(tmp_path)
    with chromium() as driver:
        report = page_report(driver, out / GALLERY_NAME)
        driver.save_screenshot(str(tmp_path / "gallery.png"))
    assert report["cards"] == 7
    assert len(report["images"]) == 3  # 1 + 2 images; the videos' covers are their posters
    assert all(width > 0 for _, width in report["images"]), report["images"]
    assert len(report["videos"]) == 3
    assert all(
        state >= 1 and error == 0 and width > 0 for _, state, error, width in report["videos"]
    ), report["videos"]
    assert all(poster.endswith("-cover.png") for poster in report["posters"])
    assert len(report["audios"]) == 1
    assert all(state >= 1 and error == 0 for _, state, error in report["audios"]), report["audios"]
    assert HOSTILE in report["prompts"]
    assert not report["pwned"]
    assert report["scripts"] == 1
    assert (tmp_path / "gallery.png").stat().st_size > 0
    # README's picture is made by this helper (python tests/browser.py docs/img/gallery.png).
    shot = screenshot(out / GALLERY_NAME, tmp_path / "shots" / "readme.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
