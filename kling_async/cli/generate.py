"""``kling-async generate ENDPOINT FIELD=VALUE ...`` and ``kling-async endpoints [ENDPOINT]``.

Any generation endpoint of `kling_async.REQUEST_TYPES`, its fields given by Python or wire
name and parsed by their kind (`kling_async.requests.parse_fields`); local files are
checked at once and uploaded before the POST. Bad fields are one line on stderr naming
the field, exit status 2, nothing sent.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs

from .. import REQUEST_TYPES
from ..batch import job_from_request
from ..client import KlingClient
from ..convert import unstructure
from ..errors import RequestValidationError
from ..requests import GenerationRequest, describe_fields, request_from_fields, spec_of
from .commands import report_one_job, run_jobs, task_command
from .display import Display
from .interrupt import EXIT_OK, UsageError

__all__ = ["add_parsers", "cmd_endpoints", "cmd_generate", "endpoint_class", "field_rows"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``generate`` and ``endpoints`` commands to the CLI's subparsers."""
    p = sub.add_parser(
        "generate",
        allow_abbrev=False,
        parents=[common],
        help="any generation endpoint: FIELD=VALUE ... (see 'kling-async endpoints')",
        description="Submit one job to ENDPOINT (e.g. videos/text2video). Fields by Python "
        "or wire name: prompt='a fox' duration=10 images=a.png images=b.png "
        "shots='5:a fox runs' extra.newField=1, given before the options. Local files are "
        "checked and uploaded first.",
    )
    p.add_argument("endpoint", metavar="ENDPOINT")
    p.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the result and download it (default); --no-wait prints the task id",
    )
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a newer wire field sent as given (JSON value, else text); same as extra.FIELD=",
    )
    p.add_argument("--out", type=Path, default=Path(), help="folder for the files (.)")
    p.add_argument("--json", action="store_true", help="print the task JSON instead")
    e = sub.add_parser(
        "endpoints",
        allow_abbrev=False,
        parents=[common],
        help="list every generation endpoint with its fields",
    )
    e.add_argument("endpoint", nargs="?", metavar="ENDPOINT", help="only this one")
    e.add_argument("--json", action="store_true", help="print the list as JSON")


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


def _token(args: argparse.Namespace) -> str:
    token: str | None = args.token or os.environ.get("USEAPI_TOKEN")
    if not token:
        raise UsageError("no API token: pass --token or set USEAPI_TOKEN")
    return token


def _check_out(out: Path) -> None:
    """Fail before anything is sent (and paid) when the files could not be saved."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out: cannot write to {str(out)!r}: {exc.strerror or exc}") from None


async def cmd_generate(args: argparse.Namespace, display: Display) -> int:
    """Submit one request to any endpoint; wait, download (with covers) and print the files."""
    cls = endpoint_class(args.endpoint)
    try:
        extra = [f"extra.{item}" if "=" in item else item for item in args.extra]
        request = request_from_fields(cls, [*args.fields, *extra])
    except RequestValidationError as exc:
        raise UsageError(str(exc)) from exc
    token = _token(args)
    if args.wait:
        _check_out(args.out)
    client = KlingClient(token=token, email=args.email, base_url=args.base_url, max_jobs=1)
    if not args.wait:
        async with client as kling:
            answer = await kling.submit(request)
        if args.json:
            display.json(unstructure(answer))
        else:
            display.line(f"task {answer.task_id} submitted")
            follow = task_command(answer.task_id or 0, kling.email, args.out, wait=True)
            display.line(f"  follow it: {follow}")
        return EXIT_OK
    async with client as kling:
        summary = await run_jobs(
            kling, [job_from_request(1, request)], args.out, display, subfolders=False, quiet=True
        )
    return report_one_job(summary, args, display)
