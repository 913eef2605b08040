"""Configuration: the time-scale test switch (in process and from the environment)."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import run_command

from kling_async import set_time_scale
from kling_async.config import TIME_SCALE_ENV, delay_scale, scaled


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
