"""Resumable batch runs: a JSON-lines file of jobs, a sqlite3 journal, and the runner.

One job per line of the jobs file::

    {"kind": "image", "prompt": "a cat", "subject_images": ["cat.png", "https://x/hat.jpg"]}
    {"kind": "video", "prompt": "they dance", "images": ["a.jpg"], "duration": 10}

Fields are the Python names of `KolorsElements` (``kind: image``) and `Image2VideoElements`
(``kind: video``); relative local paths are read from the jobs file's folder. Blank lines
and lines starting with ``#`` are skipped. Every line is parsed and validated before
anything is sent (`parse_jobs_file` reports every bad line at once).

The journal (`Journal`, ``DIR/.kling-journal.sqlite3``) keeps one row per job: its line
number, the line, a hash of it, its state, the task id once submitted, the account, the
final state, the error text and the downloaded files. Every change is committed at once;
each job runs through the client's `JobRunner` and its steps are journaled as they come
(`kling_async.jobs.JobEvents`): ``submitting`` with the exact body just before the POST,
the task id from the POST's own task before anyone waits, so a process killed at any
point loses no task id.

States: ``pending`` (never sent) -> ``submitting`` (the POST may be in flight) ->
``submitted`` (task id known) -> ``succeeded`` | ``failed``; ``unknown`` when a POST's
outcome cannot be established (see below).

Re-running the same batch (`BatchRunner.run` with the same journal) resumes it: finished
jobs are skipped, jobs with a task id are waited on again (holding a job slot each, as a
running job occupies one on the server), and only jobs that never reached the server are
submitted. A line edited after it was sent is refused (`JournalConflictError`).

Money rule: a job left ``submitting`` (the process died between the POST and the journal
write, or the client raised `SubmissionUnknownError`) is never blindly resubmitted. On
resume it is looked up in the account's task list (``KlingClient.find_tasks``, which pages
back through ``GET /tasks/``): a task of the same kind with the same prompt, created since
shortly before the POST and not claimed by another journal row, is adopted and waited on.
When the list, read back to the POST, holds no such task, the POST never created one and
the job is submitted again. When the list cannot be read, or cannot be read back that far
(a very busy account), the job is marked ``unknown`` and left alone:
check the account's tasks, then re-run with ``resubmit_unknown=True``
(``kling-async batch --resubmit-unknown``) to send it again.

Accounts in error state (596, see `BatchRunner`): with several accounts the broken one is
set aside and the batch goes on with the others; what it holds (jobs that name it, tasks
it runs, lost POSTs in its task list) is left for a run after its repair. The batch stops
only when no account is left, or, with a single account, at once.
"""

from ..errors import JobsFileError, JournalConflictError
from .accounts import AccountGuard
from .events import BatchObserver, BatchSummary, JobEvent, NullObserver
from .gallery import GALLERY_NAME, read_manifest, write_gallery
from .jobsfile import KINDS, Job, job_from_request, parse_job, parse_jobs_file
from .journal import JOURNAL_NAME, JobRecord, JobState, Journal
from .lost import LOOKUP_SLACK_SECONDS, LostPosts
from .manifest import MANIFEST_NAME, manifest_line, write_manifest
from .matching import matches_body
from .outcomes import OUTCOMES, Outcome, Phase, outcome_of
from .runner import BatchRunner

__all__ = [
    "GALLERY_NAME",
    "JOURNAL_NAME",
    "KINDS",
    "LOOKUP_SLACK_SECONDS",
    "MANIFEST_NAME",
    "OUTCOMES",
    "AccountGuard",
    "BatchObserver",
    "BatchRunner",
    "BatchSummary",
    "Job",
    "JobEvent",
    "JobRecord",
    "JobState",
    "JobsFileError",
    "Journal",
    "JournalConflictError",
    "LostPosts",
    "NullObserver",
    "Outcome",
    "Phase",
    "job_from_request",
    "manifest_line",
    "matches_body",
    "outcome_of",
    "parse_job",
    "parse_jobs_file",
    "read_manifest",
    "write_gallery",
    "write_manifest",
]
