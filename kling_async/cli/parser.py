"""The argument parser of ``kling-async``: every command and flag."""

from __future__ import annotations

import argparse
import difflib
import functools
import itertools
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..batch import JOURNAL_NAME
from ..client import DEFAULT_BASE_URL
from ..config import BASE_URL_ENV

__all__ = ["build_parser"]


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--token",
        default=default,
        help="useapi.net API token (default $USEAPI_TOKEN); never printed",
    )
    parser.add_argument("--email", default=default, help="the Kling account to use")
    parser.add_argument(
        "--base-url",
        default=argparse.SUPPRESS if suppress else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        help=f"API base URL (default ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--slots",
        metavar="URL",
        default=default,
        help="job slots shared by every process on this Redis (redis://host:6379/0; "
        "?lease_seconds=, ?down_seconds=, ?prefix=, ?fallback=local to go on in-process "
        "when it is down; default $KLING_SLOTS)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log every request (the token is never logged)",
    )


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _account(value: str) -> tuple[str, int | None]:
    email, sep, count = value.rpartition(":")
    if not sep:
        email, count = value, ""
    if "@" not in email:
        raise argparse.ArgumentTypeError(f"expected EMAIL or EMAIL:MAXJOBS, got {value!r}")
    if not count:
        return email, None
    if not count.isdigit() or not 1 <= int(count) <= 50:
        raise argparse.ArgumentTypeError(f"MAXJOBS must be 1..50 in {value!r}")
    return email, int(count)


class CliParser(argparse.ArgumentParser):
    """argparse in the CLI's error style: one line on stderr and exit status 2, and never
    the value of an argument it did not recognise (a mistyped ``--tok T`` carries the
    token). Subcommands inherit it.

    ``FIELD=VALUE`` words are taken anywhere on a ``generate`` command line, also after
    options: argparse's subcommands cannot intermix positionals and options, so the words
    left over after parsing are added to the fields here.
    """

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        self._words = list(sys.argv[1:] if args is None else args)  # for error()
        parsed, rest = self.parse_known_args(args, namespace)
        fields = getattr(parsed, "fields", None)
        if isinstance(fields, list):
            parsed.fields = [*fields, *(word for word in rest if _is_field(word))]
            rest = [word for word in rest if not _is_field(word)]
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        unknown = "unrecognized arguments: "
        if message.startswith(unknown):
            words = message[len(unknown) :].split()
            flags = [word.split("=", 1)[0] for word in words if word.startswith("-")]
            message = f"{unknown}{' '.join(flags) or '(not shown)'} (values are not shown)"
        choices = re.findall(r"'([^']*)'", message.partition("(choose from ")[2])
        shown = functools.partial(_shown_choice, choices, getattr(self, "_words", []))
        message = re.sub(r"invalid choice: '([^']*)'", shown, message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _is_field(word: str) -> bool:
    return "=" in word and not word.startswith("-")


def _shown_choice(choices: list[str], words: list[str], match: re.Match[str]) -> str:
    """A refused choice is echoed when it looks like a mistyped word (``imgae``, ``paint``),
    never when it may be a value put in the wrong place: the value of a mistyped
    ``--toke TOKEN`` lands where the command goes, whatever its shape: a word that
    follows an option is not shown. The closest real choice is offered."""
    word = match.group(1)
    after_option = any(
        before.startswith("-") for before, now in itertools.pairwise(words) if now == word
    )
    if after_option or not re.fullmatch(r"[a-z][a-z0-9_-]{0,23}", word):
        return "invalid choice (not shown)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"invalid choice: {word!r}{hint}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kling-async``."""
    parser = CliParser(
        prog="kling-async",
        allow_abbrev=False,
        description="Generate Kling images and videos through useapi.net, one job or a batch.",
    )
    parser.add_argument("--version", action="version", version=f"kling-async {__version__}")
    _add_globals(parser, suppress=False)
    common = CliParser(add_help=False, allow_abbrev=False)
    _add_globals(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub, common)
    _add_image(sub, common)
    _add_video(sub, common)
    _add_task(sub, common)
    _add_upload(sub, common)
    _add_batch(sub, common)
    _add_tasks(sub, common)
    _add_accounts(sub, common)
    _add_generate(sub, common)
    _add_endpoints(sub, common)
    _add_simulate(sub)
    return parser


Sub = Any  # argparse's _SubParsersAction is private


def _command(
    sub: Sub, common: argparse.ArgumentParser, name: str, **options: Any
) -> argparse.ArgumentParser:
    """A command taking the global options too, without abbreviations (``--tok`` is not
    ``--token``: a mistyped flag's value may be the token)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, allow_abbrev=False, parents=[common], **options
    )
    return parser


def _add_demo(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        allow_abbrev=False,
        help="run a small batch against the built-in simulator (no token, no network)",
    )
    p.add_argument("--out", type=Path, default=Path("kling-demo"), help="folder (./kling-demo)")
    p.add_argument("--jobs", type=_positive_int, default=3, help="image jobs, plus one video (3)")
    p.set_defaults(verbose=False)


def _add_timeout(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop waiting for {what} after this; the task goes on (default: the client's)",
    )


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path(), help="folder for the files (.)")
    p.add_argument("--json", action="store_true", help="print the final task JSON instead")
    _add_timeout(p, "the result")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        type=_extra,
        metavar="FIELD=VALUE",
        help="a wire field the options do not cover (VALUE as JSON, else text; repeatable)",
    )


