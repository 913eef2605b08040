"""``kling-async generate ENDPOINT FIELD=VALUE ...`` and ``kling-async endpoints [ENDPOINT]``.

Any generation endpoint of `kling_async.REQUEST_TYPES`, its fields given by Python or wire
name and parsed by their kind (`kling_async.requests.parse_fields`); local files are
checked at once and uploaded before the POST. Bad fields are one line on stderr naming
the field, exit status 2, nothing sent.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import attrs

from .. import REQUEST_TYPES
from ..client import KlingClient
from ..convert import unstructure
from ..errors import RequestValidationError
from ..models import TaskResponse
from ..requests import GenerationRequest, describe_fields, request_from_fields, spec_of
from .commands import make_client, run_one_job, task_command
from .display import Display
from .interrupt import CTRL_C, EXIT_OK, UsageError

__all__ = ["cmd_endpoints", "cmd_generate", "endpoint_class", "field_rows"]


def endpoint_class(name: str) -> type[GenerationRequest]:
    """The request class of an endpoint path (a leading slash is allowed) or class name."""
    path = name.strip().lstrip("/")
    if path in REQUEST_TYPES:
        return REQUEST_TYPES[path]
    for cls in REQUEST_TYPES.values():
        if cls.__name__.lower() == path.lower():
            return cls
    raise UsageError(f"ENDPOINT: unknown endpoint {name!r}; 'kling-async endpoints' lists them")


def _rules(spec: Any) -> str:
    parts: list[str] = []
    if spec.choices is not None:
        parts.append(" | ".join(str(c) for c in spec.choices))
    elif spec.low is not None or spec.high is not None:
        high = "" if spec.high is None else f"{spec.high:g}"
        parts.append(f"{spec.low:g}..{high}")
    if spec.max_len is not None:
        parts.append(f"max {spec.max_len} chars")
    if spec.kind in ("file", "files"):
        parts.append(f"{spec.media}: URL or local file")
    if spec.max_count is not None:
        parts.append(f"up to {spec.max_count}")
    for alt in spec.alts:
        when = " and ".join(c.describe() for c in alt.when)
        allowed = (
            " | ".join(str(c) for c in alt.choices)
            if alt.choices is not None
            else f"{alt.low:g}..{alt.high:g}"
        )
        parts.append(f"{allowed} {when}")
    parts += [f"only {c.describe()}" for c in spec.only_when]
    parts += [f"not {c.describe()}" for c in spec.not_when]
    if spec.required:
        unless = " or ".join(c.describe() for c in spec.optional_when)
        parts.append(f"required (unless {unless})" if unless else "required")
    return "; ".join(parts)


def field_rows(cls: type[GenerationRequest]) -> list[dict[str, Any]]:
    """Every field of an endpoint: name, wire name, kind, rules, default (for ``endpoints``)."""
    rows = []
    for field in attrs.fields(cls):
        spec = spec_of(field)
        if spec is None:
            continue
        rows.append(
            {
                "name": field.name,
                "wire": spec.wire.replace("{}", "N"),
                "kind": spec.kind,
                "rules": _rules(spec),
                "default": spec.default,
            }
        )
    body = {row["name"] for row in rows}
    for name, wire, kind in describe_fields(cls):
        if name not in body:
            rows.append({"name": name, "wire": wire, "kind": kind, "rules": "", "default": None})
    return rows


async def cmd_endpoints(args: argparse.Namespace, display: Display) -> int:
    """Print every endpoint (or one) with its class, result kind and fields."""
    classes = [endpoint_class(args.endpoint)] if args.endpoint else list(REQUEST_TYPES.values())
    listing: list[dict[str, Any]] = [
        {
            "endpoint": cls.endpoint,
            "class": cls.__name__,
            "kind": cls.kind,
            "summary": (cls.__doc__ or "").strip().splitlines()[0],
            "fields": field_rows(cls),
        }
        for cls in classes
    ]
    if args.json:
        display.json(listing)
        return EXIT_OK
    for item in listing:
        display.line(f"{item['endpoint']}  ({item['class']}, {item['kind']} results)")
        for row in item["fields"]:
            name = row["name"] if row["wire"] == row["name"] else f"{row['name']} ({row['wire']})"
            default = "" if row["default"] is None else f"; default {row['default']}"
            rules = f": {row['rules']}" if row["rules"] else ""
            display.line(f"  {name:<34} {row['kind']}{rules}{default}")
        display.line()
    return EXIT_OK


async def cmd_generate(args: argparse.Namespace, display: Display) -> int:
    """Submit one request to any endpoint; wait, download (with covers) and print the files."""
    cls = endpoint_class(args.endpoint)
    try:
        extra = [f"extra.{item}" if "=" in item else item for item in args.extra]
        request = request_from_fields(cls, [*args.fields, *extra])
    except RequestValidationError as exc:
        raise UsageError(str(exc)) from exc
    if not args.wait:
        async with make_client(args, max_jobs=1) as kling:
            answer = await _submit_noting_ctrl_c(kling, request)
        if args.json:
            display.json(unstructure(answer))
        else:
            display.line(f"task {answer.task_id} submitted")
            follow = task_command(answer.task_id or 0, kling.email, args.out, wait=True)
            display.line(f"  follow it: {follow}")
        return EXIT_OK
    return await run_one_job(args, display, request)


async def _submit_noting_ctrl_c(kling: KlingClient, request: GenerationRequest) -> TaskResponse:
    """``kling.submit``, leaving in `CTRL_C` what Ctrl-C's message needs: the task id once
    the server answered, else that a POST may be without answer."""
    ctrl_c = CTRL_C.get()

    def submitted(answer: TaskResponse) -> None:
        if ctrl_c is not None and answer.task_id is not None:
            ctrl_c.tasks.append((answer.task_id, request.email or kling.email))

    sent: list[bool] = []
    try:
        return await kling.submit(
            request, on_submitted=submitted, on_sending=lambda _: sent.append(True)
        )
    except asyncio.CancelledError:
        if ctrl_c is not None and not ctrl_c.tasks:
            ctrl_c.unanswered = 1
            if sent:  # closing the client waits for its answer: say so, and how to stop
                ctrl_c.announce(1, batch=False)
        raise
