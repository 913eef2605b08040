"""The fault soak (benchmarks/soak.py) in CI size, and proof that it catches what it claims."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kling_async import retry

SOAK_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kling_soak", SOAK_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_soak_200_jobs_loses_nothing(soak: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    status = soak.main(["--jobs", "200", "--json", str(out), "--seed", "8"])
    figures = json.loads(out.read_text())
    assert list(figures) == list(soak.KEYS)
    assert figures == {
        "jobs": 200,
        "matched": 200,
        "submitted_twice": 0,
        "lost": 0,
        "hung": 0,
        "open_connections": 0,
        "pending_tasks": 0,
        "warnings": 0,
    }
    assert status == 0


def test_soak_prints_every_figure(soak: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert soak.main(["--jobs", "20", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(soak.KEYS)


def test_soak_catches_a_client_that_resends_paid_posts(
    soak: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sabotage the money rule: retry job-creating POSTs like GETs. The soak must notice.
    honest = retry.is_retryable
    monkeypatch.setattr(
        retry, "is_retryable", lambda exc, *, creates_job: honest(exc, creates_job=False)
    )
    assert soak.main(["--jobs", "150", "--seed", "5"]) == 1
    figures = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert int(figures["submitted_twice"]) > 0
    assert int(figures["lost"]) > 0
    assert int(figures["matched"]) < 150


@pytest.mark.parametrize(
    "key", ["submitted_twice", "lost", "hung", "open_connections", "pending_tasks", "warnings"]
)
def test_any_nonzero_figure_fails_the_run(soak: ModuleType, key: str) -> None:
    figures = dict.fromkeys(soak.KEYS, 0) | {"jobs": 10, "matched": 10}
    assert soak.passed(figures)
    assert not soak.passed(figures | {key: 1})
    assert not soak.passed(figures | {"matched": 9})


def test_bad_arguments_are_refused(soak: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        soak.main(["--jobs", "0"])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err
