"""The fault soak (benchmarks/soak.py) in CI size, and proof that it catches what it claims."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from kling_async import (
    ClientConfig,
    KlingClient,
    KlingError,
    KolorsElements,
    RequestInfo,
    SubmissionUnknownError,
    retry,
)
from kling_async import accounts as accounts_module
from kling_async.batch import BatchRunner, JobState, Journal, LostPosts, job_from_request
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

SOAK_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    # soak.py imports its sibling modules (soak_batch, soak_support...), as when run.
    sys.path.insert(0, str(SOAK_PATH.parent))
    spec = importlib.util.spec_from_file_location("kling_soak", SOAK_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _real_waits() -> Iterator[None]:
    """The soak sets its own short waits: run it as it runs from the command line."""
    with retry.fast_mode(1.0):
        yield


def test_soak_200_jobs_loses_nothing(soak: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    status = soak.main(["--jobs", "200", "--json", str(out), "--seed", "8"])
    figures = json.loads(out.read_text())
    assert list(figures) == list(soak.KEYS)
    assert figures["jobs"] > 200  # with the second client's identical twins
    assert figures == {
        "jobs": figures["jobs"],
        "matched": figures["jobs"],
        "submitted_twice": 0,
        "lost": 0,
        "adopted_wrongly": 0,
        "hung": 0,
        "open_connections": 0,
        "pending_tasks": 0,
        "warnings": 0,
        "killed_mid_post": figures["killed_mid_post"],
    }
    # Batch runs were killed while the service still processed one of their POSTs, and
    # resumed by a new client on the same journal: none of it paid twice or lost.
    assert figures["killed_mid_post"] > 0
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

    def sabotaged(exc: BaseException, *, creates_job: bool) -> bool:
        return honest(exc, creates_job=False)

    # The retry loop looks the name up in retry's namespace on every failure.
    monkeypatch.setattr(retry, "is_retryable", sabotaged)
    # Whether a reset lands on a POST in a way that gets it resent depends on timing, so the
    # soak gets a few seeded runs to catch it (one catch is enough; honest clients never fail).
    for seed in ("5", "6", "7", "8"):
        capsys.readouterr()
        if soak.main(["--jobs", "150", "--seed", seed]) == 1:
            break
    else:
        pytest.fail("the soak did not notice a client that resends paid POSTs")
    figures = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert int(figures["submitted_twice"]) > 0
    assert int(figures["lost"]) > 0
    assert int(figures["matched"]) < int(figures["jobs"])


def test_soak_catches_a_resume_that_resends_lost_posts(
    soak: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sabotage the resume: every POST a killed run left out is sent again, unsettled.
    def resend_blindly(self: LostPosts) -> Any:
        for rec in self.journal.records():
            if rec.state is JobState.SUBMITTING:
                self.journal.mark_pending(rec.line, "sabotaged: sent again")

        async def nothing_to_wait_for() -> None:
            return None

        return nothing_to_wait_for()

    monkeypatch.setattr(LostPosts, "settle", resend_blindly)
    for seed in ("7", "8", "9"):  # a kill must land after a task was created
        capsys.readouterr()
        if soak.main(["--jobs", "200", "--seed", seed]) == 1:
            break
    else:
        pytest.fail("the soak did not notice a resume that resends lost POSTs")
    figures = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert int(figures["submitted_twice"]) > 0


def test_kills_are_counted_not_failed(soak: ModuleType) -> None:
    figures = dict.fromkeys(soak.KEYS, 0) | {"jobs": 10, "matched": 10, "killed_mid_post": 3}
    assert soak.passed(figures)


@pytest.mark.parametrize(
    "key",
    [
        "submitted_twice",
        "lost",
        "adopted_wrongly",
        "hung",
        "open_connections",
        "pending_tasks",
        "warnings",
    ],
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


# --------------------------------------------------------------------------- found by the soak


async def submit_while_flooded(pages: int | None = None) -> tuple[Any, list[int], int]:
    """Submit one job whose POST answer is lost; meanwhile 250 other tasks are created on
    the account. Returns the outcome, the simulator's tasks for the job, and the POSTs."""
    email = "busy@example.com"
    plan = FaultPlan(rules={"submit": FaultRates(reset_after=1.0)})
    flooded = False

    async with (
        KlingSimulator(accounts={email: 50}, job_seconds=60, fault_plan=plan) as sim,
        aiohttp.ClientSession() as http,
    ):

        async def flood(info: RequestInfo) -> None:
            # Runs when the POST's answer was lost, before the client looks for the task.
            nonlocal flooded
            if info.method != "POST" or flooded:
                return
            flooded = True
            sim.set_fault_plan(None)
            headers = {"Authorization": f"Bearer {sim.token}"}
            for i in range(250):
                body: dict[str, Any] = {"prompt": f"other {i}", "subjectImage1": "https://x/a.png",
                                        "subjectImage2": "https://x/b.png"}  # fmt: skip
                url = f"{sim.base_url}/images/kolors-elements"
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 200
                if i % 40 == 39:
                    sim.finish_all()  # free the account's slots

        async with KlingClient(
            token=sim.token,
            base_url=sim.base_url,
            max_jobs=50,
            config=ClientConfig(recovery_confirm_delay=0.01),
            on_request=flood,
        ) as kling:
            job = KolorsElements(prompt="the one", subject_images=["https://x/c.png"] * 2)
            try:
                outcome: Any = await kling.submit(job)
            except KlingError as exc:
                outcome = exc
        mine = [t.id for t in sim.tasks.values() if t.body.get("prompt") == "the one"]
        posts = sim.stats["posts"]
    assert flooded
    return outcome, mine, posts


