"""The ``kling-async`` command: demo, image, video, task, upload, batch, simulate.

::

    kling-async demo                         # local simulator, no token, no network
    kling-async image --prompt "a cat" --subject cat.png --subject hat.jpg --out out/
    kling-async video --prompt "they dance" --image a.png --duration 10 --json
    kling-async task 123456789 --wait --out out/
    kling-async upload photo.jpg
    kling-async batch jobs.jsonl --out results/ --account a@example.com:3
    kling-async simulate --port 8787

Global options (before or after the command): ``--token`` (default ``$USEAPI_TOKEN``),
``--email``, ``--base-url``, ``--verbose``. Exit status: 0 success, 1 a job or request
failed, 2 bad arguments or input (nothing was sent), 130 interrupted. Progress bars and
tables need rich (``pip install "kling-async[cli]"``); without it, or when stdout is not a
terminal, output is plain lines. The token is never printed.

Ctrl-C stops a command and says how to resume it. Submissions already sent get up to
`INTERRUPT_GRACE` seconds to answer, so that their task ids reach the journal (the wait is
announced); a second Ctrl-C stops at once, and a re-run looks those up in the account's
task list. A program started with SIGINT ignored (a background job of a non-interactive
shell) keeps ignoring it, as Unix programs do: stop it with SIGTERM (or SIGKILL); the
journal is resumable either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import signal
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final, TextIO

from . import __version__
from .batch import (
    JOURNAL_NAME,
    BatchRunner,
    BatchSummary,
    Job,
    JobEvent,
    JobRecord,
    JobsFileError,
    JobState,
    Journal,
    JournalConflictError,
    job_from_request,
    parse_jobs_file,
)
from .client import DEFAULT_BASE_URL, KlingClient
from .convert import unstructure
from .errors import KlingError, RequestValidationError, TaskFailedError
from .models import TaskResponse
from .requests import GenerationRequest, Image2VideoElements, KolorsElements
from .webhooks import KlingWebhookReceiver

__all__ = ["build_parser", "main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

DEMO_ACCOUNT: Final = "demo@example.com"
DEMO_JOB_SECONDS: Final = 1.5
#: Seconds a Ctrl-C'd command gives the submissions it has out to answer.
INTERRUPT_GRACE: Final = 10.0
_TABLE_ROWS: Final = 40  # longer batches get counts and the failed lines only


class UsageError(Exception):
    """Bad arguments or input: reported with exit status 2, nothing was sent."""


class _Interrupted(Exception):
    """The command was stopped by Ctrl-C; ``unanswered`` POSTs were left without answer."""

    def __init__(self, unanswered: int) -> None:
        super().__init__(unanswered)
        self.unanswered = unanswered


class _CtrlC:
    """Ctrl-C (SIGINT) while a command runs, handled on the event loop.

    The first press cancels the command, whose cleanup runs: a batch waits for the POSTs it
    has out (`INTERRUPT_GRACE` s at most; `announce` says so) so that their task ids reach
    the journal. A second press, or the grace running out, stops at once: every other task
    is cancelled, and the rows of unanswered POSTs stay ``submitting`` (a re-run looks them
    up). From then on SIGINT is Python's default again (KeyboardInterrupt wherever the
    program is), so a command that still does not end can be stopped.

    Being a loop signal handler, it wakes an idle loop at once whichever thread the signal
    reached, and runs between callbacks, never in the middle of one. Before `install`,
    ``asyncio.run``'s handler cancels the command; after `uninstall`, Ctrl-C raises
    KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.presses = 0
        self.unanswered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def install(self) -> None:
        """Handle SIGINT on the running loop for the current task (the command)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._pressed)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows; not main thread
            return
        self._loop, self._main = loop, asyncio.current_task()

    def uninstall(self) -> None:
        """Give SIGINT back to Python's default handler (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(signal.SIGINT)

    def _pressed(self) -> None:
        self.presses += 1
        if self.presses > 1:
            self.stop_now()
        elif self._main is not None and self._loop is not None:
            self._main.cancel()
            self._timer = self._loop.call_later(INTERRUPT_GRACE, self.stop_now)

    def stop_now(self) -> None:
        """Stop waiting for anything: cancel every task but the command's own."""
        if self._stopped:
            return
        self._stopped = True
        loop = self._loop
        self.uninstall()
        if loop is None:
            return
        for task in asyncio.all_tasks(loop):
            if task is not self._main:
                task.cancel()

    def announce(self, posts: int) -> None:
        """A batch stopped by the first press waits for ``posts`` POSTs: say so."""
        if self.presses != 1 or self._stopped or not posts:
            return
        what = "1 submission" if posts == 1 else f"{posts} submissions"
        print(
            f"interrupted: waiting up to {INTERRUPT_GRACE:g} s for the answer to {what} "
            "already sent, so that no task id is lost; press Ctrl-C again to stop at once "
            "(a re-run then looks them up in the account's task list)",
            file=sys.stderr,
            flush=True,
        )


