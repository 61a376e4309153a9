"""Claiming a unit: its lease, fenced by its stamp (``claimed_at``), and its ``unit.started`` event;
the claim whose attempts are used up fails the unit as ``poison`` instead."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Text, and_, bindparam, cast, func, literal, or_, select, true, update

from beacon.db import Database
from beacon.execution.store import HELD, JOBS, NOW, UNITS, json_object, unit_event, with_event
from beacon.messaging.events import emit, event_message, publish_events
from beacon.settings import Settings
from beacon.statuses import Classification, JobStatus, UnitStatus
from beacon.timeutil import isoformat, parse_rfc3339, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    execution_id: int
    job_id: str
    region: str
    model_id: str
    question_id: str
    prompt: str
    attempts: int
    claimed_at: datetime | None
    call_timeout_s: float
    deadline_at: datetime | None = None
    dead_lettered: bool = False  # the claim used the last attempt: the unit is already failed as poison
    provider_retries: int = 0  # transient failures recorded before this claim
    lease_until: datetime | None = None
    lease_margin_s: float = 0.0

    def to_resume(self) -> dict[str, Any]:
        """What a later delivery needs to record this claim's outcome (JSON)."""
        return {"execution_id": self.execution_id, "job_id": self.job_id, "region": self.region,
                "model_id": self.model_id, "question_id": self.question_id, "attempts": self.attempts,
                "provider_retries": self.provider_retries, "held_since": isoformat(self.claimed_at),
                "deadline_at": isoformat(self.deadline_at)}

    @classmethod
    def from_resume(cls, data: dict[str, Any]) -> Claim:
        return cls(data["execution_id"], data["job_id"], data["region"], data["model_id"], data["question_id"], "",
                   data["attempts"], parse_rfc3339(data["held_since"]), 0.0,
                   parse_rfc3339(data["deadline_at"]) if data.get("deadline_at") else None,
                   provider_retries=data.get("provider_retries", 0))


_CLAIM_JOB = (  # only the columns a claim needs, never the spec or raw body
    select(JOBS.c.id, JOBS.c.status, JOBS.c.finalizing_at, JOBS.c.deadline_at, JOBS.c.provider_timeout_ms)
    .join(UNITS, UNITS.c.job_id == JOBS.c.id)
    .where(UNITS.c.id == bindparam("execution_id"))
)
_CLAIMED = (UNITS.c.attempts, UNITS.c.provider_retries, UNITS.c.region, UNITS.c.model_id, UNITS.c.question_id,
            UNITS.c.prompt, UNITS.c.provider, UNITS.c.failure)
_CLAIM = (
    update(UNITS)
    .where(UNITS.c.id == bindparam("execution_id"),
           or_(UNITS.c.status == UnitStatus.PENDING,
               and_(UNITS.c.status == UnitStatus.RUNNING, UNITS.c.lease_expires_at < bindparam("now"))))
    .values(status=UnitStatus.RUNNING, claimed_at=bindparam("now"), started_at=bindparam("now"),
            lease_expires_at=bindparam("lease_until"), attempts=UNITS.c.attempts + 1, claimed_by=bindparam("worker"))
    .returning(*_CLAIMED)
)


def _seconds(value):  # noqa: ANN001, ANN202
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


