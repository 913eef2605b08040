"""The journal: one row per job, refusing to forget anything that was sent."""

from __future__ import annotations

import contextlib
import gc
import json
import signal
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from kling_async.batch import (
    JOURNAL_NAME,
    JobState,
    Journal,
    JournalConflictError,
    parse_jobs_file,
)

ACCOUNT = "a@example.com"


def write_jobs(folder: Path, lines: list[Any]) -> Path:
    path = folder / "jobs.jsonl"
    text = [x if isinstance(x, str) else json.dumps(x) for x in lines]
    path.write_text("\n".join(text) + "\n")
    return path


def image_line(prompt: str) -> dict[str, Any]:
    return {"kind": "image", "prompt": prompt, "subject_images": ["a.png", "b.png"]}


def test_journal_refuses_an_edited_line_that_was_sent(images: Path) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("one"), image_line("two")]))
    with Journal(images / "j.sqlite3") as journal:
        journal.sync(jobs)
        journal.mark_submitting(2, ACCOUNT)
        journal.mark_submitted(2, 42, ACCOUNT)
        edited = parse_jobs_file(write_jobs(images, [image_line("uno"), image_line("dos")]))
        with pytest.raises(JournalConflictError) as info:
            journal.sync(edited)
        assert info.value.problems == ("line 2 (task 42) was edited after it was sent",)
        assert journal.record(1).prompt == "one"  # nothing changed
        with pytest.raises(JournalConflictError, match="1 line"):
            journal.sync(edited[:1])
        journal.sync([edited[0], jobs[1]])  # an unsent line may change
        assert journal.record(1).prompt == "uno"


def test_journal_retry_failed(images: Path) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("one")]))
    with Journal(":memory:") as journal:
        journal.sync(jobs)
        journal.mark_failed(1, "boom", "failed")
        journal.sync(jobs)
        assert journal.record(1).state is JobState.FAILED
        journal.sync(jobs, retry_failed=True)
        record = journal.record(1)
        assert (record.state, record.error, record.task_id) == (JobState.PENDING, None, None)


def test_a_file_that_is_not_a_journal_is_refused_and_left_closed(tmp_path: Path) -> None:
    not_a_journal = tmp_path / "jobs.db"
    not_a_journal.write_text("these are my notes, not a database\n" * 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # 3.13+: an unclosed connection
        with pytest.raises(sqlite3.DatabaseError):
            Journal(not_a_journal)
        gc.collect()
    assert not_a_journal.read_text().startswith("these are my notes")


HOLDER = """
import sys
from kling_async.batch import Journal
journal = Journal(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
journal.close()
print("released", flush=True)
"""


def hold_journal(path: Path) -> subprocess.Popen[str]:
    """Another process that opens the journal (takes its lock) and keeps it open."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "holding\n"
    return holder


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    holder = hold_journal(path)
    try:
        with pytest.raises(JournalConflictError) as info:
            Journal(path)
        assert str(info.value) == (
            f"another run is using the journal {path} (locked: {path}.lock); nothing was "
            "sent. Wait for it to end, or use another output folder"
        )
        assert info.value.problems == (f"{path}.lock is locked by another process",)
        with Journal(path, read_only=True) as reader:  # reading needs no lock
            assert reader.records() == []
    finally:
        out, _ = holder.communicate("\n")
    assert out == "released\n"
    with Journal(path) as journal:  # the lock went with the close
        assert journal.records() == []


def test_a_killed_writer_leaves_no_lock_behind(images: Path) -> None:
    path = images / JOURNAL_NAME
    holder = hold_journal(path)
    with pytest.raises(JournalConflictError):
        Journal(path)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()  # reaps it and closes its pipes
    assert holder.returncode == -signal.SIGKILL
    with Journal(path) as journal:
        journal.sync(parse_jobs_file(write_jobs(images, [image_line("after the kill")])))
        assert journal.record(1).prompt == "after the kill"


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    line INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, digest TEXT NOT NULL,
    state TEXT NOT NULL, task_id INTEGER, email TEXT, submitting_at REAL, final_state TEXT,
    error TEXT, files TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL
);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO jobs (line, kind, text, digest, state, task_id, updated_at)
    VALUES (1, 'image', '{"prompt":"old"}', 'd', 'submitted', 7, 0);
"""


def test_a_schema_1_journal_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA_1)
    with Journal(path) as journal:
        [rec] = journal.records()
        assert (rec.state, rec.task_id, rec.prompt, rec.body) == (
            JobState.SUBMITTED,
            7,
            "old",
            None,
        )
        body = {"prompt": "old", "subjectImage1": "https://x/a.png"}
        assert journal.mark_submitting(1, ACCOUNT, body).body == body


def test_a_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    with Journal(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(JournalConflictError) as info:
        Journal(path)
    assert str(info.value) == (
        f"the journal {path} was written by a newer kling-async (schema 99, this one knows "
        "2); nothing was sent"
    )
    with Journal(path, read_only=True):  # the failed open left no lock behind
        pass
    with pytest.raises(JournalConflictError, match="schema 99"):
        Journal(path)


def test_rows_follow_their_lines_when_lines_move(images: Path) -> None:
    lines = [image_line("one"), image_line("two"), image_line("two"), image_line("three")]
    jobs = parse_jobs_file(write_jobs(images, lines))
    with Journal(images / JOURNAL_NAME) as journal:
        journal.sync(jobs)
        journal.mark_submitting(2, ACCOUNT)
        journal.mark_submitted(2, 42, ACCOUNT)
        journal.mark_failed(4, "boom")
        # A comment on top, and the lines reversed: every row keeps its own line's state.
        moved = parse_jobs_file(write_jobs(images, ["# a note", *reversed(lines)]))
        assert [j.line for j in moved] == [2, 3, 4, 5]
        journal.sync(moved)
        by_prompt = [(r.line, r.prompt, r.state, r.task_id) for r in journal.records()]
        assert by_prompt == [
            (2, "three", JobState.FAILED, None),
            (3, "two", JobState.SUBMITTED, 42),
            (4, "two", JobState.PENDING, None),
            (5, "one", JobState.PENDING, None),
        ]
        # One of the two identical lines removed: the sent one stays, the pending one goes.
        journal.sync(parse_jobs_file(write_jobs(images, [*lines[:2], lines[3]])))
        rows = [(r.line, r.prompt, r.task_id) for r in journal.records()]
        assert rows == [(1, "one", None), (2, "two", 42), (3, "three", None)]
        # Editing the sent line still conflicts, wherever it is.
        edited = [image_line("one"), image_line("deux"), lines[3]]
        with pytest.raises(JournalConflictError) as info:
            journal.sync(parse_jobs_file(write_jobs(images, edited)))
        assert info.value.problems == ("line 2 (task 42) was edited after it was sent",)
