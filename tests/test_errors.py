"""Errors: the mapping of every documented answer, Retry-After, str(), pickling, the tree."""

from __future__ import annotations

import email.utils
import json
import pickle
import time
from typing import Any

import pytest
from helpers import EMAIL, MODERATION, NGINX_502, NOT_FOUND, TOKEN, kolors

import kling_async.errors as errors_module
from kling_async import (
    AccountError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientConfig,
    KlingClient,
    KlingError,
    ModerationError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from kling_async.errors import (
    MAX_RETRY_AFTER,
    error_from_response,
    is_moderation_text,
    parse_retry_after,
)
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

CLOUDFLARE_502 = (
    "<!DOCTYPE html><html><head><title>api.useapi.net | 502: Bad gateway</title>"
    "<style>" + "body{margin:0;padding:0}" * 300 + "</style>"
    '<script type="text/javascript">' + "var x = 1;" * 300 + "</script></head>"
    "<body><h1>Bad gateway</h1><p>Error code 502</p>"
    + "<p>filler text</p>" * 200
    + "</body></html>"
)


def rate_limited(
    headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
) -> RateLimitError:
    err = error_from_response(
        429, body if body is not None else {"error": "busy"}, headers, method="POST", path="x"
    )
    assert isinstance(err, RateLimitError)
    return err


# --- every row of errors.md ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "error", "message", "code"),
    [
        (
            400,
            {"error": "At least two images must be provided"},
            BadRequestError,
            "At least two images must be provided",
            None,
            None,
        ),
        (
            400,
            {"error": "At least one image (image_0, image_1, image_2 or image_3) is required"},
            BadRequestError,
            "At least one image (image_0, image_1, image_2 or image_3) is required",
            None,
            None,
        ),
        (
            401,
            {"error": "Unauthorized", "code": 401},
            AuthenticationError,
            "Unauthorized",
            None,
            401,
        ),
        (
            402,
            {"error": "Subscription required", "code": 402},
            PaymentRequiredError,
            "Subscription required",
            None,
            402,
        ),
        (404, NOT_FOUND, NotFoundError, NOT_FOUND["error"], "Not Found", None),
        (410, {"error": "Job expired"}, NotFoundError, "Job expired", None, None),
        (412, {"error": "Out of credits"}, PaymentRequiredError, "Out of credits", None, None),
        (
            422,
            {"error": "Your prompt violates our moderation policy"},
            ModerationError,
            "Your prompt violates our moderation policy",
            None,
            None,
        ),
        (422, {"error": "Unprocessable"}, APIError, "Unprocessable", None, None),
        (429, {"error": "All accounts busy"}, RateLimitError, "All accounts busy", None, None),
        (500, MODERATION, ModerationError, MODERATION["error"], MODERATION["message"], None),
        (
            500,
            {"error": "Something broke", "message": "Service busy"},
            ServerError,
            "Something broke",
            "Service busy",
            None,
        ),
        (
            596,
            {"error": "Account user@example.com in error state: CAPTCHA", "code": 596},
            AccountError,
            "Account user@example.com in error state: CAPTCHA",
            None,
            596,
        ),
        (503, {"error": "Unavailable"}, ServerError, "Unavailable", None, None),
        (403, {"error": "Forbidden"}, APIError, "Forbidden", None, None),
        (418, {}, APIError, "I'm a Teapot", None, None),
    ],
)
@pytest.mark.parametrize("form", ["dict", "str", "bytes"])
def test_documented_answers(
    status: int,
    body: dict[str, Any],
    cls: type[APIError],
    error: str,
    message: str | None,
    code: int | None,
    form: str,
) -> None:
    raw: Any = body
    if form == "str":
        raw = json.dumps(body)
    elif form == "bytes":
        raw = json.dumps(body).encode()
    err = error_from_response(status, raw, {}, method="POST", path="images/kolors-elements")
    assert type(err) is cls
    assert err.status == status
    assert err.error == error
    assert err.message == message
    assert err.code == code
    assert err.body == body
    assert err.method == "POST"
    assert err.path == "images/kolors-elements"
    assert error in str(err)


