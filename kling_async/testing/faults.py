"""Seeded fault injection: which request gets which fault.

A :class:`FaultPlan` gives, per endpoint group, the probability of each fault kind. Every
request of a group with rules draws exactly one number from that group's own seeded RNG, so
the same plan and the same order of requests give the same faults.

Groups: ``submit`` (POST generation endpoints), ``tasks`` (GET /tasks/{id} and the task
list), ``assets`` (POST /assets, GET /assets/download), ``accounts`` (GET /accounts...,
/scheduler...), ``files`` (result and upload files, the "CDN").

Kinds, in the order the draw checks them:

- ``server_error``: 500 JSON ``{"error": "Internal Server Error"}``, then 502 and 503 HTML
  pages, in turn, before anything is created.
- ``rate_limit``: 429 with ``Retry-After`` before anything is created.
- ``reset``: the connection is closed without an answer before anything is created.
- ``reset_after``: the request is carried out (a task is created), then the connection is
  closed without an answer.
- ``delay``: the request is carried out, then the answer waits ``delay_seconds``.
- ``malformed``: the request is carried out, then the answer body is cut in half.
- ``slow_create``: the request is held ``create_seconds`` before it is carried out (the
  service is still processing it: a task appears only then, even when the client has
  gone meanwhile), then answered.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = ["FAULT_GROUPS", "FAULT_KINDS", "FaultInjector", "FaultPlan", "FaultRates"]

FAULT_KINDS: Final = (
    "server_error",
    "rate_limit",
    "reset",
    "reset_after",
    "delay",
    "malformed",
    "slow_create",
)
FAULT_GROUPS: Final = ("submit", "tasks", "assets", "accounts", "files")


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen(kw_only=True)
class FaultRates:
    """Probability (0..1) of each fault kind for one endpoint group; they must sum to <= 1."""

    server_error: float = attrs.field(default=0.0, validator=_probability)
    rate_limit: float = attrs.field(default=0.0, validator=_probability)
    reset: float = attrs.field(default=0.0, validator=_probability)
    reset_after: float = attrs.field(default=0.0, validator=_probability)
    delay: float = attrs.field(default=0.0, validator=_probability)
    malformed: float = attrs.field(default=0.0, validator=_probability)
    slow_create: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        if sum(self.as_tuple()) > 1.0 + 1e-9:
            raise ValueError("fault rates must sum to at most 1")

    def as_tuple(self) -> tuple[float, ...]:
        """The rates in :data:`FAULT_KINDS` order."""
        return attrs.astuple(self)


def _rules(value: Mapping[str, FaultRates]) -> dict[str, FaultRates]:
    unknown = set(value) - set(FAULT_GROUPS)
    if unknown:
        raise ValueError(f"unknown fault groups {sorted(unknown)}; use {', '.join(FAULT_GROUPS)}")
    return dict(value)


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Seeded fault rates per endpoint group.

    Example::

        FaultPlan(seed=1, rules={"tasks": FaultRates(server_error=0.1, reset=0.05)},
                  retry_after=0.2, delay_seconds=1.0)
    """

    seed: int = 0
    rules: Mapping[str, FaultRates] = attrs.field(factory=dict, converter=_rules)
    retry_after: float = 1.0
    """Seconds sent in ``Retry-After`` (and ``retryAfter``) with an injected 429."""
    delay_seconds: float = 2.0
    """How long a ``delay`` fault holds the answer."""
    create_seconds: float = 0.5
    """How long a ``slow_create`` fault holds the request before carrying it out."""


class FaultInjector:
    """Draws the fault (or None) for each request, one seeded RNG per group."""

    __slots__ = ("_cumulative", "_errors_sent", "_rngs", "plan")

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rngs = {
            g: random.Random(f"{plan.seed}:{g}")  # noqa: S311 (seeded on purpose)
            for g in plan.rules
        }
        self._cumulative: dict[str, list[tuple[float, str]]] = {}
        for group, rates in plan.rules.items():
            total = 0.0
            steps = []
            for kind, rate in zip(FAULT_KINDS, rates.as_tuple(), strict=True):
                total += rate
                steps.append((total, kind))
            self._cumulative[group] = steps
        self._errors_sent = dict.fromkeys(plan.rules, 0)

    def draw(self, group: str) -> str | None:
        """The fault kind for the next request of ``group``, or None."""
        rng = self._rngs.get(group)
        if rng is None:
            return None
        u = rng.random()
        for bound, kind in self._cumulative[group]:
            if u < bound:
                return kind
        return None

    def next_server_error_status(self, group: str) -> int:
        """500, 502, 503, 500, ...: the status of the next injected server error."""
        n = self._errors_sent[group]
        self._errors_sent[group] = n + 1
        return (500, 502, 503)[n % 3]
