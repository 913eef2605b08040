"""benchmarks/run.py runs end to end in its tiny mode and reports every figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import run_command

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"

#: The figures issue 7 names, plus the side-by-side baselines.
KEYS = [
    "utilization",
    "utilization_oracle",
    "utilization_naive_chunks",
    "utilization_fixed_poll",
    "utilization_mixed",
    "utilization_mixed_fifo",
    "polls_per_job",
    "detection_lag_fraction",
    "polls_per_job_no_eta",
    "detection_lag_fraction_no_eta",
    "polls_per_job_fixed_500ms",
    "polls_per_job_fixed_20s",
    "detection_lag_fraction_fixed_500ms",
    "detection_lag_fraction_fixed_20s",
    "polls_per_job_fixed_500ms_no_eta",
    "polls_per_job_fixed_20s_no_eta",
    "detection_lag_fraction_fixed_500ms_no_eta",
    "detection_lag_fraction_fixed_20s_no_eta",
    "overhead_ratio",
    "overhead_ratio_q1",
    "overhead_ratio_q3",
    "overhead_ratio_best_rounds",
    "overhead_typed_ratio",
    "overhead_typed_ratio_q1",
    "overhead_typed_ratio_q3",
    "overhead_typed_raw_us_per_job",
    "rss_kb_per_waiter",
    "loop_lag_p99_ms",
    "structure_us",
    "structure_with_task_info_us",
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = run_command([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    missing = [k for k in KEYS if k not in figures]
    assert not missing
    for key in KEYS:
        assert isinstance(figures[key], int | float), key
    goals = {"utilization", "overhead_ratio", "overhead_typed_ratio", "rss_kb_per_waiter"}
    assert set(figures["goals"]) >= goals
    assert figures["meta"]["mode"] == "smoke"
    assert "| figure | value |" in done.stdout


def test_the_overhead_loop_runs() -> None:
    """benchmarks/overhead_loop.py (for instruction counters): its warm-up round only."""
    script = ROOT / "benchmarks" / "overhead_loop.py"
    done = run_command([sys.executable, str(script), "client", "0"], cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_text2video_overhead_runs() -> None:
    """benchmarks/overhead_text2video.py in its tiny mode prints its figures as JSON."""
    script = ROOT / "benchmarks" / "overhead_text2video.py"
    done = run_command([sys.executable, str(script), "--mode", "smoke"], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("ratio", "ratio_q1", "ratio_q3", "client_us_per_job", "raw_us_per_job"):
        assert figures[f"overhead_text2video_{key}"] > 0, key