def _add_image(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "image", help="KOLORS-elements images")
    p.add_argument("--prompt", help="what to generate (at most 2500 characters)")
    p.add_argument(
        "--subject", action="append", default=[], metavar="IMAGE", help="up to 4; file or URL"
    )
    p.add_argument("--scene", metavar="IMAGE", help="scene/background image")
    p.add_argument("--style", metavar="IMAGE", help="style reference image")
    p.add_argument("--aspect-ratio", help="1:1, 16:9 (default), 4:3, 3:2, 2:3, 3:4, 9:16, 21:9")
    p.add_argument("--count", type=int, help="images to generate, 1-9 (1)")
    _add_output(p)


def _add_video(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "video", help="image2video-elements video")
    p.add_argument("--prompt", required=True, help="what happens (at most 2500 characters)")
    p.add_argument(
        "--image", action="append", default=[], metavar="IMAGE", help="1 to 4; file or URL"
    )
    p.add_argument("--negative-prompt", help="what to avoid")
    p.add_argument("--duration", type=int, help="5 (default) or 10 seconds")
    p.add_argument("--mode", help="std (default) or pro")
    p.add_argument("--aspect-ratio", help="16:9 (default), 9:16, 1:1")
    p.add_argument("--audio", action="store_true", default=None, help="add sound effects")
    _add_output(p)


def _add_task(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "task", help="show a task; --wait for it to finish")
    p.add_argument("task_id", type=_positive_int, metavar="ID")
    p.add_argument("--wait", action="store_true", help="wait until the task is final")
    _add_timeout(p, "the task (with --wait)")
    p.add_argument("--out", type=Path, help="download the files here when it succeeded")
    p.add_argument("--json", action="store_true", help="print the task JSON")


def _add_upload(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "upload", help="upload a file; print its URL")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--content-type", help="default: from the file's bytes or name")
    p.add_argument("--json", action="store_true", help='print {"url": ...}')


def _add_batch(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(
        sub,
        common,
        "batch",
        help="run a JSON-lines file of jobs; resumable",
        description="One job per line: "
        '{"kind": "image"|"video", ...request fields by their Python names}. '
        f"The journal ({JOURNAL_NAME} in --out) records every task id; run the same "
        "command again to resume after a crash or Ctrl-C: nothing with a task id is "
        "submitted again.",
    )
    p.add_argument("jobs", type=Path, metavar="JOBS.jsonl")
    p.add_argument("--out", type=Path, required=True, help="results and the journal go here")
    p.add_argument(
        "--max-jobs", type=_positive_int, help="concurrent jobs per account (default: maxJobs)"
    )
    p.add_argument(
        "--account",
        action="append",
        type=_account,
        default=[],
        metavar="EMAIL[:MAXJOBS]",
        help="accounts to spread jobs over (repeatable)",
    )
    _add_timeout(p, "each job")
    p.add_argument(
        "--retry-failed", action="store_true", help="submit failed lines again (pays again)"
    )
    p.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="submit again lines whose earlier submission cannot be found or ruled out",
    )
    p.add_argument(
        "--webhook",
        type=_webhook_address,
        metavar="HOST:PORT[/path]",
        help="push mode: receive replyUrl callbacks here instead of polling (polling stays "
        "as a slow fallback)",
    )
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="the public URL useapi.net reaches --webhook at (default: http://HOST:PORT/path)",
    )


def _add_tasks(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(sub, common, "tasks", help="list the account's recent tasks")
    p.add_argument("--type", help="only this content type (image, video, audio...)")
    p.add_argument("--status", help="only tasks in this state (succeeded, failed, running...)")
    p.add_argument("--limit", type=_positive_int, default=20, help="at most this many (20)")
    p.add_argument("--json", action="store_true", help="print the tasks as a JSON list")


def _add_accounts(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(
        sub,
        common,
        "accounts",
        help="the configured accounts: maxJobs, executing, available, balance",
    )
    p.add_argument("--json", action="store_true", help="print the accounts as JSON")


def _add_generate(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(
        sub,
        common,
        "generate",
        help="any generation endpoint: FIELD=VALUE ... (see 'kling-async endpoints')",
        description="Submit one job to ENDPOINT (e.g. videos/text2video). Fields by Python "
        "or wire name, before or after the options: prompt='a fox' duration=10 "
        "images=a.png images=b.png shots='5:a fox runs' extra.newField=1. Local files are "
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
    _add_timeout(p, "the result")


def _add_endpoints(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = _command(
        sub,
        common,
        "endpoints",
        help="list every generation endpoint with its fields",
    )
    p.add_argument("endpoint", nargs="?", metavar="ENDPOINT", help="only this one")
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return number


def _extra(value: str) -> tuple[str, Any]:
    field, sep, text = value.partition("=")
    if not sep or not field.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {value!r}")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return field.strip(), parsed


def _webhook_address(value: str) -> tuple[str, int, str]:
    address, slash, path = value.partition("/")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT[/path], got {value!r}")
    return host.strip("[]"), int(port), "/" + path if slash and path else "/kling/callback"


def _add_simulate(sub: Sub) -> None:
    from ..testing import add_simulator_arguments

    p = sub.add_parser(
        "simulate",
        allow_abbrev=False,
        help="run the local simulator (same flags as python -m kling_async.testing)",
    )
    add_simulator_arguments(p)
