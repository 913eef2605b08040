"""``DIR/results.jsonl``: one JSON line per job of a batch, rewritten as jobs finish.

Each line: ``line``, ``endpoint``, ``prompt``, ``account``, ``task_id``, ``state``,
``final_state``, ``files`` (relative to ``DIR``), ``error``, ``options`` (the POST's
settings) and ``timings`` (epoch seconds:
``submitted_at``, when the POST was sent; ``updated_at``, the row's last change). The file
is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from .jobsfile import KINDS
from .journal import JobRecord

__all__ = ["MANIFEST_NAME", "manifest_line", "write_manifest"]

#: The manifest's file name inside the output folder.
MANIFEST_NAME: Final = "results.jsonl"


def _line_facts(rec: JobRecord) -> tuple[str | None, str | None]:
    """(endpoint, prompt) of a row, from its jobs line (``endpoint`` or the ``kind`` alias)."""
    try:
        obj = json.loads(rec.text)
    except ValueError:
        obj = {}
    obj = obj if isinstance(obj, dict) else {}
    endpoint = obj.get("endpoint")
    if not isinstance(endpoint, str):
        kind = KINDS.get(rec.kind)
        endpoint = kind.endpoint if kind is not None else None
    # What a card shows as the job's text: its prompt, a speech's text, or its shots.
    prompt = obj.get("prompt") or obj.get("text")
    shots = obj.get("shots")
    if not prompt and isinstance(shots, list):
        prompt = " / ".join(str(s[0]) for s in shots if isinstance(s, list) and s)
    return endpoint, prompt if isinstance(prompt, str) and prompt else None


def manifest_line(rec: JobRecord) -> dict[str, Any]:
    """The manifest's JSON object for one journal row."""
    endpoint, prompt = _line_facts(rec)
    return {
        "line": rec.line,
        "endpoint": endpoint,
        "prompt": prompt,
        "account": rec.email,
        "task_id": rec.task_id,
        "state": rec.state.value,
        "final_state": rec.final_state,
        "files": list(rec.files),
        "error": rec.error,
        "options": _options(rec.body),
        "timings": {"submitted_at": rec.submitting_at, "updated_at": rec.updated_at},
    }


def _options(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings of a job's POST body: not its prompt, account, callback or file URLs."""
    skip = {"prompt", "email", "replyUrl", "replyRef"}
    return {
        k: v
        for k, v in (body or {}).items()
        if k not in skip and not (isinstance(v, str) and v.startswith(("http://", "https://")))
    }


def write_manifest(folder: str | os.PathLike[str], records: Iterable[JobRecord]) -> Path:
    """Write ``folder/results.jsonl`` for ``records`` (by line); return its path."""
    path = Path(folder) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(
        json.dumps(manifest_line(rec), ensure_ascii=False) + "\n"
        for rec in sorted(records, key=lambda r: r.line)
    )
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)  # atomic: readers see the old file or the new one
    return path
