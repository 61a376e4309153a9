"""Job events: every state change, written in the transaction that makes it, then fanned out.

An event is ``{id, seq, type, job_id, time, data}`` (``data`` carries ``job_id`` too). :func:`emit`
writes it into the ``events`` table inside the caller's transaction, numbering it with the job's
own counter (``UPDATE jobs SET event_seq = event_seq + 1 … RETURNING``: the job row's lock makes
the per-job order the commit order). After that transaction commits, the event is published on
the Redis pub/sub channel ``beacon:events`` (failing open: the table has it; live readers fill a
gap from the table). A rolled-back transaction publishes nothing.

Types: ``job.queued`` (ingest), ``job.started`` and ``job.running`` (execution begins, or a new
generation), ``unit.started`` (claim), ``unit.completed`` (an answer, refusals included),
``unit.retrying``, ``unit.failed`` (failed, dead-lettered and timed-out units), ``job.finished``
beside the terminal ``job.completed`` / ``job.failed`` / ``job.cancelled``, ``bundle.stored``,
``transparency.appended``, ``bundle.pinned``.

:func:`compat_events` gives the Go runner hub's names and payloads for the same event (``/ws``
sends them too unless ``?compat=none``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from beacon.db import Write, bound_insert
from beacon.models import Event, Job
from beacon.redis_clients import redis_client
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "beacon:events"
_PENDING = "beacon.events.pending"
_JOBS, _EVENTS = Job.__table__, Event.__table__
_BUMP = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
         .values(event_seq=_JOBS.c.event_seq + bindparam("count")).returning(_JOBS.c.event_seq))
_INSERT = insert(_EVENTS).returning(_EVENTS.c.seq, _EVENTS.c.id)
_INSERT_FIRST = bound_insert(Event, "event_", ("job_id", "seq", "type", "time", "data")).returning(_EVENTS.c.id)

TERMINAL_JOB_EVENTS = ("job.completed", "job.failed", "job.cancelled")


def emit(session: Session, job_id: str, event_type: str, data: dict[str, Any] | None = None) -> dict | None:
    """Write one event of ``job_id`` in ``session``'s transaction; it is published after commit.

    Returns the event (None when the job does not exist)."""
    written = emit_many(session, job_id, [(event_type, data or {})])
    return written[0] if written else None


def emit_many(session: Session, job_id: str, events: list[tuple[str, dict[str, Any]]]) -> list[dict]:
    """Write ``events`` ((type, data) pairs) of ``job_id`` in ``session``'s transaction, numbered in
    that order: one bump of the job's counter by their number and one INSERT, whatever their number.
    They are published after commit. Returns them (none when the job does not exist)."""
    if not events:
        return []
    last = session.execute(_BUMP, {"job_id": job_id, "count": len(events)}).scalar_one_or_none()
    if last is None:
        return []
    now = utcnow()
    written = [event_message(None, seq, event_type, job_id, now, {"job_id": job_id, **data})
               for seq, (event_type, data) in enumerate(events, start=last - len(events) + 1)]
    rows = [{"job_id": job_id, "seq": event["seq"], "type": event["type"], "time": now, "data": event["data"]}
            for event in written]
    ids = {seq: event_id for seq, event_id in session.execute(_INSERT, rows)}
    for event in written:
        event["id"] = ids[event["seq"]]
    session.info.setdefault(_PENDING, []).extend(written)
    return written


def event_message(event_id: int | None, seq: int, event_type: str, job_id: str, time: datetime,
                  data: dict[str, Any]) -> dict[str, Any]:
    """An event as it is published and served: ``{id, seq, type, job_id, time, data}``."""
    return {"id": event_id, "seq": seq, "type": event_type, "job_id": job_id, "time": isoformat(time), "data": data}


def first_event(job_id: str, event_type: str, data: dict[str, Any], now: datetime) -> tuple[Write, dict]:
    """The first event of a job being inserted with ``event_seq`` 1 (no bump: nothing else can see the
    job yet): its write (returning the event's id) for the caller's ``write_together``, and the
    event, whose ``id`` the caller sets before :func:`publish_events`."""
    payload = {"job_id": job_id, **data}
    write = Write(_INSERT_FIRST, {"event_job_id": job_id, "event_seq": 1, "event_type": event_type, "event_time": now,
                                  "event_data": payload})
    return write, event_message(None, 1, event_type, job_id, now, payload)


def event_view(row: Event) -> dict[str, Any]:
    return event_message(row.id, row.seq, row.type, row.job_id, row.time, row.data)


def events_since(session: Session, job_id: str, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """The job's events with ``seq`` above ``since``, in order."""
    rows = session.scalars(select(Event).where(Event.job_id == job_id, Event.seq > since)
                           .order_by(Event.seq).limit(limit))
    return [event_view(r) for r in rows]


def events_after_id(session: Session, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Every job's events written after the event ``after_id`` (the embedded default's tail)."""
    rows = session.scalars(select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit))
    return [event_view(r) for r in rows]


def last_event_id(session: Session) -> int:
    return session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0


_publish_url: list[str | None] = []


def configure_publishing(redis_url: str | None) -> None:
    """Publish this process's events to ``redis_url`` (the API's settings; default: the environment's)."""
    _publish_url[:] = [redis_url]


def _redis_url() -> str | None:
    from beacon.settings import get_settings

    if _publish_url:
        return _publish_url[0]

    try:
        return get_settings().redis_url
    except Exception:  # settings that do not parse never stop a commit
        return None


@sa_event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        publish_events(pending, session.info.get("beacon.redis_url"))


def publish_events(events: list[dict], url: str | None = None) -> None:
    """Fan committed events out on ``beacon:events`` (``url``, else this process's Redis); never raises:
    the table has them, and live readers fill a gap from it."""
    url = url or _redis_url()
    if not url:
        return
    try:
        client = redis_client(url)
        if len(events) == 1:
            client.publish(EVENTS_CHANNEL, json.dumps(events[0]))
            return
        pipe = client.pipeline(transaction=False)
        for event in events:
            pipe.publish(EVENTS_CHANNEL, json.dumps(event))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("events not published: redis unavailable", extra={"events": len(events), "error": str(exc)})


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def publish_event(settings, event_type: str, payload: dict[str, Any]) -> bool:  # noqa: ANN001  (Settings)
    """Publish an event that is not written to the table (kept for callers outside a job's changes).
    Never raises; returns whether Redis took it."""
    if not settings.redis_url:
        return False
    message = json.dumps({"type": event_type, "time": isoformat(utcnow()), "data": payload})
    try:
        redis_client(settings.redis_url).publish(EVENTS_CHANNEL, message)
    except redis.RedisError as exc:
        log.warning("event not published: redis unavailable", extra={"event": event_type, "error": str(exc)})
        return False
    return True


# --------------------------------------------------------------------------- the Go hub's names

def compat_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The Go runner hub's ``{type, data}`` messages for one event (none for most types)."""
    kind, data = event.get("type"), event.get("data") or {}
    job_id = data.get("job_id")
    if kind == "unit.completed":
        return [{"type": "runner.execution_completed", "data": {
            "job_id": job_id, "execution_id": data.get("execution_id"), "region": data.get("region"),
            "model_id": data.get("model_id"), "question_id": data.get("question_id"), "status": "completed"}}]
    if kind == "unit.failed":
        return [{"type": "runner.execution_failed", "data": {
            "job_id": job_id, "execution_id": data.get("execution_id"), "region": data.get("region"),
            "model_id": data.get("model_id"), "question_id": data.get("question_id"), "status": data.get("status"),
            "error": data.get("error")}}]
    if kind == "unit.started":
        return [{"type": "runner.execution_started", "data": {
            "job_id": job_id, "execution_id": data.get("execution_id"), "region": data.get("region")}}]
    if kind in ("job.running", *TERMINAL_JOB_EVENTS):
        return [{"type": "runner.job_" + kind.split(".")[1], "data": {"job_id": job_id, "status": kind.split(".")[1]}}]
    if kind == "transparency.appended":
        return [{"type": "transparency.entry_appended", "data": {
            "job_id": job_id, "bundle_cid": data.get("bundle_cid"), "leaf_index": data.get("leaf_index"),
            "tree_size": data.get("tree_size"), "root_hash": data.get("root_hash")}}]
    return []
