"""Typed payloads of the Kling API: the task model and what rides along with it.

Every class is a frozen, slotted, keyword-only attrs class. Python names are the snake_case
of the wire names; the converter (`kling_async.convert`) maps them back. A field whose wire
name is not the plain camelCase of its Python name carries it in ``metadata["wire"]``
(``status_name``, ``aspect_ratio``...). Every field is optional: the API documents all of
them as optional and adds new ones, so structuring is tolerant.

Each class has ``to_dict()`` / ``to_json()`` (wire names, every field) and
``from_dict()`` (their inverse) from `kling_async.payload.WireModel`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final

import attrs

from .payload import WIRE as WIRE  # noqa: PLC0414 (re-exported: convert reads it here)
from .payload import WireModel
from .scheduling import AccountCapacity, ScheduledJob, SchedulerCapacity

__all__ = [
    "FINAL_STATUSES",
    "Account",
    "AccountCapacity",
    "AssetUpload",
    "Limitation",
    "Point",
    "Resource",
    "ScheduledJob",
    "SchedulerCapacity",
    "Task",
    "TaskArgument",
    "TaskInfo",
    "TaskInput",
    "TaskResponse",
    "TaskStatus",
    "Ticket",
    "UserPoints",
    "UserTickets",
    "Work",
]


def _snake(name: str | None = None, default: Any = None) -> Any:
    """A field whose wire name is given explicitly (snake_case on the wire)."""
    return attrs.field(default=default, metadata={WIRE: name} if name else {})


def _ms_to_datetime(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class TaskStatus(enum.Enum):
    """A task's state, from ``status`` / ``status_name``.

    5 (submitted) and 99 (succeed) are published; 10 (processing) and 50 (failed) are
    Kling's usual codes. Anything else is ``UNKNOWN``: never decide finality from this
    alone, use ``TaskResponse.status_final``.
    """

    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> TaskStatus:
        return cls.UNKNOWN

    @classmethod
    def from_wire(cls, status: int | None, status_name: str | None) -> TaskStatus:
        """The state named by ``status_name``, else by the numeric ``status``."""
        if status_name:
            # A dict lookup, not cls(name): the Enum call costs a microsecond per answer.
            found = _NAMES.get(status_name) or _NAMES.get(status_name.strip().lower())
            if found is not None and found is not cls.UNKNOWN:
                return found
        return _CODES.get(status, cls.UNKNOWN) if status is not None else cls.UNKNOWN

    @property
    def code(self) -> int | None:
        """The numeric code Kling uses for this state (None for UNKNOWN)."""
        return _NUMBERS.get(self)


_CODES: Final[Mapping[int, TaskStatus]] = {
    5: TaskStatus.SUBMITTED,
    10: TaskStatus.PROCESSING,
    50: TaskStatus.FAILED,
    99: TaskStatus.SUCCEED,
}
_NUMBERS: Final[Mapping[TaskStatus, int]] = {v: k for k, v in _CODES.items()}
_NAMES: Final[Mapping[str, TaskStatus]] = {s.value: s for s in TaskStatus}

#: The states in which a task never changes again.
FINAL_STATUSES: Final[frozenset[TaskStatus]] = frozenset({TaskStatus.SUCCEED, TaskStatus.FAILED})


@attrs.frozen(kw_only=True)
class Resource(WireModel):
    """A result file: ``resource`` is its URL (watermarked), ``duration`` in milliseconds."""

    resource: str | None = None
    height: int | None = None
    width: int | None = None
    duration: int | None = None
    resource_key: str | None = None


@attrs.frozen(kw_only=True)
class Work(WireModel):
    """One generated output (one image of a KOLORS job, or the video)."""

    work_id: int | None = None
    work_item_id: int | None = None
    task_id: int | None = None
    user_id: int | None = None
    type: str | None = None
    status: int | None = None
    status_name: str | None = _snake("status_name")
    status_final: bool | None = _snake("status_final")
    content_type: str | None = None
    resource: Resource | None = None
    cover: Resource | None = None
    star_num: int | None = None
    clone_count: int | None = None
    report_num: int | None = None
    create_time: int | None = None

    @property
    def url(self) -> str | None:
        """The (watermarked) result URL."""
        return self.resource.resource if self.resource is not None else None

    @property
    def created_at(self) -> datetime | None:
        """``create_time`` as an aware UTC datetime."""
        return _ms_to_datetime(self.create_time)


@attrs.frozen(kw_only=True)
class TaskInput(WireModel):
    """One input of a task (an image URL, by role name)."""

    name: str | None = None
    input_type: str | None = None
    token: str | None = None
    blob_storage: Any = None
    url: str | None = None
    cover: str | None = None
    from_work_id: int | None = None


@attrs.frozen(kw_only=True)
class TaskArgument(WireModel):
    """One ``{name, value}`` argument; values are strings on the wire."""

    name: str | None = None
    value: str | None = None


@attrs.frozen(kw_only=True)
class TaskInfo(WireModel):
    """What the task was asked to do."""

    type: str | None = None
    inputs: tuple[TaskInput, ...] = ()
    arguments: tuple[TaskArgument, ...] = ()
    extra_args: dict[str, Any] | None = None
    callback_payloads: list[Any] | None = None
    scene: str | None = None

    @property
    def args(self) -> dict[str, str | None]:
        """The arguments as a dict (``{"prompt": ..., "duration": "5"}``)."""
        return {a.name: a.value for a in self.arguments if a.name is not None}


@attrs.frozen(kw_only=True)
class Task(WireModel):
    """The task record."""

    id: int | None = None
    user_id: int | None = None
    type: str | None = None
    scene: str | None = None
    status: int | None = None
    status_name: str | None = _snake("status_name")
    status_final: bool | None = _snake("status_final")
    task_info: TaskInfo | None = None
    favored: bool | None = None
    deleted: bool | None = None
    viewed: bool | None = None
    create_time: int | None = None
    update_time: int | None = None
    view_time: int | None = None

    @property
    def created_at(self) -> datetime | None:
        """``create_time`` as an aware UTC datetime."""
        return _ms_to_datetime(self.create_time)

    @property
    def updated_at(self) -> datetime | None:
        """``update_time`` as an aware UTC datetime."""
        return _ms_to_datetime(self.update_time)


@attrs.frozen(kw_only=True)
class Limitation(WireModel):
    """The account's remaining quota for this task type."""

    type: str | None = None
    remaining: int | None = None
    limit: int | None = None