async def test_recovery_reads_past_the_first_page_of_the_task_list() -> None:
    """Found by the soak (with cancellations): while a POST's answer was lost, more than a
    page of other tasks was created on the account; the recovery read only the newest
    page, concluded "no task was created" and sent the job again (paid twice)."""
    outcome, mine, posts = await submit_while_flooded()
    assert posts == 1 + 250
    # The flood also ends the job's own task, so the scheduler no longer lists its tag: a
    # single look-alike is then reported (as the only candidate), never adopted.
    assert isinstance(outcome, SubmissionUnknownError), outcome
    assert list(outcome.candidates) == mine
    assert len(mine) == 1


async def test_recovery_that_cannot_read_back_far_enough_does_not_resend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accounts_module, "RECOVERY_MAX_PAGES", 2)  # 200 tasks: not enough
    outcome, mine, posts = await submit_while_flooded()
    assert isinstance(outcome, SubmissionUnknownError)
    assert "check before resubmitting" in str(outcome)
    assert posts == 1 + 250
    assert len(mine) == 1


async def test_batch_resume_never_resends_a_job_buried_past_the_first_page(
    tmp_path: Path,
) -> None:
    """Same trap on the batch's resume: a job left "submitting" whose task has since been
    buried under more than a page of newer tasks must not be sent again."""
    email = "busy@example.com"
    request = KolorsElements(prompt="the lost one", subject_images=["https://x/c.png"] * 2)
    jobs = [job_from_request(1, request)]
    async with (
        KlingSimulator(accounts={email: 50}, job_seconds=0.01) as sim,
        aiohttp.ClientSession() as http,
    ):
        headers = {"Authorization": f"Bearer {sim.token}"}
        url = f"{sim.base_url}/images/kolors-elements"
        with Journal(tmp_path / "journal.sqlite3") as journal:
            journal.sync(jobs)
            journal.mark_submitting(1, email)  # ...and the process died with the POST out
            prompts = ["the lost one", *(f"other {i}" for i in range(150))]
            for i, prompt in enumerate(prompts):
                body = {"prompt": prompt, "subjectImage1": "https://x/c.png",
                        "subjectImage2": "https://x/c.png"}  # fmt: skip
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 200
                if i % 40 == 39:
                    sim.finish_all()
            async with KlingClient(
                token=sim.token, base_url=sim.base_url, email=email, max_jobs=50,
                config=ClientConfig(recovery_confirm_delay=0.5),  # really waited here
            ) as kling:  # fmt: skip
                await BatchRunner(kling, journal, tmp_path / "out").run(jobs)
            state = journal.record(1).state
        lost_one = [t.id for t in sim.tasks.values() if t.body.get("prompt") == "the lost one"]
    assert len(lost_one) == 1  # never paid twice
    assert state is JobState.SUCCEEDED  # found by paging back, adopted, not paid again
