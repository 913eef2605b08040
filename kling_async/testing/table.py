"""The simulator's own wire table: field specs and ONE generic validator over them.

The table is written from ../shared/api/endpoints.md, never from the client's request
layer, so each side checks the other. Every endpoint lists its fields (kind, required,
choices, range, max length) and cross-field rules (callables over the normalised values
that answer an error text or None). :func:`validate_table` turns a body into a
:class:`~kling_async.testing.validation.Generation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from kling_async.testing.answers import bad_request
from kling_async.testing.validation import Generation, int_param

__all__ = ["EXTRAS", "Endpoint", "F", "Rule", "Values", "shot_fields", "validate_table"]

Values = dict[str, Any]
Rule = Callable[[Values], "str | None"]
"""A cross-field rule: the error text, or None when the values satisfy it."""

MAX_TEXT: Final = 2500
KINDS: Final = ("text", "choice", "int", "number", "bool", "url", "id", "task")


@attrs.frozen
class F:
    """One documented field: wire ``name``, ``kind`` and its limits."""

    name: str
    kind: str
    required: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    max_len: int | None = MAX_TEXT

    def __attrs_post_init__(self) -> None:
        assert self.kind in KINDS, self.kind


EXTRAS: Final = (F("maxJobs", "int", low=1, high=50), F("replyUrl", "url"), F("replyRef", "id"))
"""maxJobs / replyUrl / replyRef, on the endpoints that list them."""


@attrs.frozen
class Endpoint:
    """A generation endpoint: its fields, rules and what its task makes."""

    path: str
    content: str  # "image" | "video" | "audio"
    task_type: str
    fields: tuple[F, ...]
    rules: tuple[Rule, ...] = ()
    duration: int = 5  # seconds of a video / audio work unless the body says otherwise

    def field(self, name: str) -> F | None:
        """The spec of ``name``, or None when the page does not list it."""
        return next((f for f in self.fields if f.name == name), None)


def shot_fields() -> tuple[F, ...]:
    """shot_1_prompt .. shot_6_duration (endpoints.md, Multi-shot fields)."""
    fields: list[F] = []
    for n in range(1, 7):
        fields += [F(f"shot_{n}_prompt", "text"), F(f"shot_{n}_duration", "int", low=1, high=15)]
    return tuple(fields)


def _empty(value: object) -> bool:
    return value is None or value == ""


def _number(value: object, spec: F) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    assert spec.low is not None
    assert spec.high is not None
    if number is None or not spec.low <= number <= spec.high:
        raise bad_request(
            f"{spec.name} must be a number from {spec.low:g} to {spec.high:g}, got {value!r}"
        )
    return number


def _value(spec: F, value: object) -> Any:
    name = spec.name
    if spec.kind in ("text", "id"):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise bad_request(f"{name} must be a string")
        text = str(value)
        if spec.kind == "text" and spec.max_len is not None and len(text) > spec.max_len:
            raise bad_request(f"{name} must be at most {spec.max_len} characters, got {len(text)}")
        return text
    if spec.kind == "choice":
        if value not in spec.choices:
            raise bad_request(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
        return str(value)
    if spec.kind == "int":
        assert spec.low is not None
        assert spec.high is not None
        return int_param(value, name, int(spec.low), int(spec.high))
    if spec.kind == "number":
        return _number(value, spec)
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad_request(f"{name} must be true or false, got {value!r}")
    if spec.kind == "url":
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise bad_request(f"{name} must be an http(s) URL (upload files with POST /assets)")
        return value
    # task: a task id as GET /tasks lists it
    if not str(value).isdigit():
        raise bad_request(f"{name} must be a task id, got {value!r}")
    return int(str(value))


def _values(endpoint: Endpoint, body: Mapping[str, Any]) -> Values:
    values: Values = {}
    for spec in endpoint.fields:
        raw = body.get(spec.name)
        if _empty(raw):
            if spec.required:
                raise bad_request(f"{spec.name} is required")
            continue
        values[spec.name] = _value(spec, raw)
    for rule in endpoint.rules:
        message = rule(values)
        if message is not None:
            raise bad_request(message)
    return values


def _shots_seconds(values: Values) -> int:
    return sum(int(values.get(f"shot_{n}_duration", 0)) for n in range(1, 7))


def validate_table(endpoint: Endpoint, body: Mapping[str, Any]) -> Generation:
    """Check ``body`` against ``endpoint``'s table; raise a 400 answer if a rule is broken."""
    email = body.get("email")
    if email is not None and not isinstance(email, str):
        raise bad_request("email must be a string")
    values = _values(endpoint, body)
    shots = _shots_seconds(values)
    duration = int(values.get("duration") or shots or endpoint.duration)
    ratio = values.get("aspect_ratio", "16:9")
    prompt = values.get("prompt") or values.get("text") or values.get("shot_1_prompt") or ""
    images = tuple(
        (f.name, values[f.name]) for f in endpoint.fields if f.kind == "url" and f.name in values
    )
    return Generation(
        endpoint=endpoint.path,
        email=email or None,
        prompt=prompt,
        negative_prompt=values.get("negative_prompt", ""),
        images=images,
        aspect_ratio=ratio if ratio != "auto" else "16:9",
        image_count=int(values.get("imageCount", 1)),
        duration=duration,
        model_name=str(values.get("model_name") or values.get("omni_version") or ""),
        mode=str(values.get("mode", "std")),
        enable_audio=bool(values.get("enable_audio", False)),
        max_jobs=values.get("maxJobs"),
        reply_url=values.get("replyUrl"),
        reply_ref=values.get("replyRef"),
        content=endpoint.content,
        task_type=endpoint.task_type,
        values=values,
    )
