"""Accounts and their tasks: which account a call goes to, ``GET /accounts``, the task
list (``GET /tasks/``, pages and searching), and the tasks a client knows.

The account of a call is the one given, else the client's default; with no account
configured, the token's only account is read once from ``GET /accounts`` (useapi.net's
own scripts always send the email: some lookups answer 400 without it).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs
from cattrs.gen import make_dict_structure_fn, override

from .config import check_max_jobs
from .convert import CONVERTER, structure, structure_task, wire_name
from .errors import ConfigurationError, KlingError, PayloadError, RequestValidationError
from .models import Account, AccountCapacity, ScheduledJob, SchedulerCapacity, TaskResponse
from .transport import Transport, describe_error

__all__ = [
    "RECOVERY_MAX_PAGES",
    "RECOVERY_PAGE_SIZE",
    "RELEASED",
    "TASKS_REMEMBERED",
    "Accounts",
    "KnownTasks",
    "Scheduler",
    "TaskList",
    "email_params",
]

log = logging.getLogger("kling_async")

#: The task list is read in pages of this size when looking for the task of a failed POST,
#: newest first, back to the recovery window; past the last page the task cannot be ruled
#: out (a busy account creates more than a page of tasks while one POST times out).
RECOVERY_PAGE_SIZE: Final = 100
RECOVERY_MAX_PAGES: Final = 20
#: The text of a successful ``DELETE /scheduler/{task_id}``.
RELEASED: Final = "Task was successfully canceled."
#: Tasks whose account (and "claimed" mark, for recovery) a client remembers: a long-
#: running client forgets the oldest.
TASKS_REMEMBERED: Final = 100_000


class KnownTasks:
    """The tasks a client knows (submitted, recovered or waited on) and their accounts:
    a known task is claimed, so a recovery never adopts it. The oldest are forgotten past
    `TASKS_REMEMBERED`."""

    def __init__(self, limit: int = TASKS_REMEMBERED) -> None:
        self._email: dict[int, str | None] = {}
        self._limit = limit

    def remember(self, task_id: int, email: str | None) -> None:
        """Note a task's account (and claim it)."""
        self._email[task_id] = email
        if len(self._email) > self._limit:
            del self._email[next(iter(self._email))]

    def claimed(self, task_id: int | None) -> bool:
        """Whether the task is known (another submission's, or waited on)."""
        return task_id in self._email

    def email(self, task_id: int | None) -> str | None:
        """The account a known task runs on (None: unknown)."""
        return self._email.get(task_id) if task_id else None

    def __iter__(self) -> Iterator[int]:
        return iter(self._email)


