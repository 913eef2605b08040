"""Errors a user can cause, told in CLI terms (flags and commands) on one line."""

from __future__ import annotations

import argparse
import re
from typing import Final

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    JobsFileError,
    JournalConflictError,
    KlingError,
    ModerationError,
    NotFoundError,
    RequestValidationError,
    SubmissionUnknownError,
    TransportError,
)
from .interrupt import EXIT_FAILED, EXIT_USAGE

__all__ = ["explain", "one_line"]

#: Python spellings in library messages -> what a CLI user types instead.
_PYTHON_TERMS: Final = (
    (re.compile(r"pass email= or accounts= to KlingClient"), "pass --email (or --account)"),
    (re.compile(r"pass email= to KlingClient"), "pass --email"),
    (re.compile(r"look for it with find_tasks\(\)"), "look for it with 'kling-async tasks'"),
    (
        re.compile(r"use https or pass allow_insecure=True in ClientConfig"),
        "give an https --base-url",
    ),
    (re.compile(r"\bbase_url\b"), "--base-url"),
    (re.compile(r"^token: "), "--token: "),
    (re.compile(r"pass them in extra="), "pass them with --extra FIELD=VALUE"),
    (re.compile(r"\bextra="), "--extra"),
)


def one_line(text: str) -> str:
    """``text`` in CLI terms, folded to one line."""
    for pattern, cli in _PYTHON_TERMS:
        text = pattern.sub(cli, text)
    return " ".join(text.split())


def _url(args: argparse.Namespace, path: str) -> str:
    return f"{str(args.base_url).rstrip('/')}/{path.lstrip('/')}"


def explain(exc: KlingError, args: argparse.Namespace) -> tuple[str, int]:
    """The one-line message for ``exc`` and the exit status it means."""
    if isinstance(exc, ConfigurationError):
        return one_line(str(exc)), EXIT_USAGE
    if isinstance(exc, RequestValidationError | JobsFileError | JournalConflictError):
        problems = "; ".join(getattr(exc, "problems", ()))
        return one_line(f"{exc}: {problems}" if problems else str(exc)), EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return (
            f"401 Unauthorized from {exc.method} {_url(args, exc.path)}: "
            "the API token was refused; check USEAPI_TOKEN/--token"
        ), EXIT_USAGE
    if isinstance(exc, ModerationError):
        return one_line(f"refused by moderation: {exc.error}"), EXIT_FAILED
    if isinstance(exc, BadRequestError) and re.search(r"\bemail\b", exc.error, re.I):
        return one_line(f"{exc.error} (pass --email, or --account for a batch)"), EXIT_USAGE
    if isinstance(exc, NotFoundError):
        status = EXIT_USAGE if _not_an_api(exc) else EXIT_FAILED
        return one_line(
            f"404 Not Found from {exc.method} {_url(args, exc.path)}: {exc.error} "
            "(if everything answers 404, check --base-url)"
        ), status
    if isinstance(exc, TransportError) and not isinstance(exc, SubmissionUnknownError):
        return one_line(
            f"cannot reach {_url(args, exc.path)}: {exc}; check --base-url and the network"
        ), EXIT_USAGE
    return one_line(str(exc)), EXIT_FAILED


def _not_an_api(exc: NotFoundError) -> bool:
    # The API's own 404s carry a JSON error ("task not found"); a wrong base URL answers
    # an HTML or empty page from whatever server is there.
    return not isinstance(exc.body, dict) or "endpoint" in exc.error.lower()
