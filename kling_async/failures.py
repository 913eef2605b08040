"""The token kept out of what is shown or stored, and the lower layer's failures made safe
to show and chain.

aiohttp keeps the request's headers (the token) in ``request_info`` and in the locals of
its own frames, so a failure is chained only as a copy without them (`scrubbed`),
described without its repr (`describe_error`) and mapped to `TransportError` in one place
(`transport_error`). A server may echo the token: every answer is `redact`-ed of it before
anything parses, logs or stores it. That works only for a token that cannot occur in an
answer by chance, so `check_token` refuses tokens shorter than `MIN_TOKEN_LENGTH`.
"""

from __future__ import annotations

import asyncio
import copy
import os
import types
from typing import Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import ConfigurationError, TransportError

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TRANSPORT_FAILURES",
    "check_token",
    "describe_error",
    "redact",
    "redact_text",
    "scrubbed",
    "transport_error",
]

#: The shortest API token accepted. A useapi.net token is far longer; a shorter one could
#: not be redacted from answers without mangling them (a one-letter token occurs in every
#: answer: replacing it would break the JSON and the result URLs).
MIN_TOKEN_LENGTH: Final = 8


def check_token(token: str, source: str) -> None:
    """`ConfigurationError` naming ``source`` (``token`` or ``$USEAPI_TOKEN``) unless
    ``token`` is one line of at least `MIN_TOKEN_LENGTH` characters; never shows it."""
    if any(c in token for c in "\r\n\x00"):
        raise ConfigurationError(f"{source}: must be a string without line breaks")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"{source}: must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)} "
            "(a useapi.net API token is much longer: see the useapi.net account page)"
        )


def redact(data: bytes, token: str | None) -> bytes:
    """``data`` (an answer from the server) with every occurrence of ``token`` replaced by
    ``***``."""
    if token and token.encode() in data:
        return data.replace(token.encode(), b"***")
    return data


def redact_text(text: str, token: str | None) -> str:
    """`redact` for text: a failure's message may quote what the server sent."""
    return text.replace(token, "***") if token and token in text else text


#: The lower layer's failures that `transport_error` maps: every one is a `TransportError`.
TRANSPORT_FAILURES: Final = (aiohttp.ClientError, asyncio.TimeoutError)


def describe_error(exc: BaseException, token: str | None = None) -> str:
    """An exception as text without its repr (aiohttp's reprs show the request headers),
    and without ``token`` (its message may quote the server, e.g. a malformed status line)."""
    text = redact_text(str(exc), token)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scrubbed(exc: BaseException, token: str | None = None) -> BaseException:
    """A copy of an aiohttp or asyncio failure safe to chain: without the request's headers
    (the token), without ``token`` in its message or attributes (quoting the server),
    without aiohttp's own frames (their locals hold the headers) and without the failures
    it was raised from (their frames hold them too)."""
    try:
        clean = copy.copy(exc)
    except Exception:  # noqa: BLE001 - a class that cannot be copied: cut the original
        clean = exc
    info = getattr(exc, "request_info", None)
    if isinstance(info, aiohttp.RequestInfo):
        clean.request_info = aiohttp.RequestInfo(  # type: ignore[attr-defined]
            info.url, info.method, CIMultiDictProxy(CIMultiDict()), info.real_url
        )
    if token:
        _redact_attributes(clean, token)
    clean.__traceback__ = _own_frames(exc.__traceback__)
    clean.__cause__ = clean.__context__ = None
    clean.__suppress_context__ = True
    return clean


def _redact_attributes(exc: BaseException, token: str) -> None:
    """Remove ``token`` from ``exc``'s arguments and attributes: text is redacted, any
    other value that shows it is dropped."""
    exc.args = tuple(redact_text(a, token) if isinstance(a, str) else a for a in exc.args)
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if isinstance(value, str):
            setattr(exc, name, redact_text(value, token))
        elif token in repr(value):
            setattr(exc, name, None)


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


def transport_error(
    exc: BaseException, method: str, path: str, what: str = "", token: str | None = None
) -> TransportError:
    """The `TransportError` for an aiohttp or asyncio failure, without ``token``; raise it
    ``from scrubbed(exc, token)``, so the raw failure (and the token in its headers) stays
    out."""
    text = describe_error(exc, token)
    return TransportError(f"{what or f'{method} {path}'} failed: {text}", method=method, path=path)
