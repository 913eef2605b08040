"""`WireModel`: ``to_dict`` / ``to_json`` / ``from_dict`` for the response payloads.

The payload classes of `kling_async.models` (and the catalog's) inherit it. It reads only
attrs fields and their wire-name metadata (``metadata["wire"]``, else the camelCase of the
Python name: the rule the converter applies too), so it sits below the converter in the
import order. ``to_dict`` gives every field under its wire name, nulls kept (nothing known
is lost); ``from_dict`` reads that back, so ``Cls.from_dict(obj.to_dict()) == obj``.

``from_dict`` is the inverse of ``to_dict``, for dicts this package wrote (a stored
result, a cached answer): values are taken as they are. Read a raw answer of the service
with `kling_async.convert.structure`, which tolerates wrong types and nulls.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs

from .errors import PayloadError

__all__ = ["WIRE", "WireModel", "wire_name"]

#: The metadata key of a field whose wire name is not the camelCase of its Python name.
WIRE: Final = "wire"

M = TypeVar("M", bound="WireModel")


def wire_name(field: attrs.Attribute[Any]) -> str:
    """The wire name of a payload field: its ``wire`` metadata, else its camelCase name."""
    explicit = field.metadata.get(WIRE)
    if explicit:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _dump(value: Any) -> Any:
    if isinstance(value, WireModel):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _model_of(hint: Any) -> type[WireModel] | None:
    """The payload class inside ``X | None`` or ``tuple[X, ...]`` (None: a plain value)."""
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type) and issubclass(arg, WireModel):
            return arg
    return None


def _load(hint: Any, value: Any, where: str) -> Any:
    model = _model_of(hint)
    if typing.get_origin(hint) is tuple:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise PayloadError(f"{where}: expected a list, got {type(value).__name__}")
        if model is None:
            return tuple(value)
        return tuple(model.from_dict(v) for v in value)
    if model is not None and value is not None:
        return model.from_dict(value)
    return value


class WireModel:
    """The wire-name round trip of a payload class (an attrs class)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Every field under its wire name (``status_name``, ``taskInfo``...), nulls kept;
        plain JSON types only (lists for tuples)."""
        fields = attrs.fields(type(self))  # type: ignore[arg-type]  # an attrs class by contract
        return {wire_name(f): _dump(getattr(self, f.name)) for f in fields}

    def to_json(self, **dumps: Any) -> str:
        """`to_dict` as JSON text (``dumps``: options of `json.dumps`, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **dumps)

    @classmethod
    def from_dict(cls: type[M], data: Mapping[str, Any]) -> M:
        """The object `to_dict` described: wire names in, values as given; missing keys
        take the defaults, unknown keys are ignored. `PayloadError` if ``data`` (or a
        nested object) is not a mapping."""
        if not isinstance(data, Mapping):
            raise PayloadError(f"{cls.__name__}.from_dict: expected a mapping, got {data!r:.60}")
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: _load(hints[f.name], data[key], f"{cls.__name__}.{key}")
            for f in attrs.fields(cls)  # type: ignore[arg-type]  # an attrs class by contract
            if (key := wire_name(f)) in data
        }
        return cls(**kwargs)
