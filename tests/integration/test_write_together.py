"""``Database.write_together``: several rows atomically, in one statement on Postgres (a chain of
data-modifying CTEs) and one transaction on SQLite; a unique violation writes nothing. And
``Database.run``, which sends such prebuilt statements to the driver: the same values as SQLAlchemy
gives, its errors as SQLAlchemy raises them, a lost connection dropped from the pool."""

from __future__ import annotations

from datetime import timezone

import pytest
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from beacon.db import Database, Write, bound_insert
from beacon.execution.engine import is_db_unavailable
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


JOBS = Job.__table__
_TOUCH = (update(JOBS).where(JOBS.c.id == bindparam("job_id"))
          .values(analysis=bindparam("analysis", type_=JOBS.c.analysis.type), updated_at=bindparam("now")))
_TOUCH_WITHOUT_IN = _TOUCH.returning(JOBS.c.id, JOBS.c.analysis, JOBS.c.updated_at, JOBS.c.spec, JOBS.c.generation)
_TOUCH_WITH_IN = _TOUCH.returning(JOBS.c.status.in_(("queued", "running")).label("open"))
BACKEND_PID = select(func.pg_backend_pid())


def test_run_gives_what_sqlalchemy_gives(either_db):
    """JSON in and out, an aware UTC timestamp in and out (the models' type decorator), names."""
    either_db.write_together(job_with_event_and_message("job-1"))
    now = utcnow()
    params = {"job_id": "job-1", "analysis": {"a": [1, 2.5, None], "é": "<&>"}, "now": now}
    [row] = either_db.run(_TOUCH_WITHOUT_IN, params)
    with either_db.autocommitted() as connection:
        expected = connection.execute(_TOUCH_WITHOUT_IN, params).one()
    assert tuple(row) == tuple(expected)
    assert row.analysis == {"a": [1, 2.5, None], "é": "<&>"} and row.spec == {"id": "job-1"}
    assert row.updated_at == now and row.updated_at.tzinfo == timezone.utc
    assert either_db.run(_TOUCH_WITHOUT_IN, {**params, "job_id": "no-such-job"}) == []


def test_run_raises_sqlalchemys_errors_and_refuses_what_it_cannot_render(either_db):
    either_db.write_together(job_with_event_and_message("job-1"))
    with pytest.raises(IntegrityError):
        either_db.run(JOB, job_with_event_and_message("job-1")[0].params)
    if either_db.is_postgres:  # SQLite's path is SQLAlchemy's own
        with pytest.raises(ValueError, match="IN"):
            either_db.run(_TOUCH_WITH_IN, {"job_id": "job-1", "analysis": None, "now": utcnow()})
    assert counts(either_db) == (1, 1, 1)


def test_run_drops_a_lost_connection_and_the_next_statement_gets_a_new_one(clean_db):
    db = Database(clean_db)
    [(pid,)] = db.run(BACKEND_PID, {})
    with Database(clean_db).session() as session:
        assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(Exception) as lost:
        db.run(BACKEND_PID, {})
    assert is_db_unavailable(lost.value), f"a lost connection is reported as the database being away: {lost.value!r}"
    [(new_pid,)] = db.run(BACKEND_PID, {})
    assert new_pid != pid
