"""``Database.write_together``: several rows atomically, in one statement on Postgres (a chain of
data-modifying CTEs) and one transaction on SQLite; a unique violation writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from beacon.db import Database, Write, bound_insert
from beacon.messaging.events import first_event
from beacon.messaging.outbox import new_message
from beacon.models import Event, Job, OutboxMessage
from beacon.timeutil import utcnow

JOB = bound_insert(Job, "job_", ("id", "status", "raw_body", "spec", "public_key", "created_at", "updated_at",
                                 "generation", "event_seq"))


def job_with_event_and_message(job_id: str) -> list[Write]:
    now = utcnow()
    event, _ = first_event(job_id, "job.queued", {"status": "queued"}, now)
    message, _ = new_message("beacon.run_job", "jobs", [job_id])
    return [Write(JOB, {"job_id": job_id, "job_status": "queued", "job_raw_body": "{}", "job_spec": {"id": job_id},
                        "job_public_key": "k", "job_created_at": now, "job_updated_at": now, "job_generation": 1,
                        "job_event_seq": 1}), event, message]


def counts(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) for model in (Job, Event, OutboxMessage))


def test_rows_are_written_together_and_return_their_ids(either_db):
    first = either_db.write_together(job_with_event_and_message("job-1"))
    second = either_db.write_together(job_with_event_and_message("job-2"))
    assert first[0] is None and second[0] is None  # the job's INSERT returns nothing
    assert second[1] == first[1] + 1 and second[2] == first[2] + 1  # the event's and the message's ids
    assert counts(either_db) == (2, 2, 2)
    with either_db.session() as session:
        assert session.get(Job, "job-2").spec == {"id": "job-2"}
        assert session.get(Event, second[1]).data == {"job_id": "job-2", "status": "queued"}


def test_a_unique_violation_writes_nothing(either_db):
    either_db.write_together(job_with_event_and_message("job-1"))
    with pytest.raises(IntegrityError):
        either_db.write_together(job_with_event_and_message("job-1"))  # the job exists: event and message roll back
    assert counts(either_db) == (1, 1, 1)
