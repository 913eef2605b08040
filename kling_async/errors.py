"""Exceptions raised by kling-async, and the one function that maps an HTTP answer to them.

The tree::

    KlingError
      ConfigurationError        the client cannot run as configured (no token, bad base URL,
                                a bad option); also a ValueError
      RequestValidationError    bad input caught before any request (also a ValueError)
      JobsFileError             bad lines of a batch jobs file, all listed (.problems); also a
                                ValueError
      JournalConflictError      the jobs file no longer matches the batch journal (.problems)
      PayloadError              a 2xx answer that cannot be read as the expected model
      APIError                  the server answered an error: .status .error .message .code .body
        BadRequestError         400
        AuthenticationError     401
        PaymentRequiredError    402 (and 412: upstream account out of credits)
        NotFoundError           404 (and 410)
        RateLimitError          429, .retry_after in seconds (None when not sent)
        ModerationError         500 (or 422) whose error text is a moderation verdict
        AccountError            596: the Kling account's session is broken
        ServerError             any other 5xx
      TransportError            connection failure or timeout after the retry budget
        SubmissionUnknownError  a POST that creates a job failed after it was sent: the job
                                may exist (.request, .email, .sent_at, .candidates)
      TaskFailedError           the task ended failed (.task holds the final response)
      TaskTimeoutError          waited past the deadline (.task_id, .last); also a TimeoutError.
                                The job may still run; wait on it again.

Every exception takes its message first and its context as keyword arguments, keeps only
plain data (never a live response or the token), and pickles.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import TaskResponse

__all__ = [
    "APIError",
    "AccountError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "JobsFileError",
    "JournalConflictError",
    "KlingError",
    "ModerationError",
    "NotFoundError",
    "PayloadError",
    "PaymentRequiredError",
    "RateLimitError",
    "RequestValidationError",
    "ServerError",
    "SubmissionUnknownError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "error_from_response",
    "is_moderation_text",
    "parse_retry_after",
]

#: Fragments of Kling's moderation verdicts (compared case-insensitively).
MODERATION_MARKERS = ("cm_ext", "community guidelines", "violate", "moderation")
#: The longest Retry-After we honour; a larger value is capped (and a date far ahead too).
MAX_RETRY_AFTER = 300.0
_BODY_EXCERPT = 200
_SCAN_LIMIT = 64 * 1024
_HTML_BLOCK = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[!/?a-zA-Z][^>]*>")


def _status_phrase(status: int, default: str | None = None) -> str:
    """The reason phrase of an HTTP status (``HTTP <status>`` when it has none)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}" if default is None else default


class KlingError(Exception):
    """Base class of every exception this package raises on purpose."""


class ConfigurationError(KlingError, ValueError):
    """The client cannot work as configured: no token, a bad base URL or option, an unknown
    account. The message names the option."""


class RequestValidationError(KlingError, ValueError):
    """A request was rejected before anything was sent.

    ``field`` names the offending field by its Python name (``subject_images[2]``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"field": self.field}))


class JobsFileError(KlingError, ValueError):
    """The jobs file has bad lines; ``problems`` lists one message per problem."""

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"problems": self.problems}))


class JournalConflictError(KlingError):
    """The jobs file no longer matches the journal (a line that was sent has changed)."""

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"problems": self.problems}))


class PayloadError(KlingError):
    """A 2xx answer whose body does not fit the expected model at all (not even tolerantly)."""


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    return cls(*args, **kwargs)


class APIError(KlingError):
    """The API answered with an error status.

    ``error`` is the server's ``error`` text (or a body excerpt when the body is not JSON),
    ``message`` its ``message`` field, ``code`` its ``code`` field, ``body`` the parsed JSON
    body (or the text), ``status`` the HTTP status, ``method``/``path`` the request.
    ``str(exc)`` reads ``429 Too Many Requests from POST images/kolors-elements: <error>``.
    """

    def __init__(
        self,
        error: str,
        *,
        status: int,
        message: str | None = None,
        code: int | None = None,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.message = message
        self.code = code
        self.body = body
        self.method = method
        self.path = path

    def _context(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "code": self.code,
            "body": self.body,
            "method": self.method,
            "path": self.path,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.error,), self._context()))

    def __str__(self) -> str:
        head = f"{self.status} {_status_phrase(self.status, '')}".rstrip()
        where = f" from {self.method} {self.path}".rstrip() if self.method or self.path else ""
        # Not ``message``: Kling's is generic and misleading ("Service busy" on a moderation
        # verdict); it is used as the text only when the body has no ``error``.
        return f"{head}{where}: {self.error}"


class BadRequestError(APIError):
    """400: the server rejected the request's content."""


class AuthenticationError(APIError):
    """401: the API token is missing, wrong or revoked."""


class PaymentRequiredError(APIError):
    """402 (useapi.net subscription) or 412 (the Kling account is out of credits)."""


class NotFoundError(APIError):
    """404 (or 410): unknown task, deleted or moderated task, or an asset Kling cannot find."""


