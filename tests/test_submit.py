"""Submission: the task notes and the one matcher of a lost submission."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import EMAIL, TOKEN, HeldPosts, serve, wait_until

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    RequestInfo,
    RetryPolicy,
    SubmissionUnknownError,
)
from kling_async.accounts import KnownTasks
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator


def test_the_task_notes_are_bounded() -> None:
    """A long-running client forgets the oldest tasks' accounts instead of growing."""
    known = KnownTasks(limit=3)
    ids = [101, 102, 103, 104, 105]
    for task_id in ids:
        known.remember(task_id, "a@example.com")
    assert list(known) == ids[2:]
    assert not known.claimed(ids[0])
    assert known.email(ids[0]) is None  # forgotten: the caller falls back to the default
    known.remember(ids[0], None)
    assert list(known) == [*ids[3:], ids[0]]
    assert known.email(ids[4]) == "a@example.com"


async def test_an_unknown_outcome_reaches_on_unknown_even_when_the_caller_left() -> None:
    """The POST's answer is lost and nothing can be read back: the caller that waits gets
    `SubmissionUnknownError`; one that was cancelled meanwhile learns it only through
    ``KlingClient.on_unknown`` (and the log)."""
    dark = {
        "submit": FaultRates(reset_after=1.0),
        "tasks": FaultRates(server_error=1.0),
        "accounts": FaultRates(server_error=1.0),
    }
    leaving: list[asyncio.Future[Any]] = []

    def caller_leaves(info: RequestInfo) -> None:  # the POST failed: recovery starts next
        if info.method == "POST" and leaving:
            leaving[0].cancel()

    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 5}, job_seconds=60) as sim:
        sim.set_fault_plan(FaultPlan(rules=dark))
        config = ClientConfig(retry=RetryPolicy(max_tries=1))
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=5, config=config,
            on_request=caller_leaves,
        ) as kling:  # fmt: skip
            seen: list[SubmissionUnknownError] = []
            kling.on_unknown = seen.append
            job = KolorsElements(prompt="lost", subject_images=["https://x/a.png"] * 2)
            with pytest.raises(SubmissionUnknownError, match="may exist") as waited:
                await kling.submit(job)
            assert seen == [waited.value]

            left = asyncio.ensure_future(kling.submit(job))
            leaving.append(left)
            await wait_until(lambda: len(seen) == 2)
        assert left.cancelled()
        assert "may exist" in str(seen[1])
        assert sim.stats["tasks_created"] == 2


async def test_a_submission_cancelled_before_its_turn_is_never_sent() -> None:
    """Identical requests go one at a time; one whose caller leaves while it waits for its
    turn is withdrawn: its POST never goes out, even after the one ahead is answered. The
    one ahead tells ``on_sending`` its exact body just before it is sent."""
    service = HeldPosts(77)
    same = KolorsElements(prompt="twins", subject_images=["https://x/a.png"] * 2)
    sending: list[dict[str, Any]] = []
    async with (
        serve(service.app) as root,
        KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, max_jobs=5) as kling,
    ):
        first = asyncio.ensure_future(kling.submit(same, on_sending=sending.append))
        await service.posted.wait()
        second = asyncio.ensure_future(kling.submit(same, on_sending=sending.append))
        await wait_until(lambda: len(kling.jobs.submitter.background) == 2)  # its turn next
        second.cancel()
        service.answer.set()
        assert (await first).task_id == 77
        with pytest.raises(asyncio.CancelledError):
            await second
        await wait_until(lambda: not kling.jobs.submitter.background)
    assert sending == service.bodies  # one POST, told with its exact body