class TaskList:
    """``GET /tasks/``: pages of an account's task list, and searching it."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def page(
        self,
        email: str | None,
        *,
        content_type: str | None = None,
        page_size: int | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
    ) -> list[TaskResponse]:
        """One page of tasks, newest first (times in epoch ms)."""
        params = email_params(
            email,
            contentType=content_type,
            pageSize=page_size,
            createdAfter=created_after,
            createdBefore=created_before,
        )
        data = await self._transport.call("GET", "tasks/", params=params)
        history = data.get("history") if isinstance(data, Mapping) else None
        return [structure_task(item) for item in history or () if isinstance(item, Mapping)]

    async def find(
        self,
        predicate: Callable[[TaskResponse], bool],
        *,
        since: int,
        email: str | None,
        content_type: str | None = None,
        page: Callable[..., Awaitable[list[TaskResponse]]] | None = None,
    ) -> tuple[list[TaskResponse], bool]:
        """Tasks created since ``since`` (epoch ms) for which ``predicate`` holds, newest first,
        and whether the list was read all the way back to ``since``.

        Pages are read newest first, each older than the last one's oldest task, all the
        way back to ``since`` (a second match further back makes one match ambiguous) or
        until enough pages to cover a busy account were read. When the second value is
        False and nothing matched, the task list could not rule out that such a task
        exists. A short page is not taken as the end of the list (the server may cap
        ``pageSize``): only an empty page, or a task older than ``since``, is.

        ``page`` reads one page (default: `TaskList.page`).
        """
        read = page or self.page
        found: dict[int, TaskResponse] = {}
        before: int | None = None
        complete = False
        for _ in range(RECOVERY_MAX_PAGES):
            tasks = await read(
                email,
                content_type=content_type,
                page_size=RECOVERY_PAGE_SIZE,
                created_before=before,
            )
            if not tasks:
                complete = True
                break
            fresh = {t.task_id: t for t in tasks if t.task_id and t.task_id not in found}
            found.update(fresh)
            times = [t.task.create_time for t in tasks if t.task and t.task.create_time]
            if times and min(times) <= since:
                complete = True
                break
            if not times:
                break  # nothing to page by: the rest cannot be read
            if fresh:
                before = min(times) + 1  # +1: tasks of that same millisecond are not skipped
            elif before != min(times):
                before = min(times)  # only that millisecond's tasks again: step past them
            else:
                break  # no progress: the rest cannot be read
        matches = [
            t
            for t in found.values()
            if predicate(t) and not (t.task and t.task.create_time and t.task.create_time < since)
        ]
        return matches, complete


def check_email(email: object, field: str) -> None:
    """Refuse what cannot be a Kling account's email (it goes into URLs and bodies), naming
    the option, before anything is sent."""
    if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise ConfigurationError(f"{field}: {email!r} is not an email address (user@host)")


def check_task_id(task_id: object) -> None:
    """Refuse a task id that is not a positive integer (callers without a type checker
    pass strings too), naming the field, before anything is sent."""
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
        raise RequestValidationError(
            f"task_id: must be a positive integer, got {task_id!r}", field="task_id"
        )


def email_params(email: str | None, **more: Any) -> dict[str, str]:
    """Query parameters: ``more`` without the None values, and ``email`` when given."""
    params = {k: str(v) for k, v in more.items() if v is not None}
    if email:
        params["email"] = email
    return params


class Accounts:
    """The configured accounts (email -> max_jobs; ``""``: the token's only account, not
    named) and the default one, ``email`` (learnt from the server when not given)."""

    def __init__(
        self, transport: Transport, configured: Mapping[str, int | None], email: str | None
    ) -> None:
        self._transport = transport
        self.configured = dict(configured)
        self.email = email
        self._probe: asyncio.Future[Any] | None = None

    @classmethod
    def configure(
        cls,
        transport: Transport,
        email: str | None,
        max_jobs: int | None,
        accounts: Mapping[str, int | None] | None,
    ) -> Accounts:
        """The accounts of `KlingClient`'s arguments, checked (`ConfigurationError`)."""
        if accounts is not None and max_jobs is not None:
            raise ConfigurationError("give max_jobs per account in accounts=, not max_jobs=")
        check_max_jobs(max_jobs)
        if accounts is not None and not isinstance(accounts, Mapping):
            raise ConfigurationError("accounts: must map emails to max_jobs (or None)")
        if email is not None:
            check_email(email, "email")
        for account in accounts or {}:
            check_email(account, "accounts")
        configured = {
            a: check_max_jobs(n, f"max_jobs for {a}") for a, n in (accounts or {}).items()
        }
        if email is not None and configured and email not in configured:
            raise ConfigurationError(f"email {email!r} is not one of accounts=")
        if not configured:
            configured = {email or "": max_jobs}
        if email is None and len(configured) == 1:
            email = next(iter(configured)) or None
        return cls(transport, configured, email)

    def for_call(self, email: str | None) -> str | None:
        """The account a call goes to (given, else the default); an unknown one is refused
        (any email when none is configured: the server knows the accounts)."""
        email = email or self.email
        if email and "" not in self.configured and email not in self.configured:
            known = ", ".join(sorted(self.configured))
            raise RequestValidationError(
                f"email: {email!r} is not a configured account ({known})", field="email"
            )
        return email

    async def get(self, email: str) -> Account:
        """``GET /accounts/{email}``: the account's configuration, ``max_jobs`` included."""
        return structure(await self._transport.call("GET", f"accounts/{email}"), Account)

    async def list(self) -> dict[str, Account]:
        """``GET /accounts``: every configured account, by email."""
        data = await self._transport.call("GET", "accounts")
        if not isinstance(data, Mapping):
            raise PayloadError("GET accounts: expected an object keyed by email")
        return {k: structure(v, Account) for k, v in data.items() if isinstance(v, Mapping)}

    def learn_email(self, email: str) -> None:
        if self.email is None and "" in self.configured and email:
            self.email = email
            log.debug("the token's only account is %s", email)

    async def with_default(self, email: str | None) -> str | None:
        """``email``, else the default account's; with none configured, the token's only
        account is read once from GET /accounts (some lookups answer 400 without it)."""
        if email or self.email is not None or "" not in self.configured:
            return email or self.email
        if self._probe is None:
            # One attempt, no retries: this only improves the request that follows.
            self._probe = asyncio.ensure_future(self._transport.attempt("GET", "accounts"))
            # Retrieved here too, so a probe whose callers all left is not reported.
            self._probe.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            found = await asyncio.shield(self._probe)
        except KlingError as exc:
            self._probe = None  # try again next time
            log.debug(
                "could not read the default account (%s); sending no email", describe_error(exc)
            )
            return None
        if isinstance(found, Mapping) and len(found) == 1:
            self.learn_email(str(next(iter(found))))
        return self.email

    async def email_of(self, account: str) -> str:
        """``account``'s email; for ``""`` (the token's only account, not named) the one
        ``GET /accounts`` lists. Shared job slots are keyed by it, so that processes on
        other tokens or other defaults never share one key (and no token is stored).
        `ConfigurationError` when the token has several accounts: name one."""
        if account or self.email:
            return account or str(self.email)
        found = await self.list()
        if len(found) != 1:
            raise ConfigurationError(
                f"{len(found)} accounts are configured on useapi.net: shared job slots need "
                "the account's email; pass email= or accounts= to KlingClient"
            )
        self.learn_email(next(iter(found)))
        return next(iter(found))

    async def fetch_max_jobs(self, email: str) -> int:
        if email:
            account = await self.get(email)
        else:
            found = await self.list()
            if len(found) != 1:
                raise ConfigurationError(
                    f"{len(found)} accounts are configured on useapi.net: pass email= or "
                    "accounts= to KlingClient"
                )
            account = next(iter(found.values()))
            self.learn_email(next(iter(found)))
        if not account.max_jobs:
            raise ConfigurationError(f"account {email or '(default)'} reports no maxJobs")
        log.debug("account %s: maxJobs %s", email or "(default)", account.max_jobs)
        return account.max_jobs


