"""The slots URL: where the shared pool's Redis is, with the pool's options in its query.

``redis://host:6379/0?lease_seconds=10&down_seconds=5&prefix=app:&fallback=local``: the
pool takes the options below out of the query (so that ``KlingClient(slots=URL)``,
``$KLING_SLOTS`` and the CLI's ``--slots`` can set them); the rest go to redis-py.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = ["POOL_OPTIONS", "pool_options", "without_password"]

#: The `RedisSlotPool` options a slots URL's query may set; ``fallback=local`` sets
#: ``fallback_local``.
POOL_OPTIONS = ("lease_seconds", "poll_seconds", "down_seconds", "prefix", "fallback")


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigurationError(f"slots URL: {name} must be a number of seconds, got {text!r}")
    return value


def pool_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without the pool's own query options, and those options (checked, each
    given once: `ConfigurationError` naming the option otherwise)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"slots URL must start with redis://, rediss:// or unix://: {without_password(url)!r}"
        )
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = {}
    for name, value in query:
        if name not in POOL_OPTIONS:
            continue
        if name in options or (name == "fallback" and "fallback_local" in options):
            raise ConfigurationError(f"slots URL: {name} is given twice")
        if name == "fallback":
            if value != "local":
                raise ConfigurationError(f"slots URL: fallback must be 'local', got {value!r}")
            options["fallback_local"] = True
        elif name == "prefix":
            if not value:
                raise ConfigurationError("slots URL: prefix must not be empty")
            options["prefix"] = value
        else:
            options[name] = _seconds(name, value)
    kept = urlencode([(name, value) for name, value in query if name not in POOL_OPTIONS])
    return urlunsplit(parts._replace(query=kept)), options


def without_password(url: str) -> str:
    """``url`` fit for messages: a password in it replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
