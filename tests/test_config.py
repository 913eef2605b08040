"""Configuration (`kling_async.config`): the deadline rule, maxJobs bounds, `UNSET`, frozen
validated policies varied with ``attrs.evolve``, and the time-scale test switch (in process
and from the environment). Every bad option of `ClientConfig`: tests/test_bad_input.py."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections.abc import Callable

import attrs
import pytest
from helpers import run_command

from kling_async import ConfigurationError, set_time_scale
from kling_async.config import (
    DEFAULT_CONFIG,
    DEFAULT_IMAGE_TIMEOUT,
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_VIDEO_TIMEOUT,
    MAX_JOBS_RANGE,
    TIME_SCALE_ENV,
    UNSET,
    ClientConfig,
    PollPolicy,
    RetryPolicy,
    Unset,
    check_max_jobs,
    default_deadline,
    delay_scale,
    fast_mode,
    scaled,
    sleep_scaled,
)


def test_time_scale_switch() -> None:
    assert delay_scale() == 0.0
    previous = set_time_scale(0.5)
    try:
        assert previous == 0.0
        assert scaled(4) == 2.0
    finally:
        set_time_scale(previous)
    with pytest.raises(ValueError, match="scale"):
        set_time_scale(-1)


SCALE_PROBE = """
import kling_async
from kling_async.config import delay_scale, scaled
try:
    print(delay_scale(), scaled(2.0))
except kling_async.ConfigurationError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("0.25", "0.25 0.5"),
        ("fast", "KLING_ASYNC_TIME_SCALE must be a number >= 0, got 'fast'"),
        ("-1", "KLING_ASYNC_TIME_SCALE must be a number >= 0, got '-1'"),
    ],
)
def test_time_scale_from_the_environment(value: str, printed: str) -> None:
    """A process (a CLI a test suite runs) starts with the scale in KLING_ASYNC_TIME_SCALE;
    a bad one is refused at the first wait, naming the variable (importing reads nothing)."""
    env = {**os.environ, TIME_SCALE_ENV: value}
    done = run_command([sys.executable, "-c", SCALE_PROBE], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed


@pytest.mark.parametrize(
    ("kind", "expected_seconds", "deadline"),
    [
        ("image", None, DEFAULT_IMAGE_TIMEOUT),
        ("mmu_multi_img2img_aiweb", None, DEFAULT_IMAGE_TIMEOUT),  # a task's wire type
        ("video", None, DEFAULT_VIDEO_TIMEOUT),
        ("m2v_img2video_hq", None, DEFAULT_VIDEO_TIMEOUT),
        (None, None, DEFAULT_VIDEO_TIMEOUT),  # unknown: the generous one
        ("", None, DEFAULT_VIDEO_TIMEOUT),
        ("image", 1000, 6000),  # a long job: six times its own estimate
        ("image", 10, DEFAULT_IMAGE_TIMEOUT),  # ...only when that is more
        ("video", 0, DEFAULT_VIDEO_TIMEOUT),
        ("audio", None, DEFAULT_IMAGE_TIMEOUT),  # speech: short, like an image
    ],
)
def test_default_deadline(
    kind: str | None, expected_seconds: float | None, deadline: float
) -> None:
    assert default_deadline(kind, expected_seconds) == deadline
    assert 0 < DEFAULT_IMAGE_TIMEOUT < DEFAULT_VIDEO_TIMEOUT


def test_check_max_jobs() -> None:
    low, high = MAX_JOBS_RANGE
    assert (low, high) == (1, 50)
    assert check_max_jobs(None) is None  # the account's own maxJobs
    assert check_max_jobs(low) == low
    assert check_max_jobs(high) == high
    for bad in (0, 51, 2.5, "5", True):
        with pytest.raises(ConfigurationError) as caught:
            check_max_jobs(bad, "accounts")
        assert str(caught.value) == f"accounts: must be an integer from 1 to 50, got {bad!r}"
        assert isinstance(caught.value, ValueError)


def test_unset_is_one_object_apart_from_none() -> None:
    assert Unset() is UNSET
    assert UNSET is not None
    assert repr(UNSET) == "UNSET"
    assert pickle.loads(pickle.dumps(UNSET)) is UNSET


def test_a_varied_config_is_checked_again_and_leaves_the_default_alone() -> None:
    shorter = attrs.evolve(DEFAULT_CONFIG, request_timeout=30)
    assert shorter.request_timeout == 30
    assert DEFAULT_CONFIG.request_timeout == ClientConfig().request_timeout == 120
    assert shorter.retry is DEFAULT_RETRY
    assert shorter.poll is DEFAULT_POLL
    with pytest.raises(ConfigurationError, match=r"^ClientConfig\.request_timeout: must be > 0"):
        attrs.evolve(DEFAULT_CONFIG, request_timeout=-1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        DEFAULT_CONFIG.request_timeout = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PollPolicy(jitter=1), "PollPolicy.jitter: must be < 1, got 1"),
        (lambda: PollPolicy(growth=0.5), "PollPolicy.growth: must be >= 1, got 0.5"),
        (lambda: PollPolicy(max_polls_per_second=0), "PollPolicy.max_polls_per_second: must be"),
        (lambda: RetryPolicy(max_tries=0), "RetryPolicy.max_tries: must be an integer >= 1"),
        (lambda: RetryPolicy(max_time=float("nan")), "RetryPolicy.max_time: must be a finite"),
    ],
)
def test_bad_policies_are_refused_by_name(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make()
    assert str(caught.value).startswith(message)


def test_none_means_no_limit_where_a_policy_allows_it() -> None:
    assert RetryPolicy(max_time=None).max_time is None
    assert PollPolicy(max_polls_per_second=None).max_polls_per_second is None


async def test_fast_mode_nests_and_puts_the_scale_back() -> None:
    assert delay_scale() == 0.0  # the suite's autouse fast mode
    with fast_mode(0.5):
        assert scaled(2) == 1.0
        with fast_mode():
            assert scaled(3600) == 0.0
            # A hang guard, not a timing assertion: an hour's sleep is no sleep at all.
            await asyncio.wait_for(sleep_scaled(3600), 10)
        assert delay_scale() == 0.5
    assert delay_scale() == 0.0
    with pytest.raises(ConfigurationError, match="scale must be a number >= 0, got True"):
        set_time_scale(True)


def test_download_caps_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="max_download_bytes"):
        ClientConfig(max_download_bytes={"pictures": 5})
    with pytest.raises(ConfigurationError, match="max_download_bytes"):
        ClientConfig(max_download_bytes={"image": -1})
    with pytest.raises(ConfigurationError, match="max_answer_bytes"):
        ClientConfig(max_answer_bytes=0)