#: The Ctrl-C handling of the running command (None: Python's default).
_CTRL_C: ContextVar[_CtrlC | None] = ContextVar("kling_async_ctrl_c", default=None)


# --------------------------------------------------------------------------- output


class Display:
    """Where output goes: rich (progress bars, tables) on a terminal, plain lines otherwise."""

    def __init__(self, *, fancy: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        if fancy is None:
            fancy = self.stream.isatty() and _rich_available()
        self.fancy = fancy
        self._console: Any = None
        if fancy:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, text: str = "") -> None:
        """Print one line (not interpreted as markup)."""
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def json(self, data: Any) -> None:
        """Print JSON (always plain, so it can be piped)."""
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.stream, flush=True)

    @contextmanager
    def batch_progress(self, total: int, title: str) -> Iterator[ProgressObserver]:
        """A progress display fed by batch events."""
        if self._console is None:
            yield ProgressObserver(total, self.line, None)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
        )
        with progress:
            bar = progress.add_task(title, total=total, counts="")
            console = progress.console

            def say(text: str) -> None:
                console.print(text, markup=False, highlight=False)

            yield ProgressObserver(total, say, (progress, bar))

    def summary(self, summary: BatchSummary, out_dir: Path | None) -> None:
        """The end-of-batch table and the failed lines with their errors."""
        records = summary.records
        if self._console is not None and len(records) <= _TABLE_ROWS:
            self._rich_table(records)
        elif len(records) <= _TABLE_ROWS:
            for rec in records:
                self.line("  ".join(_row(rec)))
        counts = ", ".join(
            f"{summary.count(state)} {state.value}" for state in JobState if summary.count(state)
        )
        self.line(f"{len(records)} job(s): {counts}")
        for email, why in summary.accounts_set_aside.items():
            self.line(f"account {email} was set aside, it is in error state: {why}")
        for rec in summary.problems:
            self.line(f"line {rec.line}: {rec.state.value}: {rec.error or 'not finished'}")
        if out_dir is not None and summary.count(JobState.SUCCEEDED):
            self.line(f"results in {out_dir}")

    def _rich_table(self, records: Sequence[JobRecord]) -> None:
        from rich.table import Table

        table = Table(title="kling-async batch")
        for name in ("line", "kind", "state", "task", "files / error"):
            table.add_column(name, overflow="fold")
        for rec in records:
            table.add_row(*_row(rec))
        self._console.print(table)


def _row(rec: JobRecord) -> tuple[str, str, str, str, str]:
    detail = ", ".join(rec.files) if rec.state is JobState.SUCCEEDED else (rec.error or "")
    task = str(rec.task_id) if rec.task_id is not None else "-"
    return str(rec.line), rec.kind, rec.state.value, task, detail


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressObserver:
    """Turns batch events into a progress bar (rich) or one plain line per event."""

    def __init__(self, total: int, say: Any, bar: tuple[Any, Any] | None) -> None:
        self.total = total
        self.say = say
        self.bar = bar
        self.done = self.failed = 0
        self.running: set[int] = set()

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        """Count the event and show it."""
        line = record.line
        if event in (JobEvent.SUBMITTED, JobEvent.RESUMED, JobEvent.ADOPTED):
            self.running.add(line)
        elif event in (JobEvent.SUCCEEDED, JobEvent.SKIPPED) and record.state is JobState.SUCCEEDED:
            self.running.discard(line)
            self.done += 1
        elif event in (JobEvent.FAILED, JobEvent.UNKNOWN, JobEvent.INCOMPLETE, JobEvent.SKIPPED):
            self.running.discard(line)
            self.failed += 1
        text = _event_text(event, record)
        if text:
            self.say(text)
        if self.bar is not None:
            progress, task = self.bar
            counts = f"done {self.done} · running {len(self.running)} · failed {self.failed}"
            progress.update(task, completed=self.done + self.failed, counts=counts)


