"""The runnable examples (README's examples/ and the docs' docs/examples/) run as shown.

Each runs in a subprocess against the simulator it starts, with its temporary files in the
test's own tmp dir (``TMPDIR``), so that no run leaves a folder in the system temp dir, and
its client waits shrunk (``fast_env``): the examples' jobs are short, but a poll without a
plausible ETA waits the 5 s poll floor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import fast_env, run_command

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("examples/quickstart.py", ["final succeed", "wrote "]),
    ("examples/push_mode.py", ["10 jobs done", "GET /tasks polls: 0"]),
    ("docs/examples/images.py", ["succeed 2 images", "downloaded 2 files"]),
    ("docs/examples/videos.py", ["video succeed mp4", "4 videos; peak running on the server: 2"]),
    (
        "docs/examples/errors.py",
        [
            "RequestValidationError: subject_images",
            "ModerationError: 500",
            "TaskFailedError: task ",
        ],
    ),
    (
        "docs/examples/text2video.py",
        ["text2video succeed mp4", "shot_2_prompt", "multi-shot succeed"],
    ),
    ("docs/examples/kolors.py", ["kolors succeed 3 images", "round trip: True"]),
    ("docs/examples/audio.py", ["speech succeed wav", "lipsync succeed"]),
    (
        "docs/examples/avatars.py",
        ["avatar Ann listed: 1", "avatar video succeed", "avatars left: 0"],
    ),
    (
        "docs/examples/catalog.py",
        [
            "effects include hug: True",
            "element True True",
            "generated videos: 1",
            "deleted: True works: 1",
            "then GET /tasks: 404",
        ],
    ),
    (
        "docs/examples/simulator_kit.py",
        ["6 jobs succeeded", "tasks created: 6", "peak running: 3", "faults injected: True"],
    ),
]


#: The wait scale of an example that needs a larger one than `fast_env`'s: push mode waits
#: 30 s (scaled) for a callback before it polls, and its example shows that it never polls.
SCALES = {"examples/push_mode.py": 0.2}


@pytest.mark.parametrize(("script", "expected"), CASES, ids=[c[0] for c in CASES])
def test_example_runs(script: str, expected: list[str], tmp_path: Path) -> None:
    path = ROOT / script
    if not path.is_file():
        pytest.skip(f"{script} is not in this copy of the project")
    env = fast_env(SCALES.get(script, 0.05), TMPDIR=str(tmp_path))
    done = run_command([sys.executable, str(path)], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout
    # Files an example writes to a temp folder land under this test's tmp_path.
    for line in done.stdout.splitlines():
        if line.startswith("wrote "):
            assert Path(line.removeprefix("wrote ")).resolve().is_relative_to(tmp_path.resolve())


def test_every_docs_example_is_tested() -> None:
    examples = ROOT / "docs" / "examples"
    if not examples.is_dir():
        pytest.skip("docs/examples is not in this copy of the project")
    found = {f"docs/examples/{p.name}" for p in examples.glob("*.py")}
    assert found <= {script for script, _ in CASES}
