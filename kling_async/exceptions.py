"""The exception classes of kling-async; `kling_async.errors` shows their tree and re-exports
them with the function that maps an HTTP answer to them.

Every exception takes its message first and its context as keyword arguments, keeps only
plain data (never a live response or the token), and pickles through one helper: a class
lists its context attributes in ``_pickled``.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .models import TaskResponse

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
    "status_phrase",
]


def status_phrase(status: int, default: str | None = None) -> str:
    """The reason phrase of an HTTP status (``HTTP <status>`` when it has none)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}" if default is None else default


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    return cls(*args, **kwargs)


class KlingError(Exception):
    """Base class of every exception this package raises on purpose."""

    #: The keyword-only context attributes, given back to ``__init__`` when unpickled.
    _pickled: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        context = {name: getattr(self, name) for name in self._pickled}
        return (_rebuild, (type(self), self.args, context))


class ConfigurationError(KlingError, ValueError):
    """The client cannot work as configured: no token, a bad base URL or option, an unknown
    account. The message names the option."""


class RequestValidationError(KlingError, ValueError):
    """A request was rejected before anything was sent.

    ``field`` names the offending field by its Python name (``subject_images[2]``).
    """

    _pickled: ClassVar[tuple[str, ...]] = ("field",)

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JobsFileError(KlingError, ValueError):
    """The jobs file has bad lines; ``problems`` lists one message per problem."""

    _pickled: ClassVar[tuple[str, ...]] = ("problems",)

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class JournalConflictError(KlingError):
    """The jobs file no longer matches the journal (a line that was sent has changed)."""

    _pickled: ClassVar[tuple[str, ...]] = ("problems",)

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class PayloadError(KlingError):
    """A 2xx answer whose body does not fit the expected model at all (not even tolerantly)."""


class APIError(KlingError):
    """The API answered with an error status.

    ``error`` is the server's ``error`` text (or a body excerpt when the body is not JSON),
    ``message`` its ``message`` field, ``code`` its ``code`` field, ``body`` the parsed JSON
    body (or the text), ``status`` the HTTP status, ``method``/``path`` the request.
    ``str(exc)`` reads ``429 Too Many Requests from POST images/kolors-elements: <error>``.
    """

    _pickled: ClassVar[tuple[str, ...]] = ("status", "message", "code", "body", "method", "path")

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

    def __str__(self) -> str:
        head = f"{self.status} {status_phrase(self.status, '')}".rstrip()
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

    _pickled: ClassVar[tuple[str, ...]] = (*APIError._pickled, "retry_after")

    def __init__(self, error: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(error, **kwargs)
        self.retry_after = retry_after


class ModerationError(APIError):
    """The prompt or an image was refused by Kling's moderation (500 + guideline text)."""


class AccountError(APIError):
    """596: the Kling account's upstream session is broken; re-add it with POST /accounts."""


class ServerError(APIError):
    """Any other 5xx (including HTML gateway pages)."""


class TransportError(KlingError):
    """The connection failed or timed out, after the retry budget was spent."""

    _pickled: ClassVar[tuple[str, ...]] = ("method", "path")

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class SubmissionUnknownError(TransportError):
    """A job-creating POST failed after it was sent: the job may exist and may be billed.

    The client did not retry it (that could pay twice) and could not find the task in the
    account's task list. ``request`` is the request object, ``email`` the account,
    ``sent_at`` the epoch milliseconds when it was sent, ``candidates`` the ids of tasks
    that might be it. Check ``GET /tasks`` (``KlingClient.list_tasks``) before resubmitting.
    """

    _pickled: ClassVar[tuple[str, ...]] = (
        *TransportError._pickled,
        "request",
        "email",
        "sent_at",
        "candidates",
    )

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


class TaskFailedError(KlingError):
    """The task reached a final state other than success. ``task`` is the final response
    (the last one seen for `TaskGoneError` / `TaskExpiredError`, None if none was)."""

    _pickled: ClassVar[tuple[str, ...]] = ("task",)

    def __init__(self, message: str, *, task: TaskResponse | None = None) -> None:
        super().__init__(message)
        self.task = task

    @property
    def task_id(self) -> int | None:
        """The id of the failed task, when known."""
        return self.task.task_id if self.task is not None else None


class TaskGoneError(TaskFailedError):
    """A poll of a task this client created answered 404: the task was deleted, failed at
    moderation, or its account ran out of credits. ``gone_id`` is the task id."""

    _pickled: ClassVar[tuple[str, ...]] = ("task", "gone_id")

    def __init__(
        self, message: str, *, task: TaskResponse | None = None, gone_id: int | None = None
    ) -> None:
        super().__init__(message, task=task)
        self.gone_id = gone_id

    @property
    def task_id(self) -> int | None:
        """The id of the task that is gone."""
        return self.gone_id if self.gone_id is not None else super().task_id


class TaskExpiredError(TaskGoneError):
    """A poll answered 410: the task's results expired (the service keeps them 7 days)."""


class EmptyResultError(TaskFailedError):
    """The task ended ``succeed`` but its answer lists no works: nothing to download, so
    not a success. ``task`` is that final answer."""


class TaskTimeoutError(KlingError, TimeoutError):
    """The task was not final by the deadline. It may still finish: wait on it again.

    ``task_id`` is the task, ``last`` the last response seen (None if no poll answered).
    """

    _pickled: ClassVar[tuple[str, ...]] = ("task_id", "last")

    def __init__(
        self, message: str, *, task_id: int | None = None, last: TaskResponse | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.last = last