def test_moderation_is_decided_by_the_error_text_not_the_message() -> None:
    err = error_from_response(500, {"error": "Internal failure", "message": MODERATION["message"]})
    assert type(err) is ServerError
    err = error_from_response(500, {"error": "Flagged (CM_EXT.PPolitics)"})
    assert type(err) is ModerationError
    # Moderation wording on a 400 is still a bad request (only 500 and 422 carry verdicts).
    assert type(error_from_response(400, MODERATION)) is BadRequestError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MODERATION["error"], True),
        ("(CM_EXT.POther)", True),
        ("content does not meet the Community Guidelines", True),
        ("failed moderation", True),
        ("Service busy", False),
        ("", False),
        (None, False),
    ],
)
def test_is_moderation_text(text: str | None, expected: bool) -> None:
    assert is_moderation_text(text) is expected


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": " 12 "}, 12.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"retry-after": "7"}, 7.0),
        ({"RETRY-AFTER": "9"}, 9.0),
        ({"Retry-After": "3600"}, MAX_RETRY_AFTER),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}, MAX_RETRY_AFTER),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_header(headers: dict[str, str] | None, expected: float | None) -> None:
    assert rate_limited(headers).retry_after == expected


def test_retry_after_as_an_http_date() -> None:
    in_two_minutes = email.utils.formatdate(time.time() + 120, usegmt=True)
    retry_after = rate_limited({"Retry-After": in_two_minutes}).retry_after
    assert retry_after is not None
    assert 100 <= retry_after <= 120


def test_parse_retry_after_with_a_clock() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(header, now=now) == 42.0
    assert parse_retry_after(email.utils.formatdate(now - 42, usegmt=True), now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 4200, usegmt=True), now=now) == (
        MAX_RETRY_AFTER
    )
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00", now=now) is None  # no zone
    assert parse_retry_after("Mon, 99 Foo 2015 99:99:99 GMT", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "busy", "retryAfter": 15}, 15.0),
        ({"error": "busy", "retryAfter": "15"}, 15.0),
        ({"error": "busy", "retryAfter": 1.5}, 1.5),
        ({"error": "busy", "retryAfter": 99999}, MAX_RETRY_AFTER),
        ({"error": "busy", "retryAfter": "later"}, None),
        ({"error": "busy", "retryAfter": None}, None),
        ({"error": "busy"}, None),
    ],
)
def test_retry_after_in_the_body(body: dict[str, Any], expected: float | None) -> None:
    assert rate_limited(None, body).retry_after == expected


def test_retry_after_header_wins_over_the_body_and_garbage_falls_back() -> None:
    body = {"error": "busy", "retryAfter": 30}
    assert rate_limited({"Retry-After": "5"}, body).retry_after == 5.0
    assert rate_limited({"Retry-After": "garbage"}, body).retry_after == 30.0


def test_retry_after_only_on_429() -> None:
    err = error_from_response(503, {"error": "down"}, {"Retry-After": "5"})
    assert type(err) is ServerError
    assert not hasattr(err, "retry_after")


# --- bodies that are not JSON objects ------------------------------------------------------


@pytest.mark.parametrize("page", [NGINX_502, NGINX_502.encode()])
def test_html_gateway_page_becomes_a_server_error_with_an_excerpt(page: str | bytes) -> None:
    err = error_from_response(
        502, page, {"Content-Type": "text/html"}, method="GET", path="tasks/1"
    )
    assert type(err) is ServerError
    assert err.error == "502 Bad Gateway 502 Bad Gateway nginx"
    assert err.body == NGINX_502
    assert err.message is None
    assert err.code is None
    assert str(err) == "502 Bad Gateway from GET tasks/1: 502 Bad Gateway 502 Bad Gateway nginx"


def test_large_html_page_excerpt_is_short_and_readable() -> None:
    err = error_from_response(
        502, CLOUDFLARE_502, method="POST", path="videos/image2video-elements"
    )
    assert type(err) is ServerError
    assert err.error.startswith("api.useapi.net | 502: Bad gateway Bad gateway Error code 502")
    assert len(err.error) <= 201
    assert err.error.endswith("…")
    assert "<" not in err.error
    assert "{" not in err.error  # no CSS
    assert "var x" not in err.error  # no script
    assert len(str(err)) < 300