# Postgres: the claim in one statement, joined to its job. The job must be running, not
# finalising, before its deadline; the lease is the call's timeout (the provider timeout or what is
# left of the deadline, whichever is shorter) plus the margin, computed by the database from the
# same values the two-statement path (SQLite) reads first.
_CALL_ENDS = func.least(NOW + _seconds(JOBS.c.provider_timeout_ms / 1000.0), JOBS.c.deadline_at)
_CLAIM_JOINED = (
    update(UNITS)
    .where(UNITS.c.id == bindparam("execution_id"), JOBS.c.id == UNITS.c.job_id,
           JOBS.c.status == JobStatus.RUNNING, JOBS.c.finalizing_at.is_(None), JOBS.c.deadline_at > NOW,
           or_(UNITS.c.status == UnitStatus.PENDING,
               and_(UNITS.c.status == UnitStatus.RUNNING, UNITS.c.lease_expires_at < NOW)))
    .values(status=UnitStatus.RUNNING, claimed_at=NOW, started_at=NOW,
            lease_expires_at=_CALL_ENDS + _seconds(bindparam("margin", type_=Float)),
            attempts=UNITS.c.attempts + 1, claimed_by=bindparam("worker"))
    .returning(*_CLAIMED, UNITS.c.id, JOBS.c.id.label("job_id"), JOBS.c.deadline_at,
               JOBS.c.provider_timeout_ms, UNITS.c.lease_expires_at)
    .cte("claimed")
)
# Postgres: the claim and its ``unit.started`` event in one autocommitted statement (the technique
# of ``Database.write_together``). A claim that used the unit's last attempt writes no event here:
# ``_dead_letter`` fails the unit next.
_STARTS = _CLAIM_JOINED.c.attempts - _CLAIM_JOINED.c.provider_retries <= bindparam("max_attempts")
_STARTED_SEQ, _STARTED_EVENT = with_event(
    _CLAIM_JOINED, _CLAIM_JOINED.c.job_id, literal("unit.started"),
    json_object(job_id=_CLAIM_JOINED.c.job_id, execution_id=_CLAIM_JOINED.c.id, region=_CLAIM_JOINED.c.region,
                model_id=_CLAIM_JOINED.c.model_id, question_id=_CLAIM_JOINED.c.question_id,
                attempts=_CLAIM_JOINED.c.attempts, status=cast(literal(UnitStatus.RUNNING), Text)),
    when=_STARTS)
_CLAIM_WITH_EVENT = select(_CLAIM_JOINED, _STARTED_SEQ.c.event_seq, _STARTED_EVENT.c.id.label("event_id")).select_from(
    _CLAIM_JOINED.outerjoin(_STARTED_SEQ, true()).outerjoin(_STARTED_EVENT, true()))
# A delivery that held the claim before the database went away takes it up again (same attempt).
_RESUME = (
    update(UNITS)
    .where(UNITS.c.id == bindparam("execution_id"), UNITS.c.status == UnitStatus.RUNNING,
           UNITS.c.claimed_at == bindparam("held_since"))
    .values(claimed_at=bindparam("now"), lease_expires_at=bindparam("lease_until"), claimed_by=bindparam("worker"))
    .returning(*_CLAIMED)
)


