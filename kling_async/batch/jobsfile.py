"""The jobs file: one JSON object per line, parsed and validated before anything is sent.

Fields are the Python names of `KolorsElements` (``kind: image``) and `Image2VideoElements`
(``kind: video``); relative local paths are read from the jobs file's folder. Blank lines
and lines starting with ``#`` are skipped; `parse_jobs_file` reports every bad line at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ..errors import JobsFileError, RequestValidationError
from ..requests import GenerationRequest, Image2VideoElements, KolorsElements, is_remote

__all__ = ["KINDS", "Job", "job_from_request", "parse_job", "parse_jobs_file"]

#: ``kind`` of a jobs line -> its request type.
KINDS: Final[Mapping[str, type[GenerationRequest]]] = {
    "image": KolorsElements,
    "video": Image2VideoElements,
}


@attrs.frozen(kw_only=True)
class Job:
    """One job: its line number, the line as canonical JSON, its hash, and the request."""

    line: int
    text: str
    digest: str
    request: GenerationRequest

    @property
    def kind(self) -> str:
        """``image`` or ``video``."""
        return self.request.kind


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _LineError(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _allowed_fields(cls: type[GenerationRequest]) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


def _local_path(value: str, base_dir: Path) -> str:
    if is_remote(value) or not value.strip():
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _resolve_images(
    cls: type[GenerationRequest], fields: dict[str, Any], base_dir: Path
) -> dict[str, Any]:
    """Check the JSON types of image fields and resolve relative paths against base_dir."""
    out = dict(fields)
    for name in cls.image_fields:
        value = out.get(name)
        if value is None:
            continue
        many = name in ("subject_images", "images")
        if many and isinstance(value, str):
            value = [value]
        if many:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _LineError(name, f"{name}: must be a list of URLs or file paths")
            out[name] = [_local_path(v, base_dir) for v in value]
        elif isinstance(value, str):
            out[name] = _local_path(value, base_dir)
        else:
            raise _LineError(name, f"{name}: must be a URL or a file path")
    return out


def parse_job(obj: object, *, line: int, base_dir: Path) -> Job:
    """Build the job of one parsed JSON line; raises ``_LineError`` naming the field."""
    if not isinstance(obj, dict):
        raise _LineError(None, f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise _LineError("kind", f'kind: must be "image" or "video", got {kind!r}')
    fields = {k: v for k, v in obj.items() if k != "kind"}
    allowed = _allowed_fields(cls)
    for key in fields:
        if key not in allowed:
            raise _LineError(
                key, f"{key}: unknown field for kind {kind!r} (known: {', '.join(allowed)})"
            )
    fields = _resolve_images(cls, fields, base_dir)
    try:
        request = cls(**fields)
    except RequestValidationError as exc:
        raise _LineError(exc.field, str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise _LineError(None, str(exc)) from exc
    text = _canonical(obj)
    return Job(line=line, text=text, digest=_digest(text), request=request)


def parse_jobs_file(path: str | os.PathLike[str]) -> list[Job]:
    """Read and validate every line of a jobs file.

    Raises `JobsFileError` listing every bad line (``jobs.jsonl line 3: prompt: ...``).
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"cannot read {path}: {exc}", problems=[str(exc)]) from exc
    jobs: list[Job] = []
    problems: list[str] = []
    base_dir = path.resolve().parent
    for number, raw in enumerate(content.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            try:
                obj = json.loads(stripped)
            except ValueError as exc:
                raise _LineError(None, f"not valid JSON: {exc}") from exc
            jobs.append(parse_job(obj, line=number, base_dir=base_dir))
        except _LineError as exc:
            problems.append(f"{path.name} line {number}: {exc}")
    if not problems and not jobs:
        problems.append(f"{path.name}: no jobs (one JSON object per line)")
    if problems:
        raise JobsFileError(
            f"{len(problems)} problem(s) in {path}, nothing was sent", problems=problems
        )
    return jobs


def _json_safe(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:16]}>"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


def job_from_request(line: int, request: GenerationRequest) -> Job:
    """A `Job` for a request built in code (the journal keeps its fields as JSON)."""
    obj: dict[str, Any] = {"kind": request.kind}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if value is None or value == () or (field.name == "extra" and not value):
            continue
        obj[field.name] = _json_safe(value)
    text = _canonical(obj)
    return Job(line=line, text=text, digest=_digest(text), request=request)