def _event_text(event: JobEvent, rec: JobRecord) -> str:
    head = f"line {rec.line} ({rec.kind})"
    account = f" on {rec.email}" if rec.email else ""
    if event is JobEvent.QUEUED:
        return ""
    if event is JobEvent.SKIPPED:
        return f"{head}: already {rec.state.value}"
    if event is JobEvent.SUBMITTED:
        return f"{head}: submitted task {rec.task_id}{account}"
    if event is JobEvent.RESUMED:
        return f"{head}: resuming task {rec.task_id}{account}"
    if event is JobEvent.ADOPTED:
        return f"{head}: found task {rec.task_id} of an interrupted submission"
    if event is JobEvent.SUCCEEDED:
        return f"{head}: succeeded, {len(rec.files)} file(s)"
    return f"{head}: {event.value}: {rec.error or rec.final_state or ''}"


# --------------------------------------------------------------------------- arguments


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
        default=argparse.SUPPRESS if suppress else DEFAULT_BASE_URL,
        help=f"API base URL (default {DEFAULT_BASE_URL})",
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kling-async``."""
    parser = argparse.ArgumentParser(
        prog="kling-async",
        description="Generate Kling images and videos through useapi.net, one job or a batch.",
    )
    parser.add_argument("--version", action="version", version=f"kling-async {__version__}")
    _add_globals(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_globals(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub, common)
    _add_image(sub, common)
    _add_video(sub, common)
    _add_task(sub, common)
    _add_upload(sub, common)
    _add_batch(sub, common)
    _add_simulate(sub)
    return parser


Sub = Any  # argparse's _SubParsersAction is private


def _add_demo(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run a small batch against the built-in simulator (no token, no network)",
    )
    p.add_argument("--out", type=Path, default=Path("kling-demo"), help="folder (./kling-demo)")
    p.add_argument("--jobs", type=_positive_int, default=3, help="image jobs, plus one video (3)")


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path(), help="folder for the files (.)")
    p.add_argument("--json", action="store_true", help="print the final task JSON instead")


def _add_image(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("image", parents=[common], help="KOLORS-elements images")
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
    p = sub.add_parser("video", parents=[common], help="image2video-elements video")
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
    p = sub.add_parser("task", parents=[common], help="show a task; --wait for it to finish")
    p.add_argument("task_id", type=_positive_int, metavar="ID")
    p.add_argument("--wait", action="store_true", help="wait until the task is final")
    p.add_argument("--out", type=Path, help="download the files here when it succeeded")
    p.add_argument("--json", action="store_true", help="print the task JSON")


def _add_upload(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("upload", parents=[common], help="upload a file; print its URL")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--content-type", help="default: from the file's bytes or name")
    p.add_argument("--json", action="store_true", help='print {"url": ...}')


def _add_batch(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "batch",
        parents=[common],
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
        action="extend",
        nargs="+",
        type=_account,
        default=[],
        metavar="EMAIL[:MAXJOBS]",
        help="accounts to spread jobs over (repeatable)",
    )
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


def _webhook_address(value: str) -> tuple[str, int, str]:
    address, slash, path = value.partition("/")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT[/path], got {value!r}")
    return host.strip("[]"), int(port), "/" + path if slash and path else "/kling/callback"


def _add_simulate(sub: Sub) -> None:
    from .testing import add_simulator_arguments

    p = sub.add_parser(
        "simulate", help="run the local simulator (same flags as python -m kling_async.testing)"
    )
    add_simulator_arguments(p)


# --------------------------------------------------------------------------- commands


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kling-async``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error (status 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "simulate":
        from .testing import run_from_args

        return run_from_args(args)
    _setup_logging(args.verbose)
    display = Display()
    # Like asyncio.run: Ctrl-C is handled only where SIGINT has Python's default handler
    # (not when the program was started with SIGINT ignored, as a background job).
    ctrl_c = (
        _CtrlC()
        if threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        else None
    )
    try:
        return asyncio.run(_dispatch(args, display, ctrl_c))
    except UsageError as exc:
        print(f"kling-async {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Interrupted as exc:
        print(_interrupted_text(args, args_list, exc.unanswered), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(_interrupted_text(args, args_list), file=sys.stderr)
        return EXIT_INTERRUPTED


async def _dispatch(args: argparse.Namespace, display: Display, ctrl_c: _CtrlC | None) -> int:
    if ctrl_c is not None:
        ctrl_c.install()
        _CTRL_C.set(ctrl_c)
    try:
        return await _run_command(args, display)
    except asyncio.CancelledError:
        if ctrl_c is None or not ctrl_c.presses:
            raise
        raise _Interrupted(ctrl_c.unanswered) from None
    finally:
        if ctrl_c is not None:
            ctrl_c.uninstall()


async def _run_command(args: argparse.Namespace, display: Display) -> int:
    commands = {
        "demo": _cmd_demo,
        "image": _cmd_generate,
        "video": _cmd_generate,
        "task": _cmd_task,
        "upload": _cmd_upload,
        "batch": _cmd_batch,
    }
    try:
        return await commands[args.command](args, display)
    except (RequestValidationError, JobsFileError, JournalConflictError) as exc:
        raise UsageError(_problems_text(exc)) from exc
    except KlingError as exc:
        print(f"kling-async {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _problems_text(exc: Exception) -> str:
    problems = getattr(exc, "problems", ())
    return "\n  ".join([str(exc), *problems]) if problems else str(exc)


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _interrupted_text(args: argparse.Namespace, argv: Sequence[str], unanswered: int = 0) -> str:
    if args.command != "batch":
        if unanswered:
            return (
                "interrupted before the submission answered: a task may have been created; "
                "look for it in the account's tasks"
            )
        return "interrupted; a submitted task goes on: see it with 'kling-async task ID'"
    journal = args.out / JOURNAL_NAME
    if unanswered:
        what = "1 submission" if unanswered == 1 else f"{unanswered} submissions"
        kept = (
            f"interrupted; the task ids received are kept in {journal}; {what} had not "
            "answered: a re-run looks them up in the account's task list before sending "
            "anything again."
        )
    else:
        kept = f"interrupted; every task id is kept in {journal}."
    return f"{kept}\nResume with the same command:\n  {_resume_command(argv)}"


def _resume_command(argv: Sequence[str]) -> str:
    """The command line again, without the token."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--token":
            skip = True
            continue
        if arg.startswith("--token="):
            continue
        kept.append(arg)
    return shlex.join(["kling-async", *kept])


