"""The one CLI / batch field parser: ``FIELD=VALUE`` strings and mappings to a request.

Field names may be the Python name (``image_count``), the wire name (``imageCount``), a
numbered wire name of a list (``subjectImage2``, ``shot_1_prompt``) or ``extra.NAME`` (the
value is JSON when it parses as JSON, else the string). Values are parsed by the field's
kind: integers, numbers, booleans (true/false/yes/no/1/0), text as given; a list field
named by its Python name takes one item per occurrence (``shots`` as ``SECONDS:PROMPT``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .base import SHARED_WIRE, GenerationRequest, plan
from .fields import BOOL, FLOAT, INT, LIST_KINDS, SHOTS, Spec
from .media import fail

__all__ = ["describe_fields", "parse_fields", "request_from_fields", "request_from_mapping"]

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_SHARED_KINDS = {"max_jobs": INT}
_NUMBERED = re.compile(r"(.*?)(\d+)(.*)\Z")


def _names(cls: type[GenerationRequest]) -> dict[str, tuple[str, Spec | None]]:
    """Every accepted name of a field (Python and wire) -> (Python name, Spec)."""
    found: dict[str, tuple[str, Spec | None]] = {}
    for name, wire in SHARED_WIRE.items():
        found[name] = found[wire] = (name, None)
    for name, spec in plan(cls):
        found[name] = (name, spec)
        if spec.kind not in LIST_KINDS:
            found[spec.wire] = (name, spec)
    return found


def _slot(cls: type[GenerationRequest], key: str) -> tuple[str, Spec, int, str] | None:
    """(Python name, Spec, 0-based index, part) of a numbered wire name, or None."""
    for name, spec in plan(cls):
        if spec.kind == SHOTS:
            hit = re.fullmatch(r"shot_(\d+)_(prompt|duration)", key)
            if hit:
                return name, spec, int(hit.group(1)) - spec.first, hit.group(2)
        elif spec.kind in LIST_KINDS:
            head, _, tail = spec.wire.partition("{}")
            hit = re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), key)
            if hit:
                return name, spec, int(hit.group(1)) - spec.first, "item"
    return None


def _parse(key: str, kind: str | None, raw: str) -> Any:
    text = raw.strip()
    if kind == INT:
        try:
            return int(text)
        except ValueError:
            raise fail(key, f"must be an integer, got {raw!r}") from None
    if kind == FLOAT:
        try:
            return float(text)
        except ValueError:
            raise fail(key, f"must be a number, got {raw!r}") from None
    if kind == BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise fail(key, f"must be true or false, got {raw!r}")
    return raw


def _shot(key: str, raw: str) -> tuple[str, int]:
    seconds, sep, prompt = raw.partition(":")
    if not sep:
        raise fail(key, f"a shot is SECONDS:PROMPT, got {raw!r}")
    return prompt, _parse(key, INT, seconds)


def parse_fields(cls: type[GenerationRequest], items: Iterable[str]) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from ``FIELD=VALUE`` strings (see the module doc).

    Raises `RequestValidationError` naming the field as the caller spelled it.
    """
    names = _names(cls)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    slots: dict[str, dict[Any, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise fail(item, "expected FIELD=VALUE")
        if key.startswith("extra."):
            try:
                extra[key[6:]] = json.loads(raw)
            except ValueError:
                extra[key[6:]] = raw
            continue
        if key in names:
            name, spec = names[key]
            kind = spec.kind if spec else _SHARED_KINDS.get(name)
            if spec is not None and spec.kind == SHOTS:
                kwargs.setdefault(name, []).append(_shot(key, raw))
            elif spec is not None and spec.kind in LIST_KINDS:
                kwargs.setdefault(name, []).append(raw)
            else:
                kwargs[name] = _parse(key, kind, raw)
            continue
        slot = _slot(cls, key)
        if slot is None:
            raise fail(key, f"unknown field for {cls.endpoint}; pass newer fields as extra.{key}=")
        name, spec, index, part = slot
        if spec.kind == SHOTS:
            shot = slots.setdefault(f"{name}/{index}", {})
            shot[part] = raw if part == "prompt" else _parse(key, INT, raw)
        else:
            slots.setdefault(name, {})[index] = raw
    for key, values in slots.items():
        name, _, shot_no = key.partition("/")
        if shot_no:
            kwargs.setdefault(name, []).append((values.get("prompt"), values.get("duration")))
        else:
            kwargs[name] = [values[i] for i in sorted(values)]
    if extra:
        kwargs["extra"] = extra
    return kwargs


def request_from_fields(cls: type[GenerationRequest], items: Iterable[str]) -> GenerationRequest:
    """A validated request of ``cls`` from ``FIELD=VALUE`` strings (the CLI's ``generate``)."""
    return cls(**parse_fields(cls, items))


def request_from_mapping(
    cls: type[GenerationRequest], fields: Mapping[str, Any]
) -> GenerationRequest:
    """A validated request from a mapping by Python or wire names (a batch line's fields).

    Values keep their JSON types; a list field takes a list (or numbered wire names).
    """
    names = _names(cls)
    kwargs: dict[str, Any] = {}
    slots: dict[str, dict[Any, Any]] = {}
    for key, value in fields.items():
        if key == "extra":
            kwargs["extra"] = value
        elif key in names:
            kwargs[names[key][0]] = value
        else:
            slot = _slot(cls, key)
            if slot is None:
                raise fail(key, f"unknown field for {cls.endpoint}; pass newer fields in extra")
            name, spec, index, part = slot
            if spec.kind == SHOTS:
                slots.setdefault(f"{name}/{index}", {})[0 if part == "prompt" else 1] = value
            else:
                slots.setdefault(name, {})[index] = value
    shots: dict[str, list[tuple[Any, Any]]] = {}
    for key, values in sorted(slots.items()):
        name, _, shot_no = key.partition("/")
        if shot_no:
            shots.setdefault(name, []).append((values.get(0), values.get(1)))
        else:
            kwargs[name] = [values[i] for i in sorted(values)]
    kwargs.update(shots)
    return cls(**kwargs)


def describe_fields(cls: type[GenerationRequest]) -> list[tuple[str, str, str]]:
    """(Python name, wire name, kind) of every body field, for ``kling-async endpoints``."""
    rows = [(name, spec.wire, spec.kind) for name, spec in plan(cls)]
    if cls.callbacks:
        rows += [(n, w, "shared") for n, w in SHARED_WIRE.items()]
    else:
        rows.append(("email", "email", "shared"))
    return rows
