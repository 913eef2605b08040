"""The exception classes: they pickle with their context and keep their stdlib bases."""

from __future__ import annotations

import pickle

import pytest
from helpers import MODERATION, NGINX_502, NOT_FOUND

from kling_async import (
    AccountError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    KlingError,
    KolorsElements,
    ModerationError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskResponse,
    TaskTimeoutError,
    TransportError,
)
from kling_async.convert import structure_task
from kling_async.errors import error_from_response


def _task(status_name: str = "failed") -> TaskResponse:
    return structure_task(
        {
            "status": 50,
            "status_name": status_name,
            "status_final": True,
            "message": "moderated",
            "task": {
                "id": 123456789,
                "taskInfo": {"arguments": [{"name": "prompt", "value": "p"}]},
            },
            "works": [],
        }
    )


EXCEPTIONS: list[KlingError] = [
    KlingError("base"),
    ConfigurationError("no token: set USEAPI_TOKEN"),
    RequestValidationError("prompt: is required", field="prompt"),
    RequestValidationError("no field"),
    APIError(
        "teapot",
        status=418,
        message="m",
        code=418,
        body={"error": "teapot"},
        method="GET",
        path="p",
    ),
    BadRequestError("bad", status=400, body={"error": "bad"}),
    AuthenticationError("Unauthorized", status=401, code=401),
    PaymentRequiredError("Subscription required", status=402, code=402),
    NotFoundError(NOT_FOUND["error"], status=404, message="Not Found", body=NOT_FOUND),
    RateLimitError(
        "busy", status=429, retry_after=12.5, method="POST", path="images/kolors-elements"
    ),
    RateLimitError("busy", status=429),
    ModerationError(
        MODERATION["error"], status=500, message=MODERATION["message"], body=MODERATION
    ),
    AccountError("broken", status=596, code=596),
    ServerError("502 Bad Gateway nginx", status=502, body=NGINX_502),
    TransportError("connection reset", method="GET", path="tasks/1"),
    SubmissionUnknownError(
        "sent, no answer",
        method="POST",
        path="images/kolors-elements",
        request=KolorsElements(prompt="p", subject_images=["https://a/1.jpg", "https://a/2.jpg"]),
        email="a@example.com",
        sent_at=1745376611075,
        candidates=(1, 2),
    ),
    TaskFailedError("task 123456789 failed: moderated", task=_task()),
    TaskFailedError("no task"),
    TaskTimeoutError("still running after 600 s", task_id=123456789, last=_task("processing")),
    TaskTimeoutError("nothing"),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_exceptions_pickle_with_their_attributes(exc: KlingError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    assert vars(back) == vars(exc)


def test_pickled_attributes_in_detail() -> None:
    rate = pickle.loads(
        pickle.dumps(error_from_response(429, {"error": "b"}, {"Retry-After": "3"}))
    )
    assert rate.retry_after == 3.0
    sub = pickle.loads(pickle.dumps(EXCEPTIONS[15]))
    assert isinstance(sub, SubmissionUnknownError)
    assert sub.candidates == (1, 2)
    assert sub.sent_at == 1745376611075
    assert sub.email == "a@example.com"
    assert isinstance(sub.request, KolorsElements)
    failed = pickle.loads(pickle.dumps(EXCEPTIONS[16]))
    assert isinstance(failed, TaskFailedError)
    assert failed.task == _task()
    assert failed.task_id == 123456789
    timeout = pickle.loads(pickle.dumps(EXCEPTIONS[18]))
    assert isinstance(timeout, TaskTimeoutError)
    assert timeout.task_id == 123456789
    assert timeout.last == _task("processing")


def test_task_failed_error_task_id() -> None:
    assert TaskFailedError("x").task_id is None
    assert TaskFailedError("x", task=_task()).task_id == 123456789


def test_stdlib_bases() -> None:
    assert issubclass(TaskTimeoutError, TimeoutError)
    assert issubclass(RequestValidationError, ValueError)
    with pytest.raises(TimeoutError):
        raise TaskTimeoutError("late", task_id=1)
    with pytest.raises(ValueError, match="bad"):
        raise RequestValidationError("bad", field="x")