def _token(args: argparse.Namespace) -> str:
    token: str | None = args.token or os.environ.get("USEAPI_TOKEN")
    if not token:
        raise UsageError("no API token: pass --token or set USEAPI_TOKEN")
    return token


def _client(
    args: argparse.Namespace,
    *,
    max_jobs: int | None = None,
    accounts: dict[str, int | None] | None = None,
) -> KlingClient:
    webhook = None
    if getattr(args, "webhook", None) is not None:
        host, port, path = args.webhook
        webhook = KlingWebhookReceiver(host=host, port=port, path=path, public_url=args.webhook_url)
    return KlingClient(
        token=_token(args),
        email=args.email,
        base_url=args.base_url,
        max_jobs=max_jobs,
        accounts=accounts,
        webhook=webhook,
    )


def _generation_request(args: argparse.Namespace) -> GenerationRequest:
    if args.command == "image":
        return KolorsElements(
            prompt=args.prompt,
            subject_images=args.subject,
            scene_image=args.scene,
            style_image=args.style,
            aspect_ratio=args.aspect_ratio,
            image_count=args.count,
            email=args.email,
        )
    return Image2VideoElements(
        prompt=args.prompt,
        images=args.image,
        negative_prompt=args.negative_prompt,
        duration=args.duration,
        mode=args.mode,
        aspect_ratio=args.aspect_ratio,
        enable_audio=args.audio,
        email=args.email,
    )