def claim_unit(db: Database, settings: Settings, execution_id: int, held_since: datetime | None = None,
               worker: str | None = None, now: datetime | None = None) -> Claim | None:
    """Take the unit's lease, or None when it is not ours to run (done, leased, job over).

    ``worker`` (the Celery node name) is recorded as ``claimed_by``: when its heartbeat stops,
    the sweeper knows the unit is lost without waiting for the lease. ``now`` (default: the
    current time) is the claim's stamp, ``claimed_at``.

    ``held_since``: the ``claimed_at`` of a claim this delivery's predecessor may hold (the
    database went away after, or while committing, the claim); when the unit still carries it,
    the claim is taken up again without counting a new attempt.
    """
    now = now or utcnow()
    margin = settings.unit_lease_margin_seconds
    if held_since is None and db.is_postgres:
        # One autocommitted statement: the job's state, its deadline, the lease and the event.
        rows = db.run(_CLAIM_WITH_EVENT, {"execution_id": execution_id, "now": now, "margin": margin, "worker": worker,
                                          "max_attempts": settings.max_unit_attempts, "event_time": now})
        if not rows:
            return None
        execution = rows[0]
        if execution.event_id is None:  # this claim used the last attempt
            with db.session() as session:
                return _dead_letter(session, settings, execution.job_id, execution_id, execution, now)
        publish_events([event_message(
            execution.event_id, execution.event_seq, "unit.started", execution.job_id, now,
            {"job_id": execution.job_id, **unit_event(execution_id, execution, status=UnitStatus.RUNNING)})])
        call_timeout = min(execution.provider_timeout_ms / 1000, (execution.deadline_at - now).total_seconds())
        return Claim(execution_id, execution.job_id, execution.region, execution.model_id, execution.question_id,
                     execution.prompt, execution.attempts, now, call_timeout, execution.deadline_at,
                     provider_retries=execution.provider_retries, lease_until=execution.lease_expires_at,
                     lease_margin_s=margin)
    with db.session() as session:
        job = session.execute(_CLAIM_JOB, {"execution_id": execution_id}).one_or_none()
        if job is None or job.status != JobStatus.RUNNING or job.finalizing_at is not None:
            return None
        remaining = (job.deadline_at - now).total_seconds()
        if remaining <= 0:
            return None  # the deadline sweep finalises the job and times the unit out
        call_timeout = min(job.provider_timeout_ms / 1000, remaining)
        margin = settings.unit_lease_margin_seconds
        lease_until = now + timedelta(seconds=call_timeout + margin)
        values = {"execution_id": execution_id, "now": now, "lease_until": lease_until, "worker": worker}
        execution = None
        if held_since is not None:
            execution = session.execute(_RESUME, {**values, "held_since": held_since}).one_or_none()
        resumed = execution is not None
        if not resumed:
            execution = session.execute(_CLAIM, values).one_or_none()
            if execution is None:
                return None
        # This claim included. A resumed claim is checked too: on Postgres the claim that used the
        # last attempt commits before its dead-lettering, which the database may have cut off.
        if execution.attempts - execution.provider_retries > settings.max_unit_attempts:
            return _dead_letter(session, settings, job.id, execution_id, execution, now)
        if not resumed:
            emit(session, job.id, "unit.started", unit_event(execution_id, execution, status=UnitStatus.RUNNING))
        return Claim(execution_id, job.id, execution.region, execution.model_id, execution.question_id,
                     execution.prompt, execution.attempts, now, call_timeout, job.deadline_at,
                     provider_retries=execution.provider_retries, lease_until=lease_until, lease_margin_s=margin)


def _dead_letter(session, settings: Settings, job_id: str, execution_id: int, execution,  # noqa: ANN001
                 now: datetime) -> Claim | None:
    """The unit's claims ended without any outcome MAX_UNIT_ATTEMPTS times: fail it as ``poison``
    (while the claim stamped ``now`` holds it; None when it no longer does)."""
    execution_failure = {
        "code": "poison", "transient": False, "stage": "claim", "region": execution.region,
        "model": execution.model_id, "provider": execution.provider,
        "message": f"unit used all {settings.max_unit_attempts} attempts without an answer",
        "dead_letter": True, "last_error": execution.failure,
    }
    failed = session.execute(
        update(UNITS).where(HELD)
        .values(status=UnitStatus.FAILED, completed_at=now, duration_ms=0, lease_expires_at=None,
                attempts=execution.attempts - 1,  # this claim did not run
                failure=execution_failure, classification=Classification.TECHNICAL_FAILURE),
        {"execution_id": execution_id, "held_since": now},
    ).rowcount
    if not failed:
        return None
    emit(session, job_id, "unit.failed", unit_event(execution_id, execution, status=UnitStatus.FAILED, error="poison"))
    log.warning("unit dead-lettered", extra={"job_id": job_id, "execution_id": execution_id})
    return Claim(execution_id, job_id, execution.region, execution.model_id, execution.question_id,
                 execution.prompt, execution.attempts - 1, None, 0.0, dead_lettered=True)


def call_deadline(claim: Claim) -> float:
    """The :func:`time.monotonic` time the claim's provider call must end by: the earliest of the
    provider timeout, the job's deadline, and the lease less its margin (so the worker still
    holds the lease when it records the outcome). In the past when none of them leaves time."""
    wall, mono = utcnow(), time.monotonic()
    left = claim.call_timeout_s
    if claim.deadline_at is not None:
        left = min(left, (claim.deadline_at - wall).total_seconds())
    if claim.lease_until is not None:
        left = min(left, (claim.lease_until - wall).total_seconds() - claim.lease_margin_s)
    return mono + left
