"""The commands that talk to the API: image, video, task, upload, batch."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..batch import (
    JOURNAL_NAME,
    BatchRunner,
    BatchSummary,
    Job,
    JobState,
    Journal,
    job_from_request,
    parse_jobs_file,
)
from ..client import KlingClient
from ..config import UNSET
from ..convert import unstructure
from ..errors import RequestValidationError, TaskFailedError
from ..models import TaskResponse
from ..requests import GenerationRequest, Image2VideoElements, KolorsElements
from ..webhooks import KlingWebhookReceiver
from .display import Display, error_text
from .interrupt import CTRL_C, EXIT_FAILED, EXIT_OK, UsageError

__all__ = [
    "check_out_dir",
    "cmd_batch",
    "cmd_generate",
    "cmd_task",
    "cmd_upload",
    "make_client",
    "problems_text",
    "report_one_job",
    "run_jobs",
    "run_one_job",
    "task_command",
]


def problems_text(exc: Exception) -> str:
    problems = getattr(exc, "problems", ())
    return "\n  ".join([str(exc), *problems]) if problems else str(exc)


def _token(args: argparse.Namespace) -> str:
    token: str | None = args.token or os.environ.get("USEAPI_TOKEN")
    if not token:
        raise UsageError("no API token: pass --token or set USEAPI_TOKEN")
    return token


def make_client(
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
        slots=getattr(args, "slots", None),
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
            extra=dict(args.extra) or None,
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
        extra=dict(args.extra) or None,
    )


async def cmd_generate(args: argparse.Namespace, display: Display) -> int:
    try:
        request = _generation_request(args)
    except RequestValidationError as exc:
        raise UsageError(_in_cli_terms(exc)) from exc
    return await run_one_job(args, display, request)


def _in_cli_terms(exc: RequestValidationError) -> str:
    """A request's refusal in the options' terms: ``--subject #2: ...`` for the library's
    ``subject_images[1]: ...``, the other fields it names as their options too."""
    field = exc.field or ""
    name, _, index = field.partition("[")
    index = index.rstrip("]")
    flag = _FLAGS.get(name, field)
    if index.isdigit():
        flag = f"{flag} #{int(index) + 1}"
    text = str(exc).removeprefix(f"{field}: ") if field else str(exc)
    # Only the two-word names: "images", "mode" or "prompt" are also plain words.
    text = _SNAKE_FIELD.sub(lambda m: _FLAGS.get(m[0], m[0]), text)
    return f"{flag}: {text.replace('a keyword argument', 'an option')}"


async def run_one_job(
    args: argparse.Namespace, display: Display, request: GenerationRequest
) -> int:
    """Run one job (``image``, ``video``, ``generate``): check ``--out`` before anything is
    sent, submit, wait up to ``--timeout``, download, and report it (`report_one_job`)."""
    await asyncio.to_thread(check_out_dir, args.out)
    job = job_from_request(1, request)
    async with make_client(args, max_jobs=1) as kling:  # one job needs one slot
        summary = await run_jobs(
            kling, [job], args.out, display, subfolders=False, quiet=True, timeout=args.timeout
        )
    return report_one_job(summary, args, display)


def report_one_job(summary: BatchSummary, args: argparse.Namespace, display: Display) -> int:
    """Print a one-job run's outcome (``image``, ``video``, ``generate``): its files, or its
    error and, when a task exists that did not fail, the command that fetches it."""
    rec = summary.records[0]
    final = summary.responses.get(1)
    if args.json and final is not None:
        display.json(unstructure(final))
    elif rec.state is JobState.SUCCEEDED:
        for name in rec.files:
            display.line(str(args.out / name))
    else:
        # The journal's "(re-run to ...)" advice is a batch's: a one-job command run
        # again would pay again. The command that fetches the task is printed instead.
        error = re.sub(r" \(re-run to [^)]*\)$", "", error_text(rec.error))
        if rec.task_id is None and rec.state is JobState.PENDING:
            display.line(f"nothing was submitted: {error}")  # the POST never went out
        else:
            display.line(f"task {rec.task_id or '-'}: {rec.state.value}: {error}")
        if rec.task_id is not None and rec.state is not JobState.FAILED:
            # Not final yet (a --timeout ran out): the command waits for it first.
            command = task_command(rec.task_id, rec.email, args.out, wait=not rec.final_state)
            display.line(f"fetch it with: {command}")
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
    "extra": "--extra",
}
_SNAKE_FIELD: Final = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def task_command(task_id: int, email: str | None, out: Path, *, wait: bool = False) -> str:
    """The command that downloads a task's files without submitting anything again."""
    words = ["kling-async", "task", str(task_id)]
    if email:
        words += ["--email", email]
    if wait:  # not ended yet: wait for it first
        words.append("--wait")
    return shlex.join([*words, "--out", str(out)])