@attrs.frozen(kw_only=True)
class Point(WireModel):
    """A points balance entry."""

    order_id: str | None = None
    type: str | None = None
    amount: float | None = None
    balance: float | None = None
    start_time: int | None = None
    end_time: int | None = None


@attrs.frozen(kw_only=True)
class UserPoints(WireModel):
    """The account's points."""

    points: tuple[Point, ...] = ()
    total: float | None = None


@attrs.frozen(kw_only=True)
class Ticket(WireModel):
    """A ticket (package) balance entry."""

    order_id: str | None = None
    type: str | None = None
    package_type: str | None = None
    amount: float | None = None
    balance: float | None = None
    start_time: int | None = None
    end_time: int | None = None


@attrs.frozen(kw_only=True)
class UserTickets(WireModel):
    """The account's tickets."""

    ticket: tuple[Ticket, ...] = ()


@attrs.frozen(kw_only=True)
class TaskResponse(WireModel):
    """The task model: what the generation endpoints, GET /tasks/{id} and callbacks send.

    Decide with `is_final` / `succeeded` (from ``status_final`` and ``status_name``), never
    from the numeric code alone. ``eta_time`` and ``queuing_eta_time`` are the service's
    estimates of the time left, in milliseconds like every Kling time.
    """

    status: int | None = None
    status_name: str | None = _snake("status_name")
    status_final: bool | None = _snake("status_final")
    message: str | None = None
    error: str | None = None
    eta_time: int | None = None
    eta_time_over_sla: bool | None = None
    queuing_eta_time: int | None = None
    origin_eta_time: int | None = None
    origin_queuing_eta_time: int | None = None
    task: Task | None = None
    works: tuple[Work, ...] = ()
    limitation: Limitation | None = None
    user_points: UserPoints | None = None
    user_tickets: UserTickets | None = None
    edit_project: Any = None
    reply_ref: str | None = None

    @property
    def task_id(self) -> int | None:
        """``task.id``: the id to poll with."""
        return self.task.id if self.task is not None else None

    @property
    def state(self) -> TaskStatus:
        """The state as a `TaskStatus` (``UNKNOWN`` for names and codes not documented)."""
        status, name = self.status, self.status_name
        if status is None and name is None and self.task is not None:
            status, name = self.task.status, self.task.status_name
        return TaskStatus.from_wire(status, name)

    @property
    def is_final(self) -> bool:
        """Whether the task will not change again (the server's ``status_final``)."""
        final = self.status_final
        if final is None and self.task is not None:
            final = self.task.status_final
        return bool(final)

    @property
    def succeeded(self) -> bool:
        """Final with status ``succeed``: useapi.net's own test for success."""
        return self.is_final and self.state is TaskStatus.SUCCEED

    @property
    def failed(self) -> bool:
        """Final with any other status."""
        return self.is_final and self.state is not TaskStatus.SUCCEED

    @property
    def urls(self) -> list[str]:
        """The (watermarked) result URLs, one per work, in order."""
        return [w.url for w in self.works if w.url]

    @property
    def cover_urls(self) -> list[str]:
        """The preview image URLs (videos), one per work that has one."""
        return [w.cover.resource for w in self.works if w.cover and w.cover.resource]

    @property
    def arguments(self) -> dict[str, str | None]:
        """``task.taskInfo.arguments`` as a dict."""
        if self.task is None or self.task.task_info is None:
            return {}
        return self.task.task_info.args

    @property
    def eta_seconds(self) -> float | None:
        """The service's estimate of the seconds left (queue + run), None when absent."""
        eta, queuing = self.eta_time, self.queuing_eta_time
        longest = max(eta or 0, queuing or 0)
        return longest / 1000.0 if longest > 0 else None

    @property
    def failure_reason(self) -> str:
        """The best text explaining a failure (``error``, else ``message``, else the name)."""
        return self.error or self.message or self.status_name or "unknown failure"

    @property
    def created_at(self) -> datetime | None:
        """``task.createTime`` as an aware UTC datetime."""
        return self.task.created_at if self.task is not None else None


@attrs.frozen(kw_only=True)
class AssetUpload(WireModel):
    """The answer of POST /assets: ``url`` goes into an image field of a request."""

    status: int | None = None
    url: str | None = None
    message: str | None = None
    file_name: str | None = None
    resource_url: str | None = None
    cover_url: str | None = None


@attrs.frozen(kw_only=True)
class Account(WireModel):
    """A configured Kling account (GET /accounts/{email}); ``max_jobs`` is its slot count."""

    email: str | None = None
    max_jobs: int | None = None
    session: dict[str, Any] | None = None
    balance: dict[str, Any] | None = None
