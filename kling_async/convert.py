"""The one cattrs converter: every wire name <-> Python name mapping, both directions.

- Payloads (`kling_async.models`): structured tolerantly (unknown fields ignored, missing
  fields and nulls become the defaults, a scalar of the wrong type becomes None rather
  than an error) and unstructured back to the same wire names.
- Requests (`kling_async.requests`): unstructured to the exact documented JSON bodies;
  fields not given are left out, never sent as null; ``extra`` is added as given, and may
  not repeat a field a keyword already set.

Use `structure_task` / `request_body` (or `CONVERTER` itself); never cattrs' global
converter. Hooks are generated once per class and cached by cattrs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import models
from .errors import PayloadError
from .models import WIRE, TaskResponse
from .requests import GenerationRequest

__all__ = [
    "CONVERTER",
    "PayloadError",
    "make_converter",
    "request_body",
    "structure",
    "structure_task",
    "unstructure",
    "wire_name",
]

T = TypeVar("T")

_MODEL_CLASSES: Final = (
    models.Resource,
    models.Work,
    models.TaskInput,
    models.TaskArgument,
    models.TaskInfo,
    models.Task,
    models.Limitation,
    models.Point,
    models.UserPoints,
    models.Ticket,
    models.UserTickets,
    models.TaskResponse,
    models.AssetUpload,
    models.Account,
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_name(field: attrs.Attribute[Any]) -> str:
    """The wire name of a model field: its ``wire`` metadata, else its camelCase name."""
    explicit = field.metadata.get(WIRE)
    if explicit:
        return str(explicit)
    return _camel(field.name)


def _tolerant_int(value: Any, _: Any) -> int | None:
    if type(value) is int:  # the common case first: these hooks run for every field
        return value
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):  # "abc", "nan", "1e400"
            return None
    except OverflowError:  # float("inf") from a lenient JSON parser
        return None


def _tolerant_float(value: Any, _: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _tolerant_bool(value: Any, _: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no", ""):
            return False
        return None
    if isinstance(value, int | float):
        return bool(value)
    return None


def _tolerant_str(value: Any, _: Any) -> str | None:
    if type(value) is str or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return None


def _tolerant_dict(value: Any, _: Any) -> dict[str, Any] | None:
    # Free-form objects (extraArgs, session): PHP-style back ends send [] for an empty one.
    return dict(value) if isinstance(value, Mapping) else None


def _tolerant_list(value: Any, _: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list | tuple) else None


def _structure_model_factory(conv: cattrs.Converter) -> Callable[[type[Any]], Any]:
    """Structure hooks for the payload models: cattrs' own generated hooks with the wire
    renames; anything but a JSON object reads as None."""

    def factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        renames: dict[str, Any] = {f.name: override(rename=wire_name(f)) for f in attrs.fields(cls)}
        generated = make_dict_structure_fn(cls, conv, **renames)

        def structure(data: Any, _: Any = None) -> Any:
            # A null list reads as () through the tuple hook; other fields default to None.
            if data.__class__ is dict or isinstance(data, Mapping):  # dict: no ABC check
                return generated(data, cls)
            return None

        return structure

    return factory


def _structure_tuple_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(typ: Any) -> Callable[[Any, Any], Any]:
        item = typ.__args__[0]
        hook = conv.get_structure_hook(item)  # looked up once, not per element

        def structure(data: Any, _: Any) -> tuple[Any, ...]:
            if not data or (data.__class__ is not list and not isinstance(data, list | tuple)):
                return ()
            found = []
            for x in data:  # a loop, not comprehensions: no function call each
                y = hook(x, item)
                if y is not None:  # an element that is not an object at all is dropped
                    found.append(y)
            return tuple(found)

        return structure

    return factory


def _is_model_tuple(typ: Any) -> bool:
    args: tuple[Any, ...] = getattr(typ, "__args__", ())
    return (
        getattr(typ, "__origin__", None) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and args[0] in _MODEL_CLASSES
    )


def _is_optional_model(typ: Any) -> bool:
    args: tuple[Any, ...] = getattr(typ, "__args__", ())
    return len(args) == 2 and args[1] is type(None) and args[0] in _MODEL_CLASSES


def _structure_optional_model_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    # The model hook already answers None for a null (or any non-object): use it as is,
    # rather than cattrs' generic Optional hook, which dispatches again on every call.
    def factory(typ: Any) -> Any:
        return conv.get_structure_hook(typ.__args__[0])

    return factory


def _unstructure_model_factory(conv: cattrs.Converter) -> Callable[[type[Any]], Any]:
    def factory(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        options: dict[str, Any] = {f.name: override(rename=wire_name(f)) for f in attrs.fields(cls)}
        options["_cattrs_omit_if_default"] = False
        fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, conv, **options)
        return fn

    return factory


def _request_body(request: GenerationRequest) -> dict[str, Any]:
    return request.to_wire()


def make_converter() -> cattrs.Converter:
    """Build the converter: tolerant model hooks, wire renames, request bodies."""
    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook(int | None, _tolerant_int)
    conv.register_structure_hook(float | None, _tolerant_float)
    conv.register_structure_hook(bool | None, _tolerant_bool)
    conv.register_structure_hook(str | None, _tolerant_str)
    conv.register_structure_hook(dict[str, Any] | None, _tolerant_dict)
    conv.register_structure_hook(list[Any] | None, _tolerant_list)
    conv.register_structure_hook_factory(_is_model_tuple, _structure_tuple_factory(conv))
    conv.register_structure_hook_factory(
        _is_optional_model, _structure_optional_model_factory(conv)
    )
    conv.register_structure_hook_factory(
        lambda t: t in _MODEL_CLASSES, _structure_model_factory(conv)
    )
    conv.register_unstructure_hook_factory(
        lambda t: t in _MODEL_CLASSES, _unstructure_model_factory(conv)
    )
    # A request's body is its own `to_wire()` (the declarative layer owns its wire names).
    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, GenerationRequest), _request_body
    )
    return conv


#: The package's converter. Build your own with `make_converter` to customise.
CONVERTER: Final = make_converter()


def structure(data: Any, cls: type[T]) -> T:
    """Structure wire JSON into a model class, raising `PayloadError` if it cannot."""
    if data.__class__ is not dict and not isinstance(data, Mapping):  # dict: no ABC check
        raise PayloadError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    try:
        return CONVERTER.structure(data, cls)
    except (cattrs.BaseValidationError, AttributeError, TypeError, ValueError, KeyError) as exc:
        raise PayloadError(f"cannot read {cls.__name__} from the answer: {exc}") from exc


def structure_task(data: Any) -> TaskResponse:
    """Structure a task model (generation answer, GET /tasks/{id}, callback body)."""
    return structure(data, TaskResponse)


def unstructure(obj: Any) -> Any:
    """Wire JSON for a model (every known field, nulls kept) or a request body."""
    return CONVERTER.unstructure(obj)


def request_body(request: GenerationRequest) -> dict[str, Any]:
    """The exact JSON body of a request (`GenerationRequest.to_wire`: files must be URLs)."""
    return request.to_wire()