class RateLimitError(APIError):
    """429: every slot of the account is busy. Nothing was created.

    ``retry_after`` is the server's wait in seconds, or None when it sent none.
    """

    def __init__(self, error: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(error, **kwargs)
        self.retry_after = retry_after

    def _context(self) -> dict[str, Any]:
        return {**super()._context(), "retry_after": self.retry_after}


class ModerationError(APIError):
    """The prompt or an image was refused by Kling's moderation (500 + guideline text)."""


class AccountError(APIError):
    """596: the Kling account's upstream session is broken; re-add it with POST /accounts."""


class ServerError(APIError):
    """Any other 5xx (including HTML gateway pages)."""


class TransportError(KlingError):
    """The connection failed or timed out, after the retry budget was spent."""

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path

    def _context(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), self._context()))


class SubmissionUnknownError(TransportError):
    """A job-creating POST failed after it was sent: the job may exist and may be billed.

    The client did not retry it (that could pay twice) and could not find the task in the
    account's task list. ``request`` is the request object, ``email`` the account,
    ``sent_at`` the epoch milliseconds when it was sent, ``candidates`` the ids of tasks
    that might be it. Check ``GET /tasks`` (``KlingClient.list_tasks``) before resubmitting.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        request: Any = None,
        email: str | None = None,
        sent_at: int | None = None,
        candidates: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.request = request
        self.email = email
        self.sent_at = sent_at
        self.candidates = candidates

    def _context(self) -> dict[str, Any]:
        return {
            **super()._context(),
            "request": self.request,
            "email": self.email,
            "sent_at": self.sent_at,
            "candidates": self.candidates,
        }


class TaskFailedError(KlingError):
    """The task reached a final state other than success. ``task`` is the final response."""

    def __init__(self, message: str, *, task: TaskResponse | None = None) -> None:
        super().__init__(message)
        self.task = task

    @property
    def task_id(self) -> int | None:
        """The id of the failed task, when known."""
        return self.task.task_id if self.task is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (str(self),), {"task": self.task}))


class TaskTimeoutError(KlingError, TimeoutError):
    """The task was not final by the deadline. It may still finish: wait on it again.

    ``task_id`` is the task, ``last`` the last response seen (None if no poll answered).
    """

    def __init__(
        self, message: str, *, task_id: int | None = None, last: TaskResponse | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.last = last

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), (str(self),), {"task_id": self.task_id, "last": self.last}),
        )


def is_moderation_text(text: str | None) -> bool:
    """Whether an error text is a Kling moderation verdict."""
    if not text:
        return False
    low = text.lower()
    return any(marker in low for marker in MODERATION_MARKERS)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta seconds or an HTTP date) into seconds, capped.

    Returns None for a missing or unreadable value; never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan", "inf": garbage, not "wait forever"
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_STATUS_CLASSES: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    404: NotFoundError,
    410: NotFoundError,
    412: PaymentRequiredError,
    429: RateLimitError,
    596: AccountError,
}


def _parse_body(body: bytes | str | Mapping[str, Any] | None) -> tuple[Any, Mapping[str, Any]]:
    """Return (body as kept on the error, the JSON object or {})."""
    if body is None:
        return None, {}
    if isinstance(body, Mapping):
        return dict(body), body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return text, {}
    if isinstance(parsed, dict):
        return parsed, parsed
    return parsed, {}


def _excerpt(body: Any) -> str:
    if not isinstance(body, str):
        return ""
    # A gateway's HTML page (Cloudflare's carries a large <style>): keep only its words.
    text = _HTML_BLOCK.sub(" ", body[:_SCAN_LIMIT])
    text = _HTML_TAG.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > _BODY_EXCERPT:
        text = text[:_BODY_EXCERPT] + "…"
    return text


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by name, case-insensitively (aiohttp's headers are; a plain dict is not)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    low = name.lower()
    return next((v for k, v in headers.items() if k.lower() == low), None)


def error_from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "",
    path: str = "",
) -> APIError:
    """Map an error answer to the matching `APIError` subclass.

    ``body`` may be the raw bytes or text (JSON or not: an HTML 502 page becomes a
    ServerError with an excerpt of the page) or an already parsed JSON object.
    """
    kept, obj = _parse_body(body)
    error = (
        _opt_str(obj.get("error"))
        or _opt_str(obj.get("message"))
        or _excerpt(kept)
        or _status_phrase(status)
    )
    message = _opt_str(obj.get("message"))
    code = _opt_int(obj.get("code"))
    common: dict[str, Any] = {
        "status": status,
        "message": message,
        "code": code,
        "body": kept,
        "method": method,
        "path": path,
    }
    if status == 429:
        header = _header(headers, "Retry-After")
        retry_after = parse_retry_after(header)
        if retry_after is None and obj.get("retryAfter") is not None:
            retry_after = parse_retry_after(str(obj["retryAfter"]))
        return RateLimitError(error, retry_after=retry_after, **common)
    if status in (422, 500) and is_moderation_text(_opt_str(obj.get("error"))):
        return ModerationError(error, **common)
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(error, **common)
