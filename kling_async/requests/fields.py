"""Field kinds and their metadata: each request field declares its rules here, once.

A field of a request class is made by one of the factories below (`text`, `choice`,
`integer`, `number`, `flag`, `media`, `media_list`, `ident`, `ident_list`, `multi_shot`); the
factory stores a `Spec` in the attrs metadata under `SPEC`. The one validator
(`check_value` plus `check_rules`), the one body builder and the one CLI parser in this
package read only that metadata.

Model- or mode-specific rules are data too: `When` is a condition on another field (with
the documented default standing in for an unset value); ``only_when`` ("v3 only"),
``not_when`` ("not with multi-shot"), ``optional_when`` ("required unless multi-shot") and
`Alt` (other allowed values under a condition: "3-15 s with v3").
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, Final

import attrs

from .media import check_source, fail

SPEC: Final = "kling_async.spec"
MAX_TEXT: Final = 2500

TEXT, CHOICE, INT, FLOAT, BOOL, FILE, FILES, ID, IDS, SHOTS = (
    "text",
    "choice",
    "int",
    "float",
    "bool",
    "file",
    "files",
    "id",
    "ids",
    "shots",
)
#: Kinds whose Python value is a tuple sent as numbered wire names.
LIST_KINDS: Final = (FILES, IDS, SHOTS)


@attrs.frozen
class When:
    """A condition on another field: it has one of ``values`` (None: it is set at all).

    ``negate`` turns it into "has none of ``values``" (or "is not set").
    """

    field: str
    values: tuple[Any, ...] | None = None
    negate: bool = False

    def holds(self, req: Any) -> bool:
        """Whether the condition holds for request ``req`` (unset fields take their default)."""
        value = effective(req, self.field)
        hit = value not in (None, ()) if self.values is None else value in self.values
        return hit is not self.negate

    def describe(self) -> str:
        """The condition as words, for error messages and docstrings."""
        if self.values is None:
            return f"without {self.field}" if self.negate else f"with {self.field}"
        shown = " or ".join(repr(v) for v in self.values)
        return f"with {self.field} not {shown}" if self.negate else f"with {self.field} {shown}"


@attrs.frozen
class Alt:
    """Under every condition of ``when``, ``choices`` or ``low``..``high`` replace the usual."""

    when: tuple[When, ...]
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None


@attrs.frozen
class Spec:
    """What a field is on the wire and which values it takes (see the module docstring)."""

    kind: str
    wire: str
    required: bool = False
    default: Any = None
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    media: str = "image"
    first: int = 1
    max_count: int | None = None
    as_text: bool = False
    required_message: str | None = None
    optional_when: tuple[When, ...] = ()
    only_when: tuple[When, ...] = ()
    not_when: tuple[When, ...] = ()
    alts: tuple[Alt, ...] = ()

    def wire_names(self, count: int) -> list[str]:
        """The numbered wire names of a list field (``image_0``, ``subjectImage1`` ...)."""
        return [self.wire.format(i + self.first) for i in range(count)]


def spec_of(field: attrs.Attribute[Any]) -> Spec | None:
    """The `Spec` of a request field, or None for the shared non-body fields."""
    found = field.metadata.get(SPEC)
    return found if isinstance(found, Spec) else None


def effective(req: Any, name: str) -> Any:
    """A field's value, or its documented default when unset."""
    value = getattr(req, name)
    if value is None:
        defaults = _DEFAULTS.get(type(req))
        if defaults is None:
            fields = attrs.fields(type(req))
            defaults = _DEFAULTS[type(req)] = {
                f.name: spec.default for f in fields if (spec := spec_of(f)) is not None
            }
        return defaults.get(name)
    return value


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _tuple(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str | bytes | bytearray | os.PathLike) or not isinstance(value, Iterable):
        # A lone item where a list is expected cannot mean anything else; a wrong type is
        # then reported by the item check, naming the field.
        return (value,)
    return tuple(value)


def _tuple_or_none(value: Any) -> Any:
    return None if value is None else _tuple(value)


