"""``events.emit_many``: several events of a job in one bump of its counter and one INSERT, numbered
in the order given after the job's earlier events, published only after commit; an unknown job
gets none. On Postgres and SQLite."""

from __future__ import annotations

from sqlalchemy import select

from beacon.messaging import events
from beacon.models import Event, Job
from tests.integration.test_write_together import job_with_event_and_message


def test_events_are_numbered_in_order_after_the_earlier_ones(either_db, monkeypatch):
    published: list[dict] = []
    monkeypatch.setattr(events, "publish_events", lambda batch, url=None: published.extend(batch))
    either_db.write_together(job_with_event_and_message("job-1"))  # its job.queued is seq 1
    with either_db.session() as session:
        written = events.emit_many(session, "job-1", [("a", {"n": 1}), ("b", {"n": 2}), ("c", {"n": 3})])
        assert published == []  # not before commit
    assert [(e["seq"], e["type"], e["data"]) for e in written] == [
        (2, "a", {"job_id": "job-1", "n": 1}), (3, "b", {"job_id": "job-1", "n": 2}), (4, "c", {"job_id": "job-1", "n": 3})]
    assert published == written
    with either_db.session() as session:
        assert session.get(Job, "job-1").event_seq == 4
        rows = session.scalars(select(Event).where(Event.job_id == "job-1").order_by(Event.seq)).all()
        assert [(r.seq, r.type) for r in rows] == [(1, "job.queued"), (2, "a"), (3, "b"), (4, "c")]
        assert {e["seq"]: e["id"] for e in written} == {r.seq: r.id for r in rows[1:]}  # each event its own row's id


def test_an_unknown_job_gets_no_event(either_db):
    with either_db.session() as session:
        assert events.emit_many(session, "no-such-job", [("a", {})]) == []
        assert events.emit(session, "no-such-job", "a") is None
    with either_db.session() as session:
        assert session.scalars(select(Event)).all() == []