@pytest.mark.parametrize(
    ("status", "body", "error", "kept"),
    [
        (503, "", "Service Unavailable", ""),
        (504, b"", "Gateway Timeout", ""),
        (502, None, "Bad Gateway", None),
        (500, "[1, 2]", "Internal Server Error", [1, 2]),
        (500, "null", "Internal Server Error", None),
        (500, "42", "Internal Server Error", 42),
        (500, '"plain words"', "plain words", "plain words"),
        (
            500,
            "Internal error, try later",
            "Internal error, try later",
            "Internal error, try later",
        ),
        (400, b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8", "\ufffd\ufffd not utf-8"),
        (500, '{"error": "trunc', '{"error": "trunc', '{"error": "trunc'),
    ],
)
def test_non_object_bodies(status: int, body: Any, error: str, kept: Any) -> None:
    err = error_from_response(status, body)
    assert err.status == status
    assert err.error == error
    assert err.body == kept
    assert err.message is None
    assert err.code is None


def test_message_is_the_text_when_there_is_no_error_field() -> None:
    err = error_from_response(500, {"message": "Internal failure"}, method="GET", path="tasks/1")
    assert err.error == "Internal failure"
    assert str(err) == "500 Internal Server Error from GET tasks/1: Internal failure"


def test_code_that_is_not_a_number_is_dropped() -> None:
    assert error_from_response(401, {"error": "Unauthorized", "code": "x"}).code is None
    assert error_from_response(401, {"error": "Unauthorized", "code": "401"}).code == 401


def test_the_body_is_copied_not_shared() -> None:
    body = {"error": "x"}
    err = error_from_response(400, body)
    body["error"] = "changed"
    assert err.body == {"error": "x"}


# --- str() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "method", "path", "text"),
    [
        (
            429,
            {"error": "All accounts busy"},
            "POST",
            "images/kolors-elements",
            "429 Too Many Requests from POST images/kolors-elements: All accounts busy",
        ),
        (
            404,
            NOT_FOUND,
            "GET",
            "tasks/123",
            "404 Not Found from GET tasks/123: " + NOT_FOUND["error"],
        ),
        (
            500,
            MODERATION,
            "POST",
            "videos/image2video-elements",
            "500 Internal Server Error from POST videos/image2video-elements: "
            + MODERATION["error"],
        ),
        (401, {"error": "Unauthorized", "code": 401}, "", "", "401 Unauthorized: Unauthorized"),
        (
            596,
            {"error": "Account in error state", "code": 596},
            "GET",
            "tasks/1",
            "596 from GET tasks/1: Account in error state",
        ),
    ],
)
def test_str(status: int, body: Any, method: str, path: str, text: str) -> None:
    err = error_from_response(status, body, method=method, path=path)
    assert str(err) == text


def test_the_token_is_never_kept() -> None:
    token = "user:1234-secret-token"
    headers = {"Authorization": f"Bearer {token}", "Retry-After": "1"}
    err = error_from_response(429, {"error": "busy"}, headers, method="POST", path="x")
    assert token not in str(err)
    assert token not in repr(err)
    assert token not in repr(vars(err))
    assert token.encode() not in pickle.dumps(err)


# --- pickling ------------------------------------------------------------------------------


# --- the tree -------------------------------------------------------------------------------


def _docstring_tree() -> dict[str, str]:
    """Child -> parent, read from the indentation of the tree in errors.py's docstring."""
    doc = errors_module.__doc__ or ""
    lines = doc.split("The tree::", 1)[1].splitlines()
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        if not line.strip():
            if parents:
                break
            continue
        name = line.split()[0]
        if not name.isidentifier() or not name[0].isupper():
            continue  # a continuation line of a description
        indent = len(line) - len(line.lstrip())
        if stack and indent > stack[0][0] + 20:
            continue  # also a continuation (deeply indented text)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((indent, name))
    return parents


def test_the_exception_tree_matches_the_docstring() -> None:
    tree = _docstring_tree()
    public = {
        name: obj
        for name, obj in vars(errors_module).items()
        if isinstance(obj, type) and issubclass(obj, KlingError)
    }
    assert set(tree) | {"KlingError"} == set(public)
    for child, parent in tree.items():
        cls = public[child]
        kling_bases = [b for b in cls.__bases__ if issubclass(b, KlingError)]
        assert kling_bases == [public[parent]], child
    assert tree["ModerationError"] == "APIError"
    assert tree["SubmissionUnknownError"] == "TransportError"


