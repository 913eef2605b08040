"""The lower layer's failures made safe to show and chain: aiohttp keeps the request's
headers (the token) in ``request_info`` and in the locals of its own frames, so a failure
is chained only as a copy without them (`scrubbed`), described without its repr
(`describe_error`) and mapped to `TransportError` in one place (`transport_error`).
"""

from __future__ import annotations

import asyncio
import copy
import os
import types
from typing import Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import TransportError

__all__ = ["TRANSPORT_FAILURES", "describe_error", "scrubbed", "transport_error"]

#: The lower layer's failures that `transport_error` maps: every one is a `TransportError`.
TRANSPORT_FAILURES: Final = (aiohttp.ClientError, asyncio.TimeoutError)


def describe_error(exc: BaseException) -> str:
    """An exception as text without its repr: aiohttp's reprs show the request headers."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scrubbed(exc: BaseException) -> BaseException:
    """A copy of an aiohttp or asyncio failure safe to chain: without the request's headers
    (the token), without aiohttp's own frames (their locals hold the headers) and without
    the failures it was raised from (their frames hold them too)."""
    try:
        clean = copy.copy(exc)
    except Exception:  # noqa: BLE001 - a class that cannot be copied: cut the original
        clean = exc
    info = getattr(exc, "request_info", None)
    if isinstance(info, aiohttp.RequestInfo):
        clean.request_info = aiohttp.RequestInfo(  # type: ignore[attr-defined]
            info.url, info.method, CIMultiDictProxy(CIMultiDict()), info.real_url
        )
    clean.__traceback__ = _own_frames(exc.__traceback__)
    clean.__cause__ = clean.__context__ = None
    clean.__suppress_context__ = True
    return clean


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def _own_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` cut at the first frame outside this package: aiohttp's own frames hold the
    request headers in their locals, which tracebacks rendering locals would show."""
    head = tb
    while tb is not None and tb.tb_next is not None:
        if not tb.tb_next.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            tb.tb_next = None
            break
        tb = tb.tb_next
    return head


def transport_error(exc: BaseException, method: str, path: str, what: str = "") -> TransportError:
    """The `TransportError` for an aiohttp or asyncio failure; raise it ``from
    scrubbed(exc)``, so the raw failure (and the token in its headers) stays out."""
    return TransportError(
        f"{what or f'{method} {path}'} failed: {describe_error(exc)}", method=method, path=path
    )
