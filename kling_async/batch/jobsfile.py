"""The jobs file: one JSON object per line, parsed and validated before anything is sent.

A line names its endpoint, ``{"endpoint": "videos/text2video", "prompt": "a fox"}`` (any
key of `REQUEST_TYPES`), with the request's fields by Python or wire name
(`request_from_mapping`); ``"kind": "image"`` / ``"video"`` stand for the two seed
endpoints (`KolorsElements`, `Image2VideoElements`). Relative local paths in file inputs
are read from the jobs file's folder, and every local file is checked (size, type by its
magic bytes, minimum size) when the line is parsed. Blank lines and lines starting with
``#`` are skipped; `parse_jobs_file` reports every bad line at once, before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ..errors import JobsFileError, RequestValidationError
from ..requests import (
    REQUEST_TYPES,
    GenerationRequest,
    Image2VideoElements,
    KolorsElements,
    is_remote,
    request_from_mapping,
    spec_of,
)

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
        """The content of its results: ``image``, ``video`` or ``audio``."""
        return self.request.kind

    @property
    def endpoint(self) -> str:
        """Its endpoint path (``videos/text2video``)."""
        return self.request.endpoint


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _LineError(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _local_path(value: str, base_dir: Path) -> str:
    if is_remote(value) or not value.strip():
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _file_keys(cls: type[GenerationRequest]) -> tuple[dict[str, bool], list[re.Pattern[str]]]:
    """The keys of a line that hold file inputs: name -> takes a list; numbered wire names."""
    names: dict[str, bool] = {}
    numbered: list[re.Pattern[str]] = []
    for field in attrs.fields(cls):
        spec = spec_of(field)
        if spec is None or spec.kind not in ("file", "files"):
            continue
        if spec.kind == "file":
            names[field.name] = names[spec.wire] = False
        else:
            names[field.name] = True
            head, _, tail = spec.wire.partition("{}")
            numbered.append(re.compile(re.escape(head) + r"\d+" + re.escape(tail) + r"\Z"))
    return names, numbered


def _resolve_files(
    cls: type[GenerationRequest], fields: dict[str, Any], base_dir: Path
) -> dict[str, Any]:
    """Check the JSON types of file inputs and resolve relative paths against base_dir."""
    names, numbered = _file_keys(cls)
    out = dict(fields)
    for key, given in fields.items():
        many = names.get(key)
        if given is None or (many is None and not any(p.match(key) for p in numbered)):
            continue
        value = [given] if many and isinstance(given, str) else given
        if many:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _LineError(key, f"{key}: must be a list of URLs or file paths")
            out[key] = [_local_path(v, base_dir) for v in value]
        elif isinstance(value, str):
            out[key] = _local_path(value, base_dir)
        else:
            raise _LineError(key, f"{key}: must be a URL or a file path")
    return out


def _line_class(obj: Mapping[str, Any]) -> type[GenerationRequest]:
    endpoint, kind = obj.get("endpoint"), obj.get("kind")
    if endpoint is not None:
        cls = REQUEST_TYPES.get(endpoint.lstrip("/")) if isinstance(endpoint, str) else None
        if cls is None:
            raise _LineError(
                "endpoint",
                f"endpoint: unknown endpoint {endpoint!r} ('kling-async endpoints' lists them)",
            )
        if kind is not None and (not isinstance(kind, str) or KINDS.get(kind) is not cls):
            raise _LineError("kind", f"kind: {kind!r} contradicts endpoint {endpoint!r}")
        return cls
    found = KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        what = "missing" if kind is None else f"got {kind!r}"
        raise _LineError(
            "kind",
            f'kind: must be "image" or "video" (or give "endpoint": "videos/text2video" ...), '
            f"{what}",
        )
    return found


def parse_job(obj: object, *, line: int, base_dir: Path) -> Job:
    """Build the job of one parsed JSON line; raises ``_LineError`` naming the field."""
    if not isinstance(obj, dict):
        raise _LineError(None, f"expected a JSON object, got {type(obj).__name__}")
    cls = _line_class(obj)
    fields = {k: v for k, v in obj.items() if k not in ("kind", "endpoint")}
    fields = _resolve_files(cls, fields, base_dir)
    try:
        request = request_from_mapping(cls, fields)
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
    # The two seed endpoints keep their ``kind`` line, so journals written before
    # ``endpoint`` lines existed still match.
    seed = KINDS.get(request.kind) is type(request)
    obj: dict[str, Any] = {"kind": request.kind} if seed else {"endpoint": request.endpoint}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if value is None or value == () or (field.name == "extra" and not value):
            continue
        obj[field.name] = _json_safe(value)
    text = _canonical(obj)
    return Job(line=line, text=text, digest=_digest(text), request=request)
