"""The README's runnable examples run as shown (against the simulator they start)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import run_command

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "final succeed"),
        ("push_mode.py", "GET /tasks polls: 0"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    done = run_command([sys.executable, str(EXAMPLES / script)])
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