def _documented_tree() -> dict[str, str | None]:
    """Each class name in errors' docstring tree -> its parent's name (None at the root)."""
    import re

    import kling_async.errors as errors_module

    doc = errors_module.__doc__ or ""
    block = doc.split("The tree::", 1)[1].split("\n\n", 2)[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        found = re.match(r"^( +)([A-Z]\w+)\b", line)
        if found is None or len(found.group(1)) >= 20:  # a description's continuation
            continue
        depth, name = len(found.group(1)), found.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def _package_exceptions() -> list[type[BaseException]]:
    import importlib
    import pkgutil

    import kling_async

    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(kling_async.__path__, "kling_async."):
        if info.name.endswith(".__main__"):  # runs the CLI when imported
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed (redis, rich)
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("kling_async")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_exception_of_the_package_is_in_the_documented_tree() -> None:
    import kling_async.errors as errors_module

    tree = _documented_tree()
    doc = errors_module.__doc__ or ""
    classes = _package_exceptions()
    assert KlingError in classes
    for cls in classes:
        if issubclass(cls, KlingError):
            assert cls.__name__ in tree, f"{cls.__name__} is missing from the tree"
            parent = tree[cls.__name__]
            base = next(b for b in cls.__mro__[1:] if issubclass(b, KlingError) or b is Exception)
            assert parent == (None if base is Exception else base.__name__), cls.__name__
            assert getattr(errors_module, cls.__name__) is cls  # re-exported by errors
        elif not cls.__name__.startswith("_"):
            # Not part of the tree: named where the docstring says why it never reaches a caller.
            assert f"``{cls.__name__}``" in doc, f"{cls.__qualname__} is not documented"
    assert set(tree) == {c.__name__ for c in classes if issubclass(c, KlingError)}


async def test_400_keeps_the_servers_text(client: KlingClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.list_tasks(content_type="poems")
    assert caught.value.status == 400
    assert "contentType must be video, image or audio" in str(caught.value)
    with pytest.raises(BadRequestError, match="imageCount must be an integer from 1 to 9"):
        await client.submit(kolors(extra={"imageCount": 12}))
    with pytest.raises(BadRequestError, match="Unable to find configuration for account"):
        await client.get_task(123, email="nobody@example.com")


async def test_401_wrong_token(sim: KlingSimulator) -> None:
    retries: list[Any] = []
    async with KlingClient(
        token="wrong-token", base_url=sim.base_url, on_retry=lambda *a: retries.append(a)
    ) as kling:
        with pytest.raises(AuthenticationError) as caught:
            await kling.get_task(1)
        with pytest.raises(AuthenticationError):
            await kling.submit(kolors())
    error = caught.value
    assert error.status == 401
    assert error.code == 401
    assert error.error == "Unauthorized"
    assert "wrong-token" not in repr(error) + str(error)
    assert retries == []
    assert sim.stats["tasks_created"] == 0


async def test_404_unknown_task(client: KlingClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.get_task(999)
    assert caught.value.status == 404
    assert "999" in str(caught.value)


async def test_404_resource_not_found_with_strict_assets() -> None:
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, strict_assets=True) as sim,
        KlingClient(token=TOKEN, base_url=sim.base_url) as kling,
    ):
        with pytest.raises(NotFoundError) as caught:
            await kling.submit(kolors())
        assert caught.value.error == NOT_FOUND["error"]
        assert caught.value.message == "Not Found"
        assert sim.stats["tasks_created"] == 0
        assert sim.stats["lists"] == 0  # a 404 is not ambiguous: no recovery needed


async def test_500_moderation(client: KlingClient, sim: KlingSimulator) -> None:
    with pytest.raises(ModerationError) as caught:
        await client.submit(kolors("something nsfw"))
    assert "community guidelines" in str(caught.value)
    assert "Service busy" not in str(caught.value)
    assert caught.value.status == 500
    assert sim.stats["posts"] == 1
    assert sim.stats["lists"] == 0
    assert sim.stats["tasks_created"] == 0


async def test_non_json_502_page(sim: KlingSimulator) -> None:
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    config = ClientConfig(retry=RetryPolicy(max_tries=2))
    async with KlingClient(token=TOKEN, base_url=sim.base_url, config=config) as kling:
        with pytest.raises(ServerError) as caught:
            await kling.get_task(123)  # 500 then the 502 HTML page
    error = caught.value
    assert error.status == 502
    assert isinstance(error.body, str)
    assert "<html>" in error.body
    assert "502 Bad Gateway" in str(error)
    assert "<" not in str(error)


async def test_api_error_pickles_and_reads_well(client: KlingClient) -> None:
    import pickle

    with pytest.raises(APIError) as caught:
        await client.get_task(4242)
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is NotFoundError
    assert str(again) == str(caught.value)
    assert str(caught.value).startswith("404 Not Found from GET tasks/4242: ")