async def _cmd_generate(args: argparse.Namespace, display: Display) -> int:
    try:
        request = _generation_request(args)
    except RequestValidationError as exc:
        flag = _FLAGS.get((exc.field or "").split("[")[0], exc.field)
        raise UsageError(f"{flag}: {exc}") from exc
    job = job_from_request(1, request)
    async with _client(args, max_jobs=1) as kling:  # one job needs one slot
        summary = await _run_jobs(kling, [job], args.out, display, subfolders=False, quiet=True)
    rec = summary.records[0]
    final = summary.responses.get(1)
    if args.json and final is not None:
        display.json(unstructure(final))
    elif rec.state is JobState.SUCCEEDED:
        for name in rec.files:
            display.line(str(args.out / name))
    else:
        display.line(f"task {rec.task_id or '-'}: {rec.state.value}: {rec.error or ''}")
    return EXIT_OK if rec.state is JobState.SUCCEEDED else EXIT_FAILED


#: Request fields -> the flag that sets them, for error messages.
_FLAGS: Final = {
    "prompt": "--prompt",
    "subject_images": "--subject",
    "scene_image": "--scene",
    "style_image": "--style",
    "aspect_ratio": "--aspect-ratio",
    "image_count": "--count",
    "images": "--image",
    "negative_prompt": "--negative-prompt",
    "duration": "--duration",
    "mode": "--mode",
    "enable_audio": "--audio",
    "email": "--email",
}


async def _run_jobs(
    kling: KlingClient,
    jobs: Sequence[Job],
    out: Path,
    display: Display,
    *,
    journal_path: Path | None = None,
    subfolders: bool = True,
    quiet: bool = False,
    retry_failed: bool = False,
    resubmit_unknown: bool = False,
) -> BatchSummary:
    ctrl_c = _CTRL_C.get()
    with Journal(journal_path or ":memory:") as journal:
        title = "batch" if len(jobs) > 1 else jobs[0].kind
        with display.batch_progress(len(jobs), title) as observer:
            if quiet and not display.fancy:
                observer.say = _stderr_line
            runner = BatchRunner(
                kling,
                journal,
                out,
                observer=observer,
                resubmit_unknown=resubmit_unknown,
                subfolders=subfolders,
                on_settle=ctrl_c.announce if ctrl_c is not None else None,
            )
            try:
                return await runner.run(jobs, retry_failed=retry_failed)
            except asyncio.CancelledError:
                if ctrl_c is not None:  # for the resume hint: POSTs left without answer
                    states = [r.state for r in journal.records()]
                    ctrl_c.unanswered = states.count(JobState.SUBMITTING)
                raise


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _cmd_task(args: argparse.Namespace, display: Display) -> int:
    async with _client(args) as kling:
        try:
            task = await (kling.wait(args.task_id) if args.wait else kling.get_task(args.task_id))
        except TaskFailedError as exc:
            if exc.task is None:
                raise
            task = exc.task
        paths: list[Path] = []
        if args.out is not None and task.succeeded:
            paths = await kling.download(task, args.out)
    if args.json:
        display.json(unstructure(task))
    else:
        _show_task(task, paths, display)
    return EXIT_FAILED if task.failed else EXIT_OK


def _show_task(task: TaskResponse, paths: Sequence[Path], display: Display) -> None:
    final = "final" if task.is_final else "not final"
    display.line(f"task {task.task_id}: {task.status_name or task.state.value} ({final})")
    args = task.arguments
    if args.get("prompt"):
        display.line(f"  prompt: {args['prompt']}")
    if task.failed:
        display.line(f"  error: {task.failure_reason}")
    for url in task.urls:
        display.line(f"  {url}")
    for path in paths:
        display.line(f"  saved {path}")


async def _cmd_upload(args: argparse.Namespace, display: Display) -> int:
    if not args.file.is_file():
        raise UsageError(f"FILE: no such file {str(args.file)!r}")
    async with _client(args) as kling:
        url = await kling.upload_asset(args.file, args.content_type, email=args.email)
    if args.json:
        display.json({"url": url})
    else:
        display.line(url)
    return EXIT_OK