def _shot_tuple(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # rejected by the check, naming the field
    return tuple(tuple(s) if isinstance(s, list | tuple) else s for s in value)


def _digits(value: Any) -> Any:
    # The pages' examples send numbers as strings ("5"): accept those forms.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


def _field(spec: Spec, converter: Any = None) -> Any:
    return attrs.field(default=None, metadata={SPEC: spec}, converter=converter)


def text(wire: str, *, max_len: int | None = MAX_TEXT, **rules: Any) -> Any:
    """A string field, at most ``max_len`` characters (None: no documented limit)."""
    return _field(Spec(TEXT, wire, max_len=max_len, **rules))


def choice(wire: str, choices: tuple[Any, ...], **rules: Any) -> Any:
    """One of the documented ``choices`` (an enum on the wire)."""
    return _field(Spec(CHOICE, wire, choices=choices, **rules))


def integer(wire: str, low: int | None = None, high: int | None = None, **rules: Any) -> Any:
    """An integer from ``low`` to ``high``, or one of ``choices``; ``as_text`` sends "5"."""
    converter = _digits if rules.get("as_text") else None
    return _field(Spec(INT, wire, low=low, high=high, **rules), converter)


def number(wire: str, low: float, high: float, **rules: Any) -> Any:
    """A finite number (int or float) from ``low`` to ``high``."""
    return _field(Spec(FLOAT, wire, low=low, high=high, **rules))


def flag(wire: str, **rules: Any) -> Any:
    """A boolean."""
    return _field(Spec(BOOL, wire, **rules))


def media(wire: str, kind: str = "image", **rules: Any) -> Any:
    """One file input: an http(s) URL, a local path or bytes (uploaded before the POST)."""
    return _field(Spec(FILE, wire, media=kind, **rules))


def media_list(wire: str, first: int, max_count: int, kind: str = "image", **rules: Any) -> Any:
    """Up to ``max_count`` file inputs, sent as ``wire.format(first)``, ``first + 1`` ..."""
    spec = Spec(FILES, wire, first=first, max_count=max_count, media=kind, **rules)
    return attrs.field(default=(), metadata={SPEC: spec}, converter=_tuple)


def ident(wire: str, **rules: Any) -> Any:
    """An id the service gave out (task, work, element, avatar, speaker, effect name)."""
    return _field(Spec(ID, wire, **rules))


def ident_list(wire: str, first: int, max_count: int, **rules: Any) -> Any:
    """Up to ``max_count`` ids, sent as numbered wire names (``element_1`` ...)."""
    spec = Spec(IDS, wire, first=first, max_count=max_count, **rules)
    # None when unset (not ()), so that bodies built field by field leave it out.
    return attrs.field(default=None, metadata={SPEC: spec}, converter=_tuple_or_none)


def multi_shot(**rules: Any) -> Any:
    """Multi-shot: 2-6 ``(prompt, seconds)`` pairs, seconds summing to 3-15."""
    spec = Spec(SHOTS, "shot_{}_prompt", first=1, max_count=6, **rules)
    return attrs.field(default=(), metadata={SPEC: spec}, converter=_shot_tuple)


# -- checking one value ----------------------------------------------------------------------


def _allowed(low: float | None, high: float | None, choices: tuple[Any, ...] | None) -> str:
    if choices is not None:
        return " or ".join(str(c) for c in choices)
    if high is None:
        return f"of at least {low}"
    return f"from {low} to {high}"


def check_text(name: str, value: Any, max_len: int | None, required: bool) -> None:
    """A string of at most ``max_len`` characters, valid Unicode (no lone surrogate)."""
    if not isinstance(value, str):
        raise fail(name, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise fail(name, "is required and must not be empty")
    if max_len is not None and len(value) > max_len:
        raise fail(name, f"at most {max_len} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise fail(
            name, f"contains a lone surrogate at position {exc.start} (not valid Unicode text)"
        ) from None


def check_range(
    name: str,
    value: Any,
    low: float | None,
    high: float | None,
    choices: tuple[Any, ...] | None,
    *,
    whole: bool,
    prefix: str = "",
) -> None:
    """An int (``whole``) or finite number within ``low``..``high`` or among ``choices``."""
    allowed = _allowed(low, high, choices)
    wrong = isinstance(value, bool) or not isinstance(value, int if whole else int | float)
    if wrong or (isinstance(value, float) and not math.isfinite(value)):
        what = "an integer" if whole else "a number"
        raise fail(name, f"{prefix}must be {what} {allowed}, got {value!r}")
    if choices is not None:
        if value not in choices:
            raise fail(name, f"{prefix}{value!r} is not allowed; must be {allowed}")
    elif (low is not None and value < low) or (high is not None and value > high):
        raise fail(name, f"{prefix}must be {allowed}, got {value}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...], prefix: str = "") -> None:
    """One of ``choices``; newer values go in ``extra``."""
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise fail(
            name,
            f"{prefix}{value!r} is not allowed; one of {shown} (newer values: pass them in extra=)",
        )


def _check_id(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail(name, f"must be an id (a string or integer), got {type(value).__name__}")
    if isinstance(value, str):
        check_text(name, value, 200, True)


def _check_shots(name: str, value: Any, max_count: int) -> None:
    if not isinstance(value, tuple):
        raise fail(name, f"must be a list of (prompt, seconds) pairs, got {type(value).__name__}")
    if not 2 <= len(value) <= max_count:
        raise fail(name, f"multi-shot takes 2 to {max_count} shots, got {len(value)}")
    for i, shot in enumerate(value):
        if not isinstance(shot, tuple) or len(shot) != 2:
            raise fail(f"{name}[{i}]", f"must be a (prompt, seconds) pair, got {shot!r}")
        check_text(f"{name}[{i}]", shot[0], MAX_TEXT, True)
        check_range(f"{name}[{i}]", shot[1], 1, 15, None, whole=True, prefix="seconds ")
    total = sum(seconds for _, seconds in value)
    if not 3 <= total <= 15:
        raise fail(name, f"the shots' seconds must sum to 3-15, got {total}")


def is_set(value: Any) -> bool:
    """Whether a field value counts as given (None and empty lists do not)."""
    return value is not None and value != ()


def check_value(req: Any, name: str, spec: Spec, value: Any) -> None:
    """Check one set field's value against its kind and the conditions on other fields."""
    for cond in spec.only_when:
        if not cond.holds(req):
            raise fail(name, f"only {cond.describe()}")
    for cond in spec.not_when:
        if cond.holds(req):
            raise fail(name, f"not allowed {cond.describe()}")
    low, high, choices, prefix = spec.low, spec.high, spec.choices, ""
    for alt in spec.alts:
        if all(c.holds(req) for c in alt.when):
            low, high, choices = alt.low, alt.high, alt.choices
            prefix = " and ".join(c.describe() for c in alt.when) + ": "
    kind = spec.kind
    if kind == TEXT:
        check_text(name, value, spec.max_len, spec.required)
    elif kind == CHOICE:
        check_choice(name, value, choices or (), prefix)
    elif kind in (INT, FLOAT):
        check_range(name, value, low, high, choices, whole=kind == INT, prefix=prefix)
    elif kind == BOOL:
        if not isinstance(value, bool):
            raise fail(name, f"must be True or False, got {value!r}")
        if choices is not None and value not in choices:
            raise fail(name, f"{prefix}must be {_allowed(None, None, choices)}")
    elif kind == FILE:
        check_source(name, value, spec.media)
    elif kind in (FILES, IDS):
        if spec.max_count is not None and len(value) > spec.max_count:
            what = "files" if kind == FILES else "ids"
            what = "images" if spec.media == "image" and kind == FILES else what
            raise fail(name, f"at most {spec.max_count} {what}, got {len(value)}")
        for i, item in enumerate(value):
            if kind == FILES:
                check_source(f"{name}[{i}]", item, spec.media)
            else:
                _check_id(f"{name}[{i}]", item)
    elif kind == ID:
        _check_id(name, value)
    elif kind == SHOTS:
        _check_shots(name, value, spec.max_count or 6)
