"""Answers of the simulated service: JSON rendering, the error exception, and the texts.

Texts quoted from the useapi.net pages are verbatim; the others are the simulator's own
choice (the pages do not publish them) and name the field at fault.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from aiohttp import web

__all__ = [
    "ACCOUNT_ERROR_REASON",
    "ASSET_CONTENT_TYPES",
    "AT_LEAST_ONE_IMAGE",
    "AT_LEAST_TWO_IMAGES",
    "BUSY",
    "MODERATION_BODY",
    "OUT_OF_CREDITS",
    "RESOURCE_NOT_FOUND_BODY",
    "SUBSCRIPTION_REQUIRED_BODY",
    "UNAUTHORIZED_BODY",
    "ErrorAnswer",
    "account_error",
    "bad_request",
    "format_retry_after",
    "json_response",
    "out_of_credits",
]

UNAUTHORIZED_BODY: Final = {"error": "Unauthorized", "code": 401}
SUBSCRIPTION_REQUIRED_BODY: Final = {"error": "Subscription required", "code": 402}
# errors.md publishes the 596 text as "Account … in error state …": the simulator fills the
# gaps with the account's email and this reason (or the one a test chooses).
ACCOUNT_ERROR_REASON: Final = (
    "session expired or CAPTCHA required, delete and re-add it with POST /accounts"
)
# 412 is documented for other useapi.net services only ("unconfirmed for Kling"), without
# its text: this one is the simulator's.
OUT_OF_CREDITS: Final = "Insufficient credits: the Kling account's balance is too low for this job"
AT_LEAST_TWO_IMAGES: Final = "At least two images must be provided"
AT_LEAST_ONE_IMAGE: Final = "At least one image (image_0, image_1, image_2 or image_3) is required"
RESOURCE_NOT_FOUND_BODY: Final = {
    "error": "Sorry, the requested resource was not found (VALID.ResourceNotFound)",
    "message": "Not Found",
}
MODERATION_BODY: Final = {
    "error": "The content you uploaded appears to violate the community guidelines."
    " (CM_EXT.POther)",
    "message": "Service busy (CM_EXT.POther)",
}
# The pages call the 429 text unconfirmed; this is the wording of other useapi.net services.
BUSY: Final = "All configured accounts are currently busy executing jobs, please retry later"
ASSET_CONTENT_TYPES: Final = (
    "image/png,image/jpeg,video/mp4,video/quicktime,audio/wav,audio/wave,audio/mpeg,"
    "audio/mp4,audio/flac,audio/aac,audio/ogg"
)


class ErrorAnswer(Exception):
    """An HTTP error answer with a JSON body; raised anywhere, rendered by the server."""

    def __init__(
        self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def bad_request(text: str) -> ErrorAnswer:
    """400 ``{"error": text}``."""
    return ErrorAnswer(400, {"error": text})


def account_error(email: str, reason: str) -> ErrorAnswer:
    """596 ``{"error": "Account <email> in error state: <reason>", "code": 596}``."""
    return ErrorAnswer(596, {"error": f"Account {email} in error state: {reason}", "code": 596})


def out_of_credits() -> ErrorAnswer:
    """412 ``{"error": OUT_OF_CREDITS}``: the Kling account cannot pay for the job."""
    return ErrorAnswer(412, {"error": OUT_OF_CREDITS})


def format_retry_after(seconds: float) -> str:
    """``Retry-After`` value: whole seconds when whole ("1"), else up to 3 decimals ("0.25")."""
    if seconds == math.floor(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0")


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact UTF-8 JSON answer."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(
        body=data, status=status, headers=headers, content_type="application/json", charset="utf-8"
    )
