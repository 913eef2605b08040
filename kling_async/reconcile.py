"""Settling an ambiguous POST: by identity (its tag in ``GET /scheduler``), else strictly.

The one matcher of a lost submission (`matches_submission`), the clock offset it allows
for, the tag every POST carries, and `Reconciler.reconcile`, used by `kling_async.submit`
after a failed POST and by the batch's resume (`kling_async.batch.lost`) alike. See
`kling_async.submit` for the money rules.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

from .accounts import RECOVERY_MAX_PAGES, RECOVERY_PAGE_SIZE, Scheduler
from .config import ClientConfig, sleep_scaled
from .convert import structure_task
from .errors import KlingError, SubmissionUnknownError
from .models import ScheduledJob, Task, TaskResponse
from .requests import GenerationRequest
from .transport import Transport, describe_error

__all__ = [
    "CLOCK_SLACK_SECONDS",
    "ECHOED_SETTINGS",
    "ClockOffset",
    "Reconciler",
    "TaskFinder",
    "is_minted",
    "matches_submission",
    "new_tag",
    "tagged",
]

log = logging.getLogger("kling_async")

R = TypeVar("R", bound=GenerationRequest)

#: Settings the task list echoes under the body's own wire name.
ECHOED_SETTINGS: Final = ("aspect_ratio", "imageCount", "duration", "negative_prompt", "mode")
#: Allowance on the measured clock offset (the server's createTime may come from another
#: clock than the one answering the POST).
CLOCK_SLACK_SECONDS: Final = 5.0


def new_tag() -> str:
    """A fresh submission tag (sent as ``replyRef``): unguessable and unique."""
    return f"ka-{secrets.token_urlsafe(18)}"


_MINTED: Final = re.compile(r"ka-[A-Za-z0-9_-]{24}")


def is_minted(tag: object) -> bool:
    """Whether ``tag`` has the form of `new_tag`'s: only such a tag, unguessable and never
    given twice, proves that a job running under it is the submission's. A caller's own
    ``reply_ref`` (an order id, a batch name) may be shared by several submissions."""
    return isinstance(tag, str) and _MINTED.fullmatch(tag) is not None


def tagged(request: R) -> R:
    """``request`` with a tag: its own ``reply_ref``, else a new one (`new_tag`) when its
    endpoint takes ``replyRef`` (an endpoint that does not is settled by matching alone).
    A ``replyRef`` the caller put in ``extra`` is left alone: not minted here, it cannot
    prove whose the task is, so such a submission is settled by matching alone too."""
    if request.reply_ref is not None or not type(request).callbacks or "replyRef" in request.extra:
        return request
    return request.with_reply_ref(new_tag())


def _body_urls(body: Mapping[str, Any]) -> set[str]:
    """Every input URL of a body (any endpoint's: images, videos, audio)."""
    return {
        v
        for k, v in body.items()
        if k != "replyUrl" and isinstance(v, str) and v.startswith(("http://", "https://"))
    }


def matches_submission(
    task: TaskResponse, body: Mapping[str, Any], *, inputs_known: bool = True
) -> bool:
    """Whether ``task`` (from the task list) may be the one the POST of ``body`` created:
    the same prompt, every input URL it echoes among the body's, every setting it echoes
    equal. An input the task does not echo is unknown, not a mismatch (the list echoes
    only some images). The one matcher: submissions and the batch's resume use it; callers
    also check the creation time and that no other submission claims the task.
    ``inputs_known=False``: the body's inputs were not recorded (a schema-1 journal row):
    every echoed input is unknown."""
    if task.task_id is None:
        return False
    echoed = task.arguments
    if (echoed.get("prompt") or None) != (body.get("prompt") or None):
        return False
    info = task.task.task_info if task.task is not None else None
    inputs = {i.url for i in info.inputs if i.url} if info is not None else set()
    if inputs_known and not inputs <= _body_urls(body):
        return False
    for name in ECHOED_SETTINGS:
        value = echoed.get(name)
        if value is not None and name in body and str(body[name]) != value:
            return False
    return True


class ClockOffset:
    """The server's clock minus this machine's (ms), bounded from below by the
    ``createTime`` of tasks this client created (the server stamped each between the
    POST's sending and its answer), else by the ``Date`` of the latest answer."""

    def __init__(self) -> None:
        self._lows: deque[int] = deque(maxlen=16)  # recent ones: a stepped clock ages out
        self._date_low: int | None = None

    def observe(self, server_ms: int, received_ms: int) -> None:
        """A task created at ``server_ms`` (server clock) whose answer came at ``received_ms``."""
        self._lows.append(server_ms - received_ms)

    def observe_date(self, date: str, received: float) -> None:
        """An answer with the header ``Date: date`` (server clock, whole seconds) that came
        at ``received`` (`time.time()`); a header that cannot be read is ignored."""
        try:
            stamp = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        if stamp.tzinfo is None:  # "-0000": UTC, said to be of unknown origin
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        # The server wrote the header before the answer came, and truncated its time.
        self._date_low = int(stamp.timestamp() * 1000) - int(received * 1000)

    def earliest(self, sent_ms: int, unmeasured_seconds: float) -> int:
        """The server time before which no task can be the POST sent at ``sent_ms``: the
        measured offset minus `CLOCK_SLACK_SECONDS`, else ``unmeasured_seconds`` before.

        ``createTime`` measures the very clock that stamps tasks, so it wins; the ``Date``
        header (the answering front end's clock, usually the same time) bounds the offset
        when this client created no task yet (a fresh process resuming a batch)."""
        if self._lows:
            low = max(self._lows)
        elif self._date_low is not None:
            low = self._date_low
        else:
            return sent_ms - int(unmeasured_seconds * 1000)
        return sent_ms + low - int(CLOCK_SLACK_SECONDS * 1000)


class TaskFinder(Protocol):
    """`TaskList.find` or a function like it (`KlingClient.find_tasks`)."""

    async def __call__(
        self,
        predicate: Callable[[TaskResponse], bool],
        *,
        since: int,
        email: str | None,
        content_type: str | None = None,
    ) -> tuple[list[TaskResponse], bool]: ...


class Reconciler:
    """Finds the task of a POST whose answer was lost (`reconcile`)."""

    def __init__(self, transport: Transport, config: ClientConfig, find_tasks: TaskFinder) -> None:
        self._transport = transport
        self._config = config
        self._find_tasks = find_tasks
        self._scheduler = Scheduler(transport)
        #: The server's clock offset, measured from this client's own submissions.
        self.clock = ClockOffset()

    @property
    def follow_interval(self) -> float:
        """Seconds between looks for the tag of a POST whose outcome is unknown."""
        return max(self._config.poll.interval, self._config.recovery_confirm_delay)

    def _earliest(self, sent_at: int) -> int:
        """`ClockOffset.earliest`, after the ``Date`` of the latest answer (the
        scheduler's, read just before) was taken into account."""
        seen = self._transport.last_date
        if seen is not None:
            self.clock.observe_date(*seen)
        return self.clock.earliest(sent_at, self._config.recovery_window)

    async def _scheduled(self) -> list[ScheduledJob] | None:
        """The jobs the scheduler runs now; None when it cannot answer."""
        try:
            return await self._scheduler.running()
        except KlingError as exc:
            log.debug("the scheduler cannot answer (%s)", describe_error(exc))
            return None

    async def find_tag(self, tag: str, email: str | None) -> ScheduledJob | bool | None:
        """The running job submitted with ``tag`` (on ``email``), False when the scheduler
        answered without it, None when it could not answer or several jobs carry it (a
        caller's tag may be shared: one of them may be the submission's)."""
        jobs = await self._scheduled()
        if jobs is None:
            return None
        ours = [j for j in jobs if j.reply_ref == tag and j.id and (not email or j.email == email)]
        if not ours:
            return False
        return ours[0] if len(ours) == 1 else None

    async def _adopt(self, job: ScheduledJob, email: str | None) -> TaskResponse:
        """The task of a job the scheduler lists under our tag (its id alone when the
        task cannot be read now: the waiter reads it later)."""
        assert job.id is not None
        params = {"email": job.email or email or ""} if job.email or email else None
        try:
            return structure_task(
                await self._transport.call("GET", f"tasks/{job.id}", params=params)
            )
        except KlingError as exc:
            log.debug("task %s: not read after recovery (%s)", job.id, describe_error(exc))
            return TaskResponse(task=Task(id=job.id))

    async def reconcile(
        self,
        body: Mapping[str, Any],
        *,
        endpoint: str,
        email: str | None,
        sent_at: int,
        confirm_delay: float,
        claimed: Callable[[int | None], bool],
        why: str,
        request: GenerationRequest | None = None,
        content_type: str | None = None,
        inputs_known: bool = True,
        passthrough: tuple[type[KlingError], ...] = (),
    ) -> TaskResponse | None:
        """The task the POST of ``body`` (sent at ``sent_at``, epoch ms) created, or None
        when surely none was; `SubmissionUnknownError` (``why`` first) when it cannot be
        told. Identity first (the body's ``replyRef`` in the scheduler), then the strict
        task-list search; ``claimed(task_id)``: owned by another submission or journal row.
        "None was created" is concluded only after ``confirm_delay`` seconds; errors of
        the task list in ``passthrough`` are raised as they are."""
        tag = body.get("replyRef")
        proves = is_minted(tag)  # a caller's own replyRef only narrows the candidates
        if content_type is None:
            content_type = "video" if endpoint.startswith("videos/") else "image"

        def unknown(text: str, candidates: tuple[int, ...] = ()) -> SubmissionUnknownError:
            return SubmissionUnknownError(
                f"{why}{text}",
                method="POST",
                path=endpoint,
                request=request,
                email=email,
                sent_at=sent_at,
                candidates=candidates,
            )

        # Tasks the scheduler runs under another tag are someone else's, whatever they
        # resemble; those under a caller's tag (``seen``) may be ours.
        foreign: set[int] = set()
        seen: set[int] = set()

        def mine(task: TaskResponse) -> bool:
            return (
                not claimed(task.task_id)
                and task.task_id not in foreign
                and matches_submission(task, body, inputs_known=inputs_known)
            )

        matches: list[TaskResponse] = []
        complete = answered = False
        for look in range(2):
            if look:
                await sleep_scaled(confirm_delay)
            jobs = await self._scheduled()
            answered = jobs is not None
            if jobs is not None:
                ours = [j for j in jobs if tag and j.reply_ref == tag and not claimed(j.id)]
                if proves and len(ours) == 1:
                    return await self._adopt(ours[0], email)
                if proves and ours:
                    ids = tuple(j.id for j in ours if j.id)
                    raise unknown(f"; {len(ids)} running jobs carry its tag: {list(ids)}", ids)
                seen |= {j.id for j in ours if j.id}
                if tag:  # an untagged body may still have gone out tagged (push mode)
                    foreign |= {j.id for j in jobs if j.id and j.id not in seen}
                if look == 0:
                    continue  # not running yet: the list is read after the confirm delay
            since = self._earliest(sent_at)
            try:
                matches, complete = await self._find_tasks(
                    mine, since=since, email=email, content_type=content_type
                )
            except passthrough:
                raise  # the caller's to handle (the batch leaves a broken account's rows)
            except KlingError as exc:
                raise unknown(
                    f" and the task list could not be read ({exc}); the job may exist: "
                    "check before resubmitting"
                ) from exc
            if matches:
                break
        if (
            len(matches) == 1
            and complete
            and (not (tag and answered) or matches[0].task_id in seen)
        ):
            return matches[0]  # read back to the POST: no second candidate
        if len(matches) == 1 and complete:
            # The scheduler answered without the tag: this look-alike ended before it was
            # seen, and could be another client's identical request as well as ours.
            raise unknown(
                f"; task {matches[0].task_id} resembles it but was never seen under its tag "
                "(it may be another client's identical request): check before resubmitting",
                (matches[0].task_id or 0,),
            )
        if not matches and complete:
            return None
        if not complete:
            raise unknown(
                f" and the task list holds more than {RECOVERY_PAGE_SIZE * RECOVERY_MAX_PAGES} "
                "tasks since then; the job may exist: check before resubmitting",
                tuple(t.task_id for t in matches if t.task_id),
            )
        ids = tuple(t.task_id for t in matches if t.task_id)
        raise unknown(f"; {len(matches)} tasks could be it: {list(ids)}", ids)
