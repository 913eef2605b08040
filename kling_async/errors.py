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
        TaskGoneError           a poll of the task answered 404: deleted, failed at
                                moderation, or out of credits (.gone_id)
          TaskExpiredError      a poll answered 410: results expire after 7 days
        EmptyResultError        the task ended "succeed" without any works
      TaskTimeoutError          waited past the deadline (.task_id, .last); also a TimeoutError.
                                The job may still run; wait on it again.

Every exception takes its message first and its context as keyword arguments, keeps only
plain data (never a live response or the token), and pickles. The classes live in
`kling_async.exceptions`; this module re-exports every one of them.

Exceptions that never reach a caller of the library are not part of the tree: the CLI's
``UsageError`` and ``Interrupted`` (turned into exit statuses) and the simulator's
``ErrorAnswer`` (rendered as an HTTP answer); private signals (``_PollTimeout``, the batch's
``_Stopping`` and the like) neither.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from .exceptions import (
    AccountError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    EmptyResultError,
    JobsFileError,
    JournalConflictError,
    KlingError,
    ModerationError,
    NotFoundError,
    PayloadError,
    PaymentRequiredError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SubmissionUnknownError,
    TaskExpiredError,
    TaskFailedError,
    TaskGoneError,
    TaskTimeoutError,
    TransportError,
    status_phrase,
)

__all__ = [
    "APIError",
    "AccountError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "EmptyResultError",
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
    "TaskExpiredError",
    "TaskFailedError",
    "TaskGoneError",
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
        or status_phrase(status)
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
