"""`GenerationRequest`: the one validator, the one body builder and `from_wire`, for all types.

Every request class only declares fields (see `fields`); this base class checks them when
an object is built, turns them into the JSON body (`to_wire`) and back (`from_wire`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeVar

import attrs

from ..config import MAX_JOBS_RANGE, default_deadline
from ..errors import RequestValidationError
from .fields import (
    FILE,
    FILES,
    IDS,
    LIST_KINDS,
    SHOTS,
    TEXT,
    Spec,
    check_range,
    check_text,
    check_value,
    is_set,
    spec_of,
)
from .media import ImageSource, describe, fail, is_remote, is_url

R = TypeVar("R", bound="GenerationRequest")

#: The shared fields' wire names, sent only where the endpoint lists them.
SHARED_WIRE: Final = {
    "max_jobs": "maxJobs",
    "reply_url": "replyUrl",
    "reply_ref": "replyRef",
    "email": "email",
}
_MAX_JSON_DEPTH: Final = 32
_FIRST: Final = (TEXT, FILE, FILES)


def _frozen_mapping(value: object) -> Any:
    if value is None:
        return {}
    # Anything but a mapping is kept as is, for the check to reject by name.
    return dict(value) if isinstance(value, Mapping) else value


def _check_json(path: str, value: Any, depth: int = 0) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise fail("extra", f"{path}: nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise fail("extra", f"{path}: contains a lone surrogate (not valid text)") from None
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail("extra", f"{path}: {value!r} is not a JSON number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(f"{path}[{i}]", item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise fail("extra", f"{path}: key {key!r} is not a string")
            _check_json(f"{path}.{key}", item, depth + 1)
        return
    raise fail("extra", f"{path}: a {type(value).__name__} is not a JSON value")


_PLANS: dict[type, tuple[tuple[str, Spec], ...]] = {}


def plan(cls: type[GenerationRequest]) -> tuple[tuple[str, Spec], ...]:
    """(Python name, Spec) of each body field of a request class, worked out once."""
    known = _PLANS.get(cls)
    if known is None:
        specs = ((f.name, spec_of(f)) for f in attrs.fields(cls))
        known = _PLANS[cls] = tuple((name, spec) for name, spec in specs if spec is not None)
    return known


@attrs.frozen(kw_only=True)
class GenerationRequest:
    """What every generation request has: account, per-request maxJobs, callbacks, extras.

    ``max_jobs`` (1-50) caps concurrent jobs; ``reply_url`` / ``reply_ref`` ask for a
    callback; ``email`` picks the account; ``extra`` maps wire names to values sent as
    given (newer fields or values): JSON values only, never a name a keyword also sets.
    Where the endpoint does not list ``maxJobs`` / ``replyUrl`` / ``replyRef``
    (``callbacks`` is False), they are kept for the client but not sent.
    """

    endpoint: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: Whether the endpoint lists maxJobs, replyUrl and replyRef.
    callbacks: ClassVar[bool] = True
    max_jobs_range: ClassVar[tuple[int, int]] = MAX_JOBS_RANGE
    #: Field groups of which exactly one must be given.
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: (count, field named in the error, fields, message): at least count inputs in all.
    at_least: ClassVar[tuple[tuple[int, str, tuple[str, ...], str], ...]] = ()
    #: (field, group): when the field is set (and not False), one of the group must be.
    needs: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    #: A rough run time on the real service, in seconds.
    base_seconds: ClassVar[float] = 60.0
    #: The Python names of every file input field (image, video or audio).
    image_fields: ClassVar[tuple[str, ...]] = ()

    max_jobs: int | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    email: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _PLANS.pop(cls, None)

    def __attrs_post_init__(self) -> None:
        # Texts and files first, then the group rules ("at least two images"), then the
        # rest: the order in which the seed endpoints always reported problems.
        self._check_fields(first=True)
        self._check_groups()
        self._check_fields(first=False)
        self._check_shared()
        self._check_extra()

    # -- the one validator ----------------------------------------------------------------

    def _check_fields(self, *, first: bool) -> None:
        for name, spec in plan(type(self)):
            if (spec.kind in _FIRST) is not first:
                continue
            value = getattr(self, name)
            if not is_set(value):
                if spec.required and not any(c.holds(self) for c in spec.optional_when):
                    raise fail(name, spec.required_message or "is required")
                continue
            check_value(self, name, spec, value)

    def _check_groups(self) -> None:
        for group in self.one_of:
            given = [n for n in group if is_set(getattr(self, n))]
            if len(given) != 1:
                names = " or ".join(group)
                got = ", ".join(given) if given else "none"
                raise fail(group[0], f"give exactly one of {names}; got {got}")
        for count, named, group, message in self.at_least:
            found = 0
            for n in group:
                value = getattr(self, n)
                found += len(value) if isinstance(value, tuple) else int(value is not None)
            if found < count:
                raise fail(named, f"{message}; got {found}")
        for name, group in self.needs:
            if getattr(self, name) not in (None, False, ()) and not any(
                is_set(getattr(self, n)) for n in group
            ):
                raise fail(name, f"needs {' or '.join(group)}")

    def _check_shared(self) -> None:
        low, high = self.max_jobs_range
        if self.max_jobs is not None:
            check_range("max_jobs", self.max_jobs, low, high, None, whole=True)
        if self.reply_url is not None and not is_url(self.reply_url):
            raise fail("reply_url", f"must be an http(s) URL, got {self.reply_url!r}")
        # Users call these without a type checker: check the types the annotations promise.
        reply_ref: object = self.reply_ref
        email: object = self.email
        if reply_ref is not None:
            check_text("reply_ref", reply_ref, None, False)
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise fail("email", f"must be an account e-mail address, got {email!r}")

    def _check_extra(self) -> None:
        extra: object = self.extra
        if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
            raise fail("extra", "must be a mapping of wire field names (strings) to values")
        if not extra:
            return
        for key, value in extra.items():
            _check_json(key, value)
        clash = sorted(self._body(checked=True).keys() & extra.keys())
        if clash:
            # extra adds fields or replaces a value only where no keyword set it: never both.
            raise fail("extra", f"{', '.join(clash)} also set by a keyword argument; give it once")

    # -- the one body builder -------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The exact JSON body: wire names, nothing unset, ``extra`` last.

        Local files and bytes must have been uploaded first (`with_uploaded`), else a
        `RequestValidationError` names the field.
        """
        body = self._body(checked=False)
        body.update(self.extra)
        return body

    def _body(self, *, checked: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, wire in SHARED_WIRE.items():
            value = getattr(self, name)
            if value is not None and (self.callbacks or name == "email"):
                body[wire] = value
        for name, spec in plan(type(self)):
            value = getattr(self, name)
            if not is_set(value):
                continue
            if spec.kind == FILE:
                if not checked:
                    _check_uploaded(name, value)
                body[spec.wire] = value
            elif spec.kind == SHOTS:
                for i, (prompt, seconds) in enumerate(value, start=1):
                    body[f"shot_{i}_prompt"] = prompt
                    body[f"shot_{i}_duration"] = seconds
            elif spec.kind in LIST_KINDS:
                for i, (wire, item) in enumerate(
                    zip(spec.wire_names(len(value)), value, strict=True)
                ):
                    if spec.kind == FILES and not checked:
                        _check_uploaded(f"{name}[{i}]", item)
                    body[wire] = item
            else:
                body[spec.wire] = str(value) if spec.as_text else value
        return body

    @classmethod
    def from_wire(cls: type[R], body: Mapping[str, Any]) -> R:
        """Build (and validate) a request from a JSON body with wire names.

        A name the endpoint does not have is a `RequestValidationError` unless it is given
        in the body's ``extra`` mapping (which is passed on as ``extra``).
        """
        if not isinstance(body, Mapping):
            raise fail("body", f"must be a mapping of wire names, got {type(body).__name__}")
        data = dict(body)
        extra = data.pop("extra", None) or {}
        if not isinstance(extra, Mapping):
            raise fail("extra", "must be a mapping of wire field names (strings) to values")
        kwargs: dict[str, Any] = {"extra": extra}
        lists: dict[str, dict[int, Any]] = {}
        shared = {wire: name for name, wire in SHARED_WIRE.items()}
        singles = {spec.wire: name for name, spec in plan(cls) if spec.kind not in LIST_KINDS}
        patterns = _patterns(cls)
        for key, value in data.items():
            if key in extra:
                continue
            if key in shared:
                kwargs[shared[key]] = value
            elif key in singles:
                kwargs[singles[key]] = value
            else:
                slot = _match(patterns, key)
                if slot is None:
                    raise fail(
                        key,
                        f"unknown field for {cls.endpoint}; pass newer fields in extra",
                    )
                name, index, part = slot
                lists.setdefault(f"{name}/{part}", {})[index] = value
        for key, items in lists.items():
            name, part = key.split("/")
            if part == "item":
                kwargs[name] = [items[i] for i in sorted(items)]
            else:
                # A shot with only one of its two names is kept half-empty: the check
                # then names it, instead of the shot silently disappearing.
                prompts = lists.get(f"{name}/prompt", {})
                seconds = lists.get(f"{name}/duration", {})
                numbers = sorted(prompts.keys() | seconds.keys())
                kwargs[name] = [(prompts.get(i), seconds.get(i)) for i in numbers]
        return cls(**kwargs)

    # -- file inputs ----------------------------------------------------------------------

    def file_inputs(self) -> dict[str, ImageSource]:
        """Every file input given, keyed by its Python field path (``subject_images[1]``)."""
        found: dict[str, ImageSource] = {}
        for name, spec in plan(type(self)):
            value = getattr(self, name)
            if spec.kind == FILES:
                found.update({f"{name}[{i}]": v for i, v in enumerate(value)})
            elif spec.kind == FILE and value is not None:
                found[name] = value
        return found

    def has_local_files(self) -> bool:
        """Whether any file input is a local file or bytes (uploaded before the POST)."""
        return any(not is_remote(v) for v in self.file_inputs().values())

    def with_uploaded(self: R, urls: Mapping[str, str]) -> R:
        """A copy with some inputs (by field path, as in `file_inputs`) replaced by URLs."""
        changes: dict[str, Any] = {}
        for name, spec in plan(type(self)):
            value = getattr(self, name)
            if spec.kind == FILES:
                changes[name] = tuple(urls.get(f"{name}[{i}]", v) for i, v in enumerate(value))
            elif spec.kind == FILE and name in urls:
                changes[name] = urls[name]
        return attrs.evolve(self, **changes)

    def with_reply_ref(self: R, tag: str) -> R:
        """A copy with ``reply_ref`` set to ``tag`` (checked like the keyword); the rest,
        checked when this request was made, is not checked again."""
        copy = object.__new__(type(self))
        for field in attrs.fields(type(self)):
            object.__setattr__(copy, field.name, getattr(self, field.name))
        object.__setattr__(copy, "reply_ref", tag)
        copy._check_shared()  # the tag, as the keyword is checked
        copy._check_extra()  # a replyRef in extra would be given twice
        return copy

    #: Older names of the three above, kept for callers.
    image_inputs = file_inputs
    has_local_images = has_local_files
    with_image_urls = with_uploaded

    @property
    def expected_seconds(self) -> float:
        """A rough estimate of the real service's run time, used for ordering and deadlines."""
        return self.base_seconds

    @property
    def default_timeout(self) -> float:
        """How long a waiter waits for this job by default, in seconds (generous)."""
        return default_deadline(self.kind, self.expected_seconds)


def _patterns(cls: type[GenerationRequest]) -> list[tuple[re.Pattern[str], str, str]]:
    found = []
    for name, spec in plan(cls):
        if spec.kind == SHOTS:
            found.append((re.compile(r"shot_(\d+)_(prompt|duration)\Z"), name, ""))
        elif spec.kind in (FILES, IDS):
            head, _, tail = spec.wire.partition("{}")
            found.append(
                (re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z"), name, "item")
            )
    return found


def _match(
    patterns: list[tuple[re.Pattern[str], str, str]], key: str
) -> tuple[str, int, str] | None:
    for pattern, name, part in patterns:
        hit = pattern.match(key)
        if hit:
            return name, int(hit.group(1)), part or hit.group(2)
    return None


def _check_uploaded(path: str, source: Any) -> None:
    if not is_remote(source):
        raise RequestValidationError(
            f"{path}: {describe(source)} must be uploaded first; "
            "KlingClient.submit does this for you",
            field=path,
        )


#: endpoint -> request class, filled by `register`; read it as ``REQUEST_TYPES``.
REGISTRY: dict[str, type[GenerationRequest]] = {}
T = TypeVar("T", bound=type[GenerationRequest])


def register(cls: T) -> T:
    """Record a finished request class: its file fields and its endpoint in the registry."""
    cls.image_fields = tuple(n for n, s in plan(cls) if s.kind in (FILE, FILES))
    REGISTRY[cls.endpoint] = cls
    return cls