def _check_accounts(jobs: Sequence[Job], accounts: dict[str, int | None]) -> None:
    if not accounts:
        return
    bad = [
        f"{job.line}: email: {job.request.email!r} is not one of --account"
        for job in jobs
        if job.request.email is not None and job.request.email not in accounts
    ]
    if bad:
        raise UsageError("\n  ".join(["jobs name accounts not given with --account:", *bad]))


async def _cmd_batch(args: argparse.Namespace, display: Display) -> int:
    jobs = parse_jobs_file(args.jobs)  # every line checked before anything is sent
    accounts: dict[str, int | None] = {}
    for email, count in args.account:
        accounts[email] = count or args.max_jobs
    _check_accounts(jobs, accounts)
    out: Path = args.out
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    client = _client(
        args,
        max_jobs=None if accounts else args.max_jobs,
        accounts=accounts or None,
    )
    async with client as kling:
        summary = await _run_jobs(
            kling,
            jobs,
            out,
            display,
            journal_path=out / JOURNAL_NAME,
            retry_failed=args.retry_failed,
            resubmit_unknown=args.resubmit_unknown,
        )
    display.summary(summary, out)
    if not summary.ok:
        display.line(f"re-run the same command to resume; the journal is {out / JOURNAL_NAME}")
    return EXIT_OK if summary.ok else EXIT_FAILED


# --------------------------------------------------------------------------- demo


def demo_png(width: int, height: int, hue: int) -> bytes:
    """A real RGB PNG with a diagonal gradient (``hue`` 0-2 picks the dominant channel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            level = (x + y) * 255 // (width + height)
            pixel = [level // 3, level // 2, 255 - level]
            pixel[hue % 3], pixel[2] = pixel[2], pixel[hue % 3]
            rows.extend(pixel)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


_DEMO_PROMPTS: Final = (
    "a lighthouse on a cliff at dawn, in the style of the reference",
    "a cat wearing a tiny astronaut helmet in a sunlit kitchen",
    "a vintage tram crossing a rainy city square at night",
    "a paper boat drifting on a mountain lake",
    "a robot gardener watering tulips",
)


def _demo_jobs(inputs: Path, count: int) -> list[Job]:
    inputs.mkdir(parents=True, exist_ok=True)
    files = []
    for hue, name in enumerate(("subject-a.png", "subject-b.png", "scene.png")):
        path = inputs / name
        path.write_bytes(demo_png(320, 320, hue))
        files.append(str(path))
    subject_a, subject_b, scene = files
    requests: list[GenerationRequest] = [
        KolorsElements(
            prompt=_DEMO_PROMPTS[i % len(_DEMO_PROMPTS)],
            subject_images=[subject_a, subject_b],
            scene_image=scene if i % 2 == 0 else None,
            aspect_ratio=("1:1", "16:9", "3:4")[i % 3],
        )
        for i in range(count)
    ]
    requests.append(
        Image2VideoElements(
            prompt="the two shapes dance around each other", images=[subject_a, subject_b]
        )
    )
    return [job_from_request(i, r) for i, r in enumerate(requests, start=1)]


async def _cmd_demo(args: argparse.Namespace, display: Display) -> int:
    from .testing import KlingSimulator

    out: Path = args.out
    jobs = _demo_jobs(out / "inputs", args.jobs)
    started = time.monotonic()
    simulator = KlingSimulator(
        accounts={DEMO_ACCOUNT: 2}, job_seconds=DEMO_JOB_SECONDS, strict_assets=True
    )
    async with simulator as sim:
        display.line(f"simulator at {sim.base_url} (account {DEMO_ACCOUNT}, maxJobs 2)")
        display.line(f"{len(jobs)} jobs; input images in {out / 'inputs'}")
        async with KlingClient(token=sim.token, base_url=sim.base_url, email=DEMO_ACCOUNT) as kling:
            summary = await _run_jobs(kling, jobs, out, display)
        stats = sim.stats
    display.summary(summary, out)
    display.line(
        f"{stats['tasks_created']} tasks, {stats['polls']} polls, peak running "
        f"{max(stats['peak_running'].values())} in {time.monotonic() - started:.1f} s"
    )
    return EXIT_OK if summary.ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
