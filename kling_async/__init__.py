"""Asyncio client for useapi.net's Kling API v1.

from kling_async import KlingClient, KolorsElements

async with KlingClient() as kling:          # token from $USEAPI_TOKEN
    done = await kling.kolors_elements(prompt="...", subject_images=["a.jpg", "b.jpg"])
    paths = await kling.download(done, "out/")
"""

from ._version import __version__
from .batch import BatchRunner, JobsFileError, Journal, JournalConflictError
from .client import DEFAULT_BASE_URL, ClientConfig, KlingClient, RequestInfo
from .convert import PayloadError, make_converter
from .errors import (
    AccountError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    KlingError,
    ModerationError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from .jobs import JobEvents, JobRunner
from .models import (
    FINAL_STATUSES,
    Account,
    AssetUpload,
    Limitation,
    Point,
    Resource,
    Task,
    TaskArgument,
    TaskInfo,
    TaskInput,
    TaskResponse,
    TaskStatus,
    Ticket,
    UserPoints,
    UserTickets,
    Work,
)
from .requests import GenerationRequest, Image2VideoElements, KolorsElements
from .retry import DEFAULT_RETRY, RetryPolicy, fast_mode, set_time_scale
from .slots import JobSlots, SlotHold
from .waiter import DEFAULT_POLL, PollPolicy, TaskWaiter
from .webhooks import KlingWebhookReceiver

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "FINAL_STATUSES",
    "APIError",
    "Account",
    "AccountError",
    "AssetUpload",
    "AuthenticationError",
    "BadRequestError",
    "BatchRunner",
    "ClientConfig",
    "ConfigurationError",
    "GenerationRequest",
    "Image2VideoElements",
    "JobEvents",
    "JobRunner",
    "JobSlots",
    "JobsFileError",
    "Journal",
    "JournalConflictError",
    "KlingClient",
    "KlingError",
    "KlingWebhookReceiver",
    "KolorsElements",
    "Limitation",
    "ModerationError",
    "NotFoundError",
    "PayloadError",
    "PaymentRequiredError",
    "Point",
    "PollPolicy",
    "RateLimitError",
    "RequestInfo",
    "RequestValidationError",
    "Resource",
    "RetryPolicy",
    "ServerError",
    "SlotHold",
    "SubmissionUnknownError",
    "Task",
    "TaskArgument",
    "TaskFailedError",
    "TaskInfo",
    "TaskInput",
    "TaskResponse",
    "TaskStatus",
    "TaskTimeoutError",
    "TaskWaiter",
    "Ticket",
    "TransportError",
    "UserPoints",
    "UserTickets",
    "Work",
    "__version__",
    "fast_mode",
    "make_converter",
    "set_time_scale",
]
