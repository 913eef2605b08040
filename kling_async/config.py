"""Every policy and default of the client, in one place.

- `ClientConfig`: timeouts, connection limits, the retry and poll policies, safety switches.
- `RetryPolicy` / `PollPolicy`: how requests are retried and how waiters poll.
- `UNSET`: "not given, use the default", as opposed to ``None``, which means "no limit".
- Named defaults: `DEFAULT_CONFIG`, `DEFAULT_RETRY`, `DEFAULT_POLL`, `DEFAULT_BASE_URL`,
  `DEFAULT_IMAGE_TIMEOUT`, `DEFAULT_VIDEO_TIMEOUT`, `MAX_JOBS_RANGE`, and `default_deadline`,
  the one rule for how long a job is waited for when no ``timeout`` is given.
- The test switches: `set_time_scale` / `fast_mode` shrink every client wait; the
  environment variable `TIME_SCALE_ENV` sets the scale a process starts with (for tests
  that run the CLI or a script in a subprocess).

Every option is validated when it is built: a negative or NaN time, a zero count or a wrong
type is a `ConfigurationError` (also a ``ValueError``) naming the option.
Vary a policy with ``attrs.evolve(DEFAULT_CONFIG, request_timeout=30)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import attrs

from ._version import __version__
from .errors import ConfigurationError

__all__ = [
    "BASE_URL_ENV",
    "DEBUG_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG",
    "DEFAULT_IMAGE_TIMEOUT",
    "DEFAULT_MAX_ANSWER_BYTES",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_VIDEO_TIMEOUT",
    "MAX_JOBS_RANGE",
    "SLOTS_ENV",
    "TIME_SCALE_ENV",
    "TOKEN_ENV",
    "UNSET",
    "ClientConfig",
    "PollPolicy",
    "RetryPolicy",
    "Unset",
    "check_max_jobs",
    "default_deadline",
    "delay_scale",
    "fast_mode",
    "scaled",
    "set_time_scale",
    "sleep_scaled",
]

#: The service's base URL.
DEFAULT_BASE_URL: Final = "https://api.useapi.net/v1/kling"
#: The environment variable that holds the API token when ``token=`` is not given.
TOKEN_ENV: Final = "USEAPI_TOKEN"  # noqa: S105 - the variable's name, not a secret
#: The environment variable that overrides `DEFAULT_BASE_URL` when ``base_url=`` is not given.
BASE_URL_ENV: Final = "KLING_BASE_URL"
#: Set this environment variable to 1 to turn on the package's debug log (logger ``kling_async``).
DEBUG_ENV: Final = "KLING_ASYNC_DEBUG"
#: The environment variable naming the shared job slots (``redis://...``) when ``slots=``
#: is not given; empty or unset: in-process slots.
SLOTS_ENV: Final = "KLING_SLOTS"
#: The API's bounds for an account's maxJobs (and a request's ``max_jobs``).
MAX_JOBS_RANGE: Final = (1, 50)

#: Default deadline for an image or audio task: real KOLORS jobs take about half a minute,
#: speech (``tts/create``, the one audio kind) less.
DEFAULT_IMAGE_TIMEOUT: Final = 900.0
#: Default deadline for a video task (and for a task of unknown kind): pro, 10 s and v3
#: videos take several minutes, plus queueing.
DEFAULT_VIDEO_TIMEOUT: Final = 2400.0


class Unset:
    """The type of `UNSET`: an argument that was not given (use the default).

    ``None`` means "no limit" where an option accepts it; `UNSET` means "not given".
    """

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        return "UNSET"


#: "Not given": use the default (as opposed to None, which means "no limit").
UNSET: Final = Unset()


def default_deadline(kind: str | None, expected_seconds: float | None = None) -> float:
    """How long a job is waited for when no ``timeout`` is given, in seconds.

    ``kind`` is the job's content ("image", "video", "audio") or the task's wire ``type``
    (``m2v_...`` is a video); unknown or None gets the longest, a video's. A job expected to
    run long (``expected_seconds``, the request's own estimate) gets six times that, if more.
    """
    text = (kind or "").lower()
    video = not text or "m2v" in text or "video" in text
    base = DEFAULT_VIDEO_TIMEOUT if video else DEFAULT_IMAGE_TIMEOUT
    if expected_seconds is not None and expected_seconds > 0:
        return max(base, 6 * expected_seconds)
    return base


def check_max_jobs(value: object, name: str = "max_jobs") -> int | None:
    """``value`` as a maxJobs (an int in `MAX_JOBS_RANGE`, or None), else `ConfigurationError`."""
    low, high = MAX_JOBS_RANGE
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{name}: must be an integer from {low} to {high}, got {value!r}")
    return value


# -- validators -------------------------------------------------------------------------


def _number(
    *, minimum: float = 0.0, inclusive: bool = False, optional: bool = False
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: a finite number above ``minimum`` (or None when ``optional``)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        name = f"{type(instance).__name__}.{attribute.name}"
        ok_type = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok_type or math.isnan(value) or math.isinf(value):
            none = " or None" if optional else ""
            raise ConfigurationError(f"{name}: must be a finite number{none}, got {value!r}")
        if value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise ConfigurationError(f"{name}: must be {bound}, got {value!r}")

    return check


def _count(minimum: int = 1) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(
                f"{type(instance).__name__}.{attribute.name}: must be an integer >= {minimum}, "
                f"got {value!r}"
            )

    return check


def _instance_of(cls: type) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, cls):
            raise ConfigurationError(
                f"{type(instance).__name__}.{attribute.name}: must be a {cls.__name__}, "
                f"got {type(value).__name__}"
            )

    return check


def _header_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name}: must be a string without line breaks"
        )


#: The largest API answer read (bytes): answers are a few KB of JSON.
DEFAULT_MAX_ANSWER_BYTES: Final = 8 << 20
#: The largest downloaded file per kind of content (bytes).
DEFAULT_MAX_DOWNLOAD_BYTES: Final[Mapping[str, int]] = {
    "image": 64 << 20,
    "video": 2 << 30,
    "audio": 256 << 20,
    "other": 2 << 30,
}


def _download_caps(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    name = f"{type(instance).__name__}.{attribute.name}"
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name}: must be a mapping of kind to bytes, got {value!r}")
    for kind, cap in value.items():
        if kind not in DEFAULT_MAX_DOWNLOAD_BYTES:
            raise ConfigurationError(
                f"{name}: unknown kind {kind!r}; one of " + ", ".join(DEFAULT_MAX_DOWNLOAD_BYTES)
            )
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigurationError(f"{name}[{kind!r}]: must be an integer >= 1, got {cap!r}")


# -- policies ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How requests are retried.

    ``max_tries`` counts calls (1 = no retry); ``max_time`` bounds the whole retrying in
    seconds (None: no time bound, tries still bound it). Waits grow as
    ``base * 2**n`` up to ``max_delay`` with full jitter; a Retry-After is used as
    given, up to ``max_retry_after``. ``busy_tries`` bounds the retries of a submission
    answered 429 (account busy) separately: useapi.net's own scripts wait about 10 s,
    6 times.
    """

    max_tries: int = attrs.field(default=6, validator=_count())
    max_time: float | None = attrs.field(default=120.0, validator=_number(optional=True))
    base: float = attrs.field(default=0.5, validator=_number())
    max_delay: float = attrs.field(default=20.0, validator=_number())
    max_retry_after: float = attrs.field(default=60.0, validator=_number())
    busy_tries: int = attrs.field(default=30, validator=_count())
    busy_max_time: float | None = attrs.field(default=900.0, validator=_number(optional=True))


#: The client's default retry policy.
DEFAULT_RETRY: Final = RetryPolicy()


def _jitter(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _number(inclusive=True)(instance, attribute, value)
    if value >= 1:
        raise ConfigurationError(f"PollPolicy.{attribute.name}: must be < 1, got {value!r}")


def _growth(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _number(minimum=1.0, inclusive=True)(instance, attribute, value)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How waiters poll.

    ``interval``: first delay when the service gives no ETA (seconds). ``growth``: factor
    between delays. ``max_interval``: the longest delay between polls. ``eta_margin``:
    fraction added to the service's ETA (plus ``eta_slack`` seconds) when timing a poll
    from it. ``jitter``: +- fraction applied to each grown delay.
    The ETA poll goes out right at the estimate (no margin, ``eta_slack`` only): any
    margin is dead time added to every job, a slot idle for that long, while an estimate
    that runs late costs one more poll whose answer carries a fresh ETA.
    ``max_polls_per_second``: the client-wide cap (None: no cap). ``push_fallback``: in
    push mode, the first wait for a callback before polling anyway (it grows like polls).
    """

    interval: float = attrs.field(default=1.0, validator=_number())
    growth: float = attrs.field(default=1.25, validator=_growth)
    max_interval: float = attrs.field(default=30.0, validator=_number())
    eta_margin: float = attrs.field(default=0.0, validator=_number(inclusive=True))
    eta_slack: float = attrs.field(default=0.02, validator=_number(inclusive=True))
    jitter: float = attrs.field(default=0.1, validator=_jitter)
    max_polls_per_second: float | None = attrs.field(default=20.0, validator=_number(optional=True))
    push_fallback: float = attrs.field(default=30.0, validator=_number())
    #: The shortest time between two polls of one task not timed by a plausible ETA
    #: (seconds, scaled by the test switch): see `kling_async.polling`.
    min_interval: float = attrs.field(default=5.0, validator=_number(inclusive=True))
    #: Seconds the poll due at (or just before) a wait's deadline may take to answer.
    deadline_grace: float = attrs.field(default=10.0, validator=_number(inclusive=True))


#: The default polling policy.
DEFAULT_POLL: Final = PollPolicy()


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Timeouts (seconds), connection limits, retry and poll policies, safety switches.

    ``request_timeout`` bounds one API call (a few KB of JSON each way),
    ``transfer_timeout`` one upload or download and ``read_timeout`` a silence on the socket
    during an upload or download (not during API calls: ``request_timeout`` bounds those
    whole). ``recovery_window`` is how far before a failed POST the task list is searched
    (clock skew), ``recovery_confirm_delay`` the pause before the second look: the time a
    server may still spend on a POST the client gave up on (servers usually finish a request
    after its client left), so a job is sent again only when it has not shown up by then.
    ``allow_insecure`` permits a plain-http base URL on a host other than loopback (the
    token would travel in clear text).

    ``max_answer_bytes`` caps one API answer (they are a few KB; a larger one is a
    `PayloadError`, never read whole). ``max_download_bytes`` caps one downloaded file per
    kind of content (``image``, ``video``, ``audio``, ``other``): a larger file is stopped,
    its ``.part`` removed, and `PayloadError` raised.
    """

    connect_timeout: float = attrs.field(default=10.0, validator=_number())
    read_timeout: float = attrs.field(default=60.0, validator=_number())
    request_timeout: float = attrs.field(default=120.0, validator=_number())
    transfer_timeout: float = attrs.field(default=600.0, validator=_number())
    connection_limit: int = attrs.field(default=100, validator=_count())
    retry: RetryPolicy = attrs.field(default=DEFAULT_RETRY, validator=_instance_of(RetryPolicy))
    poll: PollPolicy = attrs.field(default=DEFAULT_POLL, validator=_instance_of(PollPolicy))
    recovery_window: float = attrs.field(default=120.0, validator=_number(inclusive=True))
    recovery_confirm_delay: float = attrs.field(default=30.0, validator=_number(inclusive=True))
    allow_insecure: bool = attrs.field(default=False, validator=_instance_of(bool))
    user_agent: str = attrs.field(default=f"kling-async/{__version__}", validator=_header_text)
    max_answer_bytes: int = attrs.field(default=DEFAULT_MAX_ANSWER_BYTES, validator=_count())
    max_download_bytes: Mapping[str, int] = attrs.field(
        factory=lambda: dict(DEFAULT_MAX_DOWNLOAD_BYTES), validator=_download_caps
    )


#: The default configuration; vary it with ``attrs.evolve(DEFAULT_CONFIG, ...)``.
DEFAULT_CONFIG: Final = ClientConfig()


# -- the test switch --------------------------------------------------------------------

#: The environment variable holding the wait multiplier a process starts with (a number
#: >= 0, as for `set_time_scale`; unset or empty: 1, real waits). A test switch: it lets a
#: test suite shrink the waits of a CLI or script it runs in a subprocess against the
#: simulator. Read at the first wait (importing the package reads no environment), unless
#: `set_time_scale` came first; a bad value is a `ConfigurationError` naming the variable.
TIME_SCALE_ENV: Final = "KLING_ASYNC_TIME_SCALE"

_time_scale: float | None = None  # None: TIME_SCALE_ENV not read yet


def _scale_from_env() -> float:
    text = os.environ.get(TIME_SCALE_ENV, "").strip()
    try:
        value = float(text) if text else 1.0
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise ConfigurationError(f"{TIME_SCALE_ENV} must be a number >= 0, got {text!r}")
    return value


def set_time_scale(scale: float) -> float:
    """Multiply every client wait (retries, polls) by ``scale``; 0 makes them all zero.

    Meant for test suites that run against the simulator (a subprocess starts with the
    scale in `TIME_SCALE_ENV`). Returns the previous scale.
    """
    global _time_scale  # one process-wide test switch, by design
    given: object = scale  # callers without a type checker pass other things too
    if isinstance(given, bool) or not isinstance(given, int | float) or not given >= 0:
        raise ConfigurationError(f"scale must be a number >= 0, got {scale!r}")
    previous, _time_scale = (
        _scale_from_env() if _time_scale is None else _time_scale,
        float(scale),
    )
    return previous


def delay_scale() -> float:
    """The current wait multiplier (1.0 unless a test set it)."""
    scale = _time_scale
    if scale is None:  # the first wait of the process
        scale = _scale_from_env()
        set_time_scale(scale)
    return scale


def scaled(seconds: float) -> float:
    """``seconds`` times the current wait multiplier."""
    scale = _time_scale
    return seconds * (delay_scale() if scale is None else scale)


async def sleep_scaled(seconds: float) -> None:
    """``asyncio.sleep`` of ``seconds`` times the test-mode multiplier."""
    await asyncio.sleep(scaled(seconds))


@contextlib.contextmanager
def fast_mode(scale: float = 0.0) -> Iterator[None]:
    """Zero (or shrink) every poll and retry wait inside the block::

    with fast_mode():
        await kling.kolors_elements(...)

    The service's own ETA is still honoured (it is the service's clock), deadlines are
    not shrunk, and retries of an "account busy" (429) submission become instant too: a
    job submitted while the server still runs jobs the client let go of (cancelled or
    timed out) fails fast with `RateLimitError` instead of waiting for a slot.
    """
    previous = set_time_scale(scale)
    try:
        yield
    finally:
        set_time_scale(previous)
