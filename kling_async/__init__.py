"""Asyncio client for useapi.net's Kling API v1.

from kling_async import KlingClient, KolorsElements

async with KlingClient() as kling:          # token from $USEAPI_TOKEN
    done = await kling.kolors_elements(prompt="...", subject_images=["a.jpg", "b.jpg"])
    paths = await kling.download(done, "out/")
"""

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

__version__ = "0.1.0.dev0"

__all__ = [
    "FINAL_STATUSES",
    "APIError",
    "Account",
    "AccountError",
    "AssetUpload",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "GenerationRequest",
    "Image2VideoElements",
    "KlingError",
    "KolorsElements",
    "Limitation",
    "ModerationError",
    "NotFoundError",
    "PayloadError",
    "PaymentRequiredError",
    "Point",
    "RateLimitError",
    "RequestValidationError",
    "Resource",
    "ServerError",
    "SubmissionUnknownError",
    "Task",
    "TaskArgument",
    "TaskFailedError",
    "TaskInfo",
    "TaskInput",
    "TaskResponse",
    "TaskStatus",
    "TaskTimeoutError",
    "Ticket",
    "TransportError",
    "UserPoints",
    "UserTickets",
    "Work",
    "__version__",
    "make_converter",
]