def check_out_dir(out: Path) -> None:
    """Create ``out`` and prove it writable, before anything is paid for."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(f"--out: cannot write to {str(out)!r}: {why}") from None


async def run_jobs(
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
    timeout: float | None = None,
) -> BatchSummary:
    """Run ``jobs`` with a progress display; ``timeout``: seconds each job's wait may last
    (None: the client's default). On Ctrl-C, what the resume hint needs is left in
    `CTRL_C`."""
    ctrl_c = CTRL_C.get()
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
                timeout=UNSET if timeout is None else timeout,
            )
            try:
                return await runner.run(jobs, retry_failed=retry_failed)
            except asyncio.CancelledError:
                if ctrl_c is not None:  # for the resume hint: POSTs left without answer
                    records = journal.records()
                    states = [r.state for r in records]
                    ctrl_c.unanswered = states.count(JobState.SUBMITTING)
                    ctrl_c.tasks = [(r.task_id, r.email) for r in records if r.task_id]
                raise


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def cmd_task(args: argparse.Namespace, display: Display) -> int:
    async with make_client(args) as kling:
        try:
            task = await (
                kling.wait(args.task_id, email=args.email, timeout=args.timeout or UNSET)
                if args.wait
                else kling.get_task(args.task_id, args.email)
            )
        except TaskFailedError as exc:
            if exc.task is None:
                raise
            task = exc.task
        paths: list[Path] = []
        if args.out is not None and task.succeeded:
            await asyncio.to_thread(check_out_dir, args.out)
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


async def cmd_upload(args: argparse.Namespace, display: Display) -> int:
    if not args.file.is_file():
        raise UsageError(f"FILE: no such file {str(args.file)!r}")
    async with make_client(args) as kling:
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


async def cmd_batch(args: argparse.Namespace, display: Display) -> int:
    jobs = parse_jobs_file(args.jobs)  # every line checked before anything is sent
    accounts: dict[str, int | None] = {}
    for email, count in args.account:
        accounts[email] = count or args.max_jobs
    _check_accounts(jobs, accounts)
    out: Path = args.out
    await asyncio.to_thread(check_out_dir, out)
    client = make_client(
        args,
        max_jobs=None if accounts else args.max_jobs,
        accounts=accounts or None,
    )
    async with client as kling:
        summary = await run_jobs(
            kling,
            jobs,
            out,
            display,
            journal_path=out / JOURNAL_NAME,
            retry_failed=args.retry_failed,
            resubmit_unknown=args.resubmit_unknown,
            timeout=args.timeout,
        )
    display.summary(summary, out)
    if not summary.ok:
        failed = summary.count(JobState.FAILED)
        again = "; re-run with --retry-failed to submit the failed lines again (pays again)"
        display.line(
            f"re-run the same command to resume{again if failed else ''}; "
            f"the journal is {out / JOURNAL_NAME}"
        )
    return EXIT_OK if summary.ok else EXIT_FAILED