_M = TypeVar("_M", ScheduledJob, AccountCapacity)


_HOOKS: dict[type[Any], Callable[[Any, Any], Any]] = {}


def _hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    # cattrs' own generated hook with the wire renames, on the package's tolerant converter.
    if cls not in _HOOKS:
        renames: dict[str, Any] = {f.name: override(rename=wire_name(f)) for f in attrs.fields(cls)}
        _HOOKS[cls] = make_dict_structure_fn(cls, CONVERTER, **renames)
    return _HOOKS[cls]


def _items(data: Any, cls: type[_M]) -> tuple[_M, ...]:
    items = data if isinstance(data, list) else ()
    return tuple(_hook(cls)(item, cls) for item in items if isinstance(item, Mapping))


class Scheduler:
    """useapi.net's scheduler (api/accounts.md, "Scheduler"): the jobs it tracks on the
    token (every account, every process), each account's free capacity, and releasing a
    stuck job's slot."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def running(self) -> list[ScheduledJob]:
        """``GET /scheduler``: the jobs running now, with their ``replyRef``."""
        data = await self._transport.call("GET", "scheduler")
        if not isinstance(data, list):
            raise PayloadError("GET scheduler: expected a list of running jobs")
        return list(_items(data, ScheduledJob))

    async def available(self) -> SchedulerCapacity:
        """``GET /scheduler/available``: per-account maxJobs, executing and available."""
        data = await self._transport.call("GET", "scheduler/available")
        if not isinstance(data, Mapping):
            raise PayloadError("GET scheduler/available: expected an object")
        return SchedulerCapacity(
            executing=_items(data.get("executing"), ScheduledJob),
            available=_items(data.get("available"), AccountCapacity),
        )

    async def release(self, task_id: int) -> str:
        """``DELETE /scheduler/{task_id}``: stop tracking a job (its slot frees; the job
        still runs and is charged). The server's text; `NotFoundError` when not running."""
        check_task_id(task_id)
        try:
            # One attempt: its success answer is plain text, which a retry would re-read as
            # a bad payload and send again (to a 404: the job is no longer tracked).
            data = await self._transport.attempt("DELETE", f"scheduler/{task_id}")
        except PayloadError:  # the documented plain-text answer
            return RELEASED
        return data if isinstance(data, str) else RELEASED
