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
failed, 2 bad arguments or input (nothing was sent), 130 interrupted, 141 stdout was
closed by its reader (``kling-async endpoints | head -1``: quietly, as Unix tools do).
Progress bars and tables need rich (``pip install "kling-async[cli]"``); without it, or
when stdout is not a terminal, output is plain lines. The token is never printed.

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
import signal
import sys
import threading
from collections.abc import Sequence

from ..errors import KlingError
from .commands import cmd_batch, cmd_generate, cmd_task, cmd_upload
from .demo import cmd_demo
from .display import Display
from .failure import explain, one_line
from .interrupt import (
    CTRL_C,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CtrlC,
    Interrupted,
    UsageError,
    interrupted_text,
    resume_command,
)
from .listing import cmd_accounts, cmd_tasks
from .parser import build_parser

__all__ = ["Display", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kling-async``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error (status 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "simulate":
        from ..testing import run_from_args

        try:
            return run_from_args(args)
        except OSError as exc:  # the port is taken, or the host is not this machine's
            print(f"kling-async simulate: error: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    _setup_logging(args.verbose)
    display = Display()
    # Like asyncio.run: Ctrl-C is handled only where SIGINT has Python's default handler
    # (not when the program was started with SIGINT ignored, as a background job).
    ctrl_c = (
        CtrlC()
        if threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        else None
    )
    try:
        return asyncio.run(_dispatch(args, display, ctrl_c))
    except UsageError as exc:
        return _fail(args, one_line(str(exc)), EXIT_USAGE, "usage")
    except KlingError as exc:
        message, status = explain(exc, args)
        return _fail(args, message, status, type(exc).__name__)
    except BrokenPipeError:
        return _stdout_closed(args)
    except OSError as exc:  # a file or folder named on the command line, or a busy port
        where = f" {str(exc.filename)!r}" if exc.filename else ""
        return _fail(args, f"{exc.strerror or exc}{where}", EXIT_USAGE, "OSError")
    except Interrupted as exc:
        print(interrupted_text(args, exc.unanswered, exc.tasks), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(interrupted_text(args), file=sys.stderr)
        return EXIT_INTERRUPTED


def _stdout_closed(args: argparse.Namespace) -> int:
    """The reader of stdout went away (``kling-async endpoints | head -1``): stop quietly,
    as Unix tools do, with the status of a program ended by SIGPIPE. A batch says on stderr
    how to resume it (its journal has every task id)."""
    try:
        # The interpreter flushes stdout at exit: into the closed pipe, that would print
        # "Exception ignored ... BrokenPipeError".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (embedded, captured)
        pass
    if args.command == "batch":
        print(
            f"kling-async batch: stdout was closed; stopped. Resume with the same command:\n"
            f"  {resume_command(args)}",
            file=sys.stderr,
        )
    return EXIT_BROKEN_PIPE


def _fail(args: argparse.Namespace, message: str, status: int, kind: str) -> int:
    """One line on stderr (and, with --json, a JSON object on stdout)."""
    if getattr(args, "json", False):
        error = {"error": message, "type": kind, "exit": status}
        print(json.dumps(error, ensure_ascii=False), flush=True)
    head = "error: " if status == EXIT_USAGE else ""  # a usage error, or a job/request failed
    print(f"kling-async {args.command}: {head}{message}", file=sys.stderr)
    return status


async def _dispatch(args: argparse.Namespace, display: Display, ctrl_c: CtrlC | None) -> int:
    if ctrl_c is not None:
        ctrl_c.install()
        CTRL_C.set(ctrl_c)
    try:
        return await _run_command(args, display)
    except asyncio.CancelledError:
        if ctrl_c is None or not ctrl_c.presses:
            raise
        # Carried out of asyncio.run: CTRL_C is set in the command's own context only.
        raise Interrupted(ctrl_c.unanswered, ctrl_c.tasks) from None
    finally:
        if ctrl_c is not None:
            ctrl_c.uninstall()


async def _run_command(args: argparse.Namespace, display: Display) -> int:
    from . import generate

    commands = {
        "generate": generate.cmd_generate,
        "endpoints": generate.cmd_endpoints,
        "demo": cmd_demo,
        "image": cmd_generate,
        "video": cmd_generate,
        "task": cmd_task,
        "upload": cmd_upload,
        "batch": cmd_batch,
        "tasks": cmd_tasks,
        "accounts": cmd_accounts,
    }
    return await commands[args.command](args, display)


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
