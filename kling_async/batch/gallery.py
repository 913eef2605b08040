"""``DIR/index.html``: the batch's results for people, from its manifest (``results.jsonl``).

`write_gallery` renders the manifest's entries as a self-contained static page (inline
CSS, no network): a card per job with its prompt, options, task id and state; image
results as thumbnails linking to the full file, videos as ``<video controls>`` with their
cover as poster, audio as ``<audio>``, failures with their error text; filters by state.
Links are relative, so the folder can be moved or served as it is; every text is
HTML-escaped (Jinja2 autoescape).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import quote

import jinja2

from ..requests import sniff
from .manifest import MANIFEST_NAME

__all__ = ["GALLERY_NAME", "read_manifest", "write_gallery"]

#: The gallery's file name inside the batch's output folder.
GALLERY_NAME: Final = "index.html"

_IMAGE: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
_VIDEO: Final = frozenset({".mp4", ".webm", ".mov"})
_AUDIO: Final = frozenset({".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac"})
_STATE_ORDER: Final = ("succeeded", "failed", "unknown", "running", "submitting", "pending")


def _kind(name: str, folder: Path | None) -> str:
    """A file's kind by its first bytes (a WAV saved under another suffix is still audio),
    else by its suffix."""
    if folder is not None:
        try:
            with (folder / _href_path(name)).open("rb") as stream:
                found = sniff(stream.read(64))
        except OSError:
            found = None
        if found is not None:
            return found[0]
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _IMAGE:
        return "image"
    if suffix in _VIDEO:
        return "video"
    if suffix in _AUDIO:
        return "audio"
    return "file"


def _parts(path: str) -> list[str]:
    return [
        p for p in PurePosixPath(path.replace(os.sep, "/")).parts if p not in ("", ".", "..", "/")
    ]


def _href_path(path: str) -> str:
    """The file's path inside the folder (never an absolute or parent path)."""
    return "/".join(_parts(path))


def _href(path: str) -> str:
    """A relative link to a file of the folder (never an absolute or parent path)."""
    return "/".join(quote(p) for p in _parts(path))


def _media(files: Sequence[str], folder: Path | None) -> list[dict[str, str]]:
    """The files of one job as page items; a ``*-cover.*`` image is its video's poster."""
    covers = {PurePosixPath(f).stem.removesuffix("-cover"): f for f in files if "-cover." in f}
    items = []
    for name in files:
        if name in covers.values():
            continue
        item = {"kind": _kind(name, folder), "href": _href(name), "name": PurePosixPath(name).name}
        item["poster"] = ""
        cover = covers.get(PurePosixPath(name).stem)
        if item["kind"] == "video" and cover is not None:
            item["poster"] = _href(cover)
        items.append(item)
    return items


def _options(entry: Mapping[str, Any]) -> str:
    """A card's settings line (the manifest keeps a POST's settings, not its prompt or URLs)."""
    body = entry.get("options") or {}
    if not isinstance(body, Mapping):
        return ""
    return " · ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in body.items()
    )


def _card(entry: Mapping[str, Any], folder: Path | None = None) -> dict[str, Any]:
    files = [str(f) for f in entry.get("files") or ()]
    timings = entry.get("timings") or {}
    started, ended = timings.get("submitted_at"), timings.get("updated_at")
    seconds = (
        ended - started
        if isinstance(started, int | float) and isinstance(ended, int | float)
        else None
    )
    return {
        "line": entry.get("line"),
        "endpoint": entry.get("endpoint") or "",
        "prompt": entry.get("prompt") or "",
        "account": entry.get("account") or "",
        "task_id": entry.get("task_id"),
        "state": str(entry.get("state") or "unknown"),
        "error": entry.get("error") or "",
        "seconds": seconds if entry.get("state") == "succeeded" else None,
        "options": _options(entry),
        "media": _media(files, folder),
    }


def _template() -> jinja2.Template:
    text = (
        resources.files(__package__ or "kling_async.batch")
        .joinpath("gallery.html.j2")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def read_manifest(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of ``folder/results.jsonl`` (lines that are not JSON objects are skipped)."""
    entries = []
    text = (Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8")
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def write_gallery(
    folder: str | os.PathLike[str],
    entries: Iterable[Mapping[str, Any]] | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Render ``folder/index.html`` from ``entries`` (default: the folder's manifest)."""
    target = Path(folder)
    cards = [_card(e, target) for e in (read_manifest(target) if entries is None else entries)]
    found = Counter(card["state"] for card in cards)
    order = [s for s in _STATE_ORDER if s in found] + sorted(set(found) - set(_STATE_ORDER))
    html = _template().render(
        title=title or f"kling-async batch: {target.resolve().name}",
        cards=cards,
        counts=[(state, found[state]) for state in order],
    )
    page = target / GALLERY_NAME
    partial = target / f".{GALLERY_NAME}.part"
    partial.write_text(html, encoding="utf-8")
    partial.replace(page)
    return page
