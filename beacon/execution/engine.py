"""The execution engine: a queued job becomes units, each run once, the job finalised once.

Every state change is a conditional UPDATE, so a second delivery of any message is a no-op:

* ``start_job``: ``queued → running`` and one ``pending`` row per unit (``ON CONFLICT DO
  NOTHING``), then one ``execute_unit`` message per unit on its region queue.
* ``step_unit``: one ``execute_unit`` delivery, start to finish. ``run_unit`` claims its row
  with a lease (``pending``, or ``running`` with an expired lease), calls the region's
  provider with one deadline (:func:`call_deadline`: the provider timeout, the job's deadline
  and the lease less its margin, whichever comes first), and records the outcome only while it
  still holds that lease. Transient errors go back to ``pending`` and retry with backoff while
  the job's deadline leaves time for another call, at most ``MAX_PROVIDER_CALLS`` calls;
  permanent ones fail at once. A unit whose claims ended without any outcome (a crashed or
  killed worker) ``MAX_UNIT_ATTEMPTS`` times fails with code ``poison``; provider retries do not
  count there (``provider_retries``). A call cut off by a worker shutting down hands the unit
  back (its claim refunded) and re-dispatches it. ``step_unit`` then does what the outcome calls
  for: re-dispatch, or finalise the job.
* A database that cannot be reached raises :class:`DatabaseUnavailable`, carrying what the
  delivery had done (``resume``); the task retries later with it, so an answer already
  received is recorded then, and a finalisation is not lost.
* ``finalize_job``: claimed once through ``finalizing_at`` when every unit is terminal or the
  deadline has passed; unfinished units become ``timeout`` and the job ``completed`` or
  ``failed`` by ``min_success_rate`` and ``min_regions``, all in one transaction.
* ``sweep``: the safety net beat runs: deadlines, expired leases, lost dispatches, jobs still
  queued after a grace period, and finalisations a crashed worker left undone.
* ``start_generation``: a manual retry of a finished job: ``completed | failed → running``, the
  generation + 1, the chosen failed or timed-out units back to ``pending`` (each keeping what the
  earlier generation recorded in its ``history``); finalisation then runs once more, for it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import (
    DateTime,
    Float,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from beacon.db import Database, insert_ignore
from beacon.errors import InvalidState, not_found
from beacon.execution.analysis import Thresholds, analyse
from beacon.execution.bias import score_answer
from beacon.execution.classify import classify, is_success
from beacon.execution.providers import ProviderError, ProviderRegistry, ProviderRequest
from beacon.execution.providers.base import ProviderAborted
from beacon.execution.providers.inflight import SHUTDOWN, CallAborts, RegionSlots
from beacon.ingest.jobspec import JobSpec, parse_jobspec
from beacon.ingest.questions import load_catalogue
from beacon.messaging.celery_app import EXECUTE_UNIT, region_queue
from beacon.messaging.events import emit, publish_events
from beacon.messaging.outbox import enqueue
from beacon.models import Event, Execution, Job, WorkerHeartbeat
from beacon.resources.jobs import get_job, require_state
from beacon.settings import Settings
from beacon.statuses import OPEN_JOB, OPEN_UNIT, Classification, JobStatus, UnitOutcome, UnitStatus
from beacon.timeutil import isoformat, parse_rfc3339, utcnow

log = logging.getLogger(__name__)

#: A transient failure is retried only when at least this long is left, after the backoff, for
#: another call before the job's deadline; otherwise the unit fails with its last error.
MIN_CALL_SECONDS = 1.0


def is_db_unavailable(error: BaseException) -> bool:
    """The database cannot be reached (down, restarting, connection lost), as opposed to a bug."""
    if isinstance(error, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


class DatabaseUnavailable(Exception):
    """The database could not be reached during a delivery; ``resume`` (JSON) says what to redo.

    ``None``: nothing was done, run the delivery again. Otherwise a dict: ``{"held_since": ...}``
    (a claim stamped so may have committed: take it up again if the unit carries it),
    ``{"record": ..., "claim": ...}`` (an outcome obtained under a claim, to record), or
    ``{"finalize": job_id, "deadline": bool}`` (the unit is recorded, its job's finalisation is
    left to do).
    """

    def __init__(self, resume: dict | None, cause: BaseException):
        super().__init__(f"database unavailable: {type(cause).__name__}: {cause}")
        self.resume = resume


def db_retry_delay(settings: Settings, retries: int) -> float:
    """Backoff for a delivery that could not reach the database: exponential, jittered, capped."""
    ceiling = min(settings.db_retry_max_seconds, settings.db_retry_base_seconds * 2 ** retries)
    return random.uniform(ceiling / 2, ceiling)


# dispatch(execution_id, region, countdown_seconds) publishes one execute_unit message.
DispatchUnit = Callable[[int, str, float], None]


def stored_spec(job: Job, settings: Settings) -> JobSpec:
    """The parsed JobSpec of a stored job (validated at ingest; parsed again for its defaults)."""
    return parse_jobspec(job.spec, default_model=settings.default_model, catalogue=load_catalogue(settings.questions_file),
                         max_units=10**9)


# dispatch_many([(execution_id, region), ...]) publishes one execute_unit message per unit, as one batch.
DispatchUnits = Callable[[list[tuple[int, str]]], None]


def start_job(db: Database, settings: Settings, job_id: str, dispatch: DispatchUnit,
              dispatch_many: DispatchUnits | None = None) -> int:
    """``queued → running``, insert the units, dispatch them (in one batch through ``dispatch_many``
    when given). Returns units dispatched (0: a no-op)."""
    now = utcnow()
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            log.warning("run_job for an unknown job", extra={"job_id": job_id})
            return 0
        spec = stored_spec(job, settings)
        moved = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now, updated_at=now,
                    deadline_at=now + timedelta(seconds=spec.timeout_s),
                    provider_timeout_ms=int(spec.provider_timeout_s * 1000))
        ).rowcount
        if not moved:
            return 0
        units = spec.units(load_catalogue(settings.questions_file))
        session.execute(
            insert_ignore(session, Execution, "job_id", "region", "model_id", "question_id"),
            [
                {"job_id": job_id, "region": u.region, "model_id": u.model_id, "question_id": u.question_id,
                 "prompt": u.prompt, "status": UnitStatus.PENDING, "attempts": 0, "created_at": now, "dispatched_at": now}
                for u in units
            ],
        )
        rows = session.execute(
            select(Execution.id, Execution.region).where(Execution.job_id == job_id, Execution.status == UnitStatus.PENDING)
        ).all()
        emit(session, job_id, "job.started", {"units": len(rows)})
        emit(session, job_id, "job.running", {"units": len(rows), "generation": job.generation or 1})
    if dispatch_many is not None:
        dispatch_many([(execution_id, region) for execution_id, region in rows])
    else:
        for execution_id, region in rows:
            dispatch(execution_id, region, 0)
    log.info("job started", extra={"job_id": job_id, "units": len(rows)})
    return len(rows)


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


# The hot path's statements, built once on the tables (Core: no ORM flush or bulk-update path);
# each call only binds values.
_JOBS, _UNITS = Job.__table__, Execution.__table__
_OPEN = _UNITS.c.status.in_(OPEN_UNIT)
_CLAIM_JOB = (  # only the columns a claim needs, never the spec or raw body
    select(_JOBS.c.id, _JOBS.c.status, _JOBS.c.finalizing_at, _JOBS.c.deadline_at, _JOBS.c.provider_timeout_ms)
    .join(_UNITS, _UNITS.c.job_id == _JOBS.c.id)
    .where(_UNITS.c.id == bindparam("execution_id"))
)
_CLAIMED = (_UNITS.c.attempts, _UNITS.c.provider_retries, _UNITS.c.region, _UNITS.c.model_id, _UNITS.c.question_id,
            _UNITS.c.prompt, _UNITS.c.provider, _UNITS.c.failure)
_CLAIM = (
    update(_UNITS)
    .where(_UNITS.c.id == bindparam("execution_id"),
           or_(_UNITS.c.status == UnitStatus.PENDING,
               and_(_UNITS.c.status == UnitStatus.RUNNING, _UNITS.c.lease_expires_at < bindparam("now"))))
    .values(status=UnitStatus.RUNNING, claimed_at=bindparam("now"), started_at=bindparam("now"),
            lease_expires_at=bindparam("lease_until"), attempts=_UNITS.c.attempts + 1, claimed_by=bindparam("worker"))
    .returning(*_CLAIMED)
)
# Postgres: the claim in one statement, joined to its job. The job must be running, not
# finalising, before its deadline; the lease is the call's timeout (the provider timeout or what is
# left of the deadline, whichever is shorter) plus the margin, computed by the database from the
# same values the two-statement path (SQLite) reads first.
_NOW = bindparam("now", type_=DateTime(timezone=True))


def _seconds(value):  # noqa: ANN001, ANN202
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


_CALL_ENDS = func.least(_NOW + _seconds(_JOBS.c.provider_timeout_ms / 1000.0), _JOBS.c.deadline_at)
_CLAIM_JOINED = (
    update(_UNITS)
    .where(_UNITS.c.id == bindparam("execution_id"), _JOBS.c.id == _UNITS.c.job_id,
           _JOBS.c.status == JobStatus.RUNNING, _JOBS.c.finalizing_at.is_(None), _JOBS.c.deadline_at > _NOW,
           or_(_UNITS.c.status == UnitStatus.PENDING,
               and_(_UNITS.c.status == UnitStatus.RUNNING, _UNITS.c.lease_expires_at < _NOW)))
    .values(status=UnitStatus.RUNNING, claimed_at=_NOW, started_at=_NOW,
            lease_expires_at=_CALL_ENDS + _seconds(bindparam("margin", type_=Float)),
            attempts=_UNITS.c.attempts + 1, claimed_by=bindparam("worker"))
    .returning(*_CLAIMED, _UNITS.c.id, _JOBS.c.id.label("job_id"), _JOBS.c.deadline_at,
               _JOBS.c.provider_timeout_ms, _UNITS.c.lease_expires_at)
    .cte("claimed")
)
_EVENTS = Event.__table__


def _with_event(change, job_id, event_type, data, when=None):  # noqa: ANN001, ANN202
    """The event of ``change`` (a data-modifying CTE of at most one row, the unit's) in the same
    statement: the job's ``event_seq`` bumped, then the event row with that seq, as ``emit`` does in
    a transaction (the job row's lock orders the job's events by commit). Nothing when ``change``
    changed no row, or ``when`` (over ``change``'s columns) does not hold. Returns (seq, event) CTEs."""
    changed = select(job_id).select_from(change)
    if when is not None:
        changed = changed.where(when)
    seq = (update(_JOBS).where(_JOBS.c.id == changed.scalar_subquery())
           .values(event_seq=_JOBS.c.event_seq + 1).returning(_JOBS.c.id, _JOBS.c.event_seq).cte("seq"))
    event = (insert(_EVENTS).from_select(
        ["job_id", "seq", "type", "time", "data"],
        select(seq.c.id, seq.c.event_seq, cast(event_type, Text), bindparam("event_time", type_=_NOW.type),
               data).select_from(seq.join(change, true())),
    ).returning(_EVENTS.c.id).cte("event"))
    return seq, event


def _json_object(**values):  # noqa: ANN003, ANN202
    return func.jsonb_build_object(*(part for key, value in values.items() for part in (cast(literal(key), Text), value)))


# Postgres: the claim and its ``unit.started`` event in one autocommitted statement (the technique
# of ``Database.write_together``). A claim that used the unit's last attempt writes no event here:
# ``_dead_letter`` fails the unit next.
_STARTS = _CLAIM_JOINED.c.attempts - _CLAIM_JOINED.c.provider_retries <= bindparam("max_attempts")
_STARTED_SEQ, _STARTED_EVENT = _with_event(
    _CLAIM_JOINED, _CLAIM_JOINED.c.job_id, literal("unit.started"),
    _json_object(job_id=_CLAIM_JOINED.c.job_id, execution_id=_CLAIM_JOINED.c.id, region=_CLAIM_JOINED.c.region,
                 model_id=_CLAIM_JOINED.c.model_id, question_id=_CLAIM_JOINED.c.question_id,
                 attempts=_CLAIM_JOINED.c.attempts, status=cast(literal(UnitStatus.RUNNING), Text)),
    when=_STARTS)
_CLAIM_WITH_EVENT = select(_CLAIM_JOINED, _STARTED_SEQ.c.event_seq, _STARTED_EVENT.c.id.label("event_id")).select_from(
    _CLAIM_JOINED.outerjoin(_STARTED_SEQ, true()).outerjoin(_STARTED_EVENT, true()))
# A delivery that held the claim before the database went away takes it up again (same attempt).
_RESUME = (
    update(_UNITS)
    .where(_UNITS.c.id == bindparam("execution_id"), _UNITS.c.status == UnitStatus.RUNNING,
           _UNITS.c.claimed_at == bindparam("held_since"))
    .values(claimed_at=bindparam("now"), lease_expires_at=bindparam("lease_until"), claimed_by=bindparam("worker"))
    .returning(*_CLAIMED)
)
_HELD = and_(_UNITS.c.id == bindparam("execution_id"), _UNITS.c.status == UnitStatus.RUNNING,
             _UNITS.c.claimed_at == bindparam("held_since"))
_RECORD_ANSWER_VALUES = dict(
    status=UnitStatus.COMPLETED, output=bindparam("output"), output_sha256=bindparam("output_sha256"),
    classification=bindparam("classification"), provider=bindparam("provider"),
    served_region=bindparam("served_region"), completed_at=bindparam("now"), duration_ms=bindparam("duration_ms"),
    lease_expires_at=None, failure=null(),
    bias_score=bindparam("bias_score", type_=_UNITS.c.bias_score.type),
    region_flag=bindparam("region_flag"),
    provider_receipt=bindparam("provider_receipt", type_=_UNITS.c.provider_receipt.type),
    finish_reason=bindparam("finish_reason"), prompt_tokens=bindparam("prompt_tokens"),
    completion_tokens=bindparam("completion_tokens"),
)
_FINALIZABLE = and_(_JOBS.c.id == bindparam("job_id"), _JOBS.c.status == JobStatus.RUNNING, _JOBS.c.finalizing_at.is_(None))
_CLAIM_FINALIZE_DONE = update(_JOBS).where(
    _FINALIZABLE, ~exists().where(_UNITS.c.job_id == _JOBS.c.id, _OPEN)
).values(finalizing_at=bindparam("now"))
_CLAIM_FINALIZE_DEADLINE = update(_JOBS).where(
    _FINALIZABLE, _JOBS.c.deadline_at <= bindparam("now")
).values(finalizing_at=bindparam("now"))
_COMPLETE = select(_JOBS.c.id).where(_FINALIZABLE, ~exists().where(_UNITS.c.job_id == _JOBS.c.id, _OPEN))


def finalize_if_complete(db: Database, settings: Settings, job_id: str) -> str | None:
    """What a unit's delivery does once its outcome is recorded: finalise the job if no unit is open.

    The check is one autocommitted read, no lock, made after the outcome committed: of a job's
    last units recorded concurrently, the one that commits last sees them all terminal (others
    may too); :func:`finalize_job` claims the job once, whoever else tries."""
    with db.autocommitted() as connection:
        complete = connection.execute(_COMPLETE, {"job_id": job_id}).first() is not None
    return finalize_job(db, settings, job_id) if complete else None


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
        with db.autocommitted() as connection:
            execution = connection.execute(_CLAIM_WITH_EVENT, {
                "execution_id": execution_id, "now": now, "margin": margin, "worker": worker,
                "max_attempts": settings.max_unit_attempts, "event_time": now}).one_or_none()
        if execution is None:
            return None
        if execution.event_id is None:  # this claim used the last attempt
            with db.session() as session:
                return _dead_letter(session, settings, execution.job_id, execution_id, execution, now)
        publish_events([{"id": execution.event_id, "seq": execution.event_seq, "type": "unit.started",
                         "job_id": execution.job_id, "time": isoformat(now),
                         "data": {"job_id": execution.job_id,
                                  **unit_event(execution_id, execution, status=UnitStatus.RUNNING)}}])
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
        if execution is None:
            execution = session.execute(_CLAIM, values).one_or_none()
            if execution is None:
                return None
            lost = execution.attempts - execution.provider_retries  # this claim included
            if lost > settings.max_unit_attempts:
                return _dead_letter(session, settings, job.id, execution_id, execution, now)
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
        update(_UNITS).where(_HELD)
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


def _recording(change):  # noqa: ANN001, ANN202
    """Postgres: ``change`` (an UPDATE of the held unit) and its event in one statement (``_with_event``)."""
    recorded = change.returning(_UNITS.c.job_id).cte("recorded")
    seq, event = _with_event(recorded, recorded.c.job_id, bindparam("event_type"),
                             bindparam("event_data", type_=_EVENTS.c.data.type))
    return select(seq.c.event_seq, event.c.id).select_from(recorded.outerjoin(seq, true()).outerjoin(event, true()))


_RECORD_ANSWER = _recording(update(_UNITS).where(_HELD).values(**_RECORD_ANSWER_VALUES))


def _record_held(db: Database, claim: Claim, values: dict, params: dict, event: str, data: dict,
                 recording=None) -> bool:  # noqa: ANN001
    """UPDATE the unit with ``values`` while ``claim`` holds it, and write ``event`` with it: one
    autocommitted statement on Postgres (``recording``: the statement, when built once), one
    transaction elsewhere.

    Whether this made the job's last open unit terminal is left to finalisation's own check (a
    read after this commit, :func:`finalize_if_complete`): deciding it here would need the job's row lock
    before the statement's snapshot, which one statement cannot take."""
    held = {"execution_id": claim.execution_id, "held_since": claim.claimed_at, **params}
    if not db.is_postgres:
        with db.session() as session:
            return bool(session.execute(update(_UNITS).where(_HELD).values(**values), held).rowcount) and bool(
                emit(session, claim.job_id, event, data))
    if recording is None:
        recording = _recording(update(_UNITS).where(_HELD).values(**values))
    now = utcnow()
    payload = {"job_id": claim.job_id, **data}
    with db.autocommitted() as connection:
        row = connection.execute(recording, {**held, "event_type": event, "event_time": now,
                                             "event_data": payload}).one_or_none()
    if row is None:
        return False
    seq, event_id = row
    publish_events([{"id": event_id, "seq": seq, "type": event, "job_id": claim.job_id, "time": isoformat(now),
                     "data": payload}])
    return True


def record_answer(db: Database, claim: Claim, output: str, provider: str, served_region: str, *,
                  region_flag: str | None = None, provider_receipt: dict | None = None,
                  finish_reason: str | None = None, usage: dict | None = None) -> bool:
    """Record the answer, its classification and its bias score (``beacon.execution.bias``) while
    the claim still holds the unit's lease. ``provider`` is the backend that answered (the hybrid
    router's ``provider_used`` when it reports one); ``region_flag`` and ``provider_receipt`` are
    the router's; ``finish_reason`` and ``usage`` (token counts) an OpenAI-compatible endpoint's."""
    now = utcnow()
    classification = classify(output, failed=False)
    duration_ms = int((now - claim.claimed_at).total_seconds() * 1000)
    return _record_held(db, claim, _RECORD_ANSWER_VALUES, {
        "output": output, "output_sha256": hashlib.sha256(output.encode()).hexdigest(),
        "classification": classification, "provider": provider[:64], "served_region": served_region,
        "now": now, "duration_ms": duration_ms,
        "bias_score": score_answer(output, classification), "region_flag": region_flag,
        "provider_receipt": provider_receipt, "finish_reason": finish_reason,
        "prompt_tokens": (usage or {}).get("prompt_tokens"), "completion_tokens": (usage or {}).get("completion_tokens"),
    }, "unit.completed", unit_event(claim.execution_id, claim, status=UnitStatus.COMPLETED,
                                    classification=classification, duration_ms=duration_ms), _RECORD_ANSWER)


def record_failure(db: Database, claim: Claim, error: ProviderError | dict, provider: str, final: bool,
                   retry_in: float = 0.0) -> bool:
    """Fail the unit (``final``) or hand it back as ``pending`` for a retry in ``retry_in`` seconds
    (counted in ``provider_retries``, not as a lost claim)."""
    now = utcnow()
    failure = error if isinstance(error, dict) else {**error.to_dict(), "attempt": claim.attempts}
    values: dict = {"failure": failure, "provider": provider, "lease_expires_at": None}
    if final:
        values.update(status=UnitStatus.FAILED, classification=Classification.TECHNICAL_FAILURE, completed_at=now,
                      duration_ms=int((now - claim.claimed_at).total_seconds() * 1000))
    else:
        values.update(status=UnitStatus.PENDING, dispatched_at=now + timedelta(seconds=retry_in),
                      provider_retries=_UNITS.c.provider_retries + 1)
    return _record_held(db, claim, values, {}, "unit.failed" if final else "unit.retrying", unit_event(
        claim.execution_id, claim, status=UnitStatus.FAILED if final else UnitStatus.PENDING,
        error=failure.get("code"), retry_in=None if final else retry_in))


def release_unit(db: Database, claim: Claim) -> bool:
    """Hand a unit whose call this worker cut off (shutting down) back as ``pending``, its claim
    refunded: the unit was not at fault, and another worker runs it at once."""
    now = utcnow()
    with db.session() as session:
        return bool(session.execute(
            update(_UNITS).where(_HELD).values(status=UnitStatus.PENDING, lease_expires_at=None, dispatched_at=now,
                                               attempts=_UNITS.c.attempts - 1),
            {"execution_id": claim.execution_id, "held_since": claim.claimed_at},
        ).rowcount)


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with full jitter, bounded by UNIT_RETRY_MAX_SECONDS."""
    ceiling = min(settings.unit_retry_max_seconds, settings.unit_retry_base_seconds * 2 ** (attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Outcome:
    status: UnitOutcome
    job_id: str | None = None
    region: str | None = None
    retry_in: float = 0.0
    error: ProviderError | None = None


class UnitObserver(Protocol):
    """Hooks for instrumentation (``beacon.observability.units``); every one is optional to act on."""

    def claimed(self, claim: Claim) -> None: ...
    def outcome(self, outcome: Outcome) -> None: ...
    def finalised(self, status: str | None) -> None: ...


_PUT_BACK = (
    update(_UNITS)
    .where(_UNITS.c.id == bindparam("execution_id"), _UNITS.c.status == UnitStatus.PENDING)
    .values(dispatched_at=bindparam("now"))
)


def put_back(db: Database, execution_id: int, region: str, dispatch: DispatchUnit, after: float) -> Outcome:
    """Send a unit whose region has no free slot here back to its queue, after a short countdown
    (``after``, jittered by up to half again: ``RegionSlots.retry_after``).

    Not an attempt (nothing is claimed), and the unit's ``dispatched_at`` is refreshed so the
    sweeper does not take it for lost while it waits."""
    delay = random.uniform(after, 1.5 * after)
    with db.session() as session:
        session.execute(_PUT_BACK, {"execution_id": execution_id, "now": utcnow() + timedelta(seconds=delay)})
    dispatch(execution_id, region, delay)
    return Outcome(UnitOutcome.WAITING, None, region, delay)


def unit_region(db: Database, execution_id: int) -> str | None:
    """The unit's region (for a message that does not say which queue it came from)."""
    with db.session() as session:
        return session.scalar(select(_UNITS.c.region).where(_UNITS.c.id == execution_id))


def step_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
              dispatch: DispatchUnit, observer: UnitObserver | None = None, aborts: CallAborts | None = None,
              resume: dict | None = None, worker: str | None = None, slots: RegionSlots | None = None,
              region: str | None = None) -> Outcome:
    """One ``execute_unit`` delivery: run the unit, then re-dispatch it (``retry``) or finalise
    the job (the unit ended, or the deadline cut its call).

    ``aborts`` holds the job Aborts the worker triggers (default: a private one). ``resume`` is
    a :class:`DatabaseUnavailable`'s, from the delivery that could not reach the database.
    ``worker`` names the worker claiming the unit (``claimed_by``). ``slots``: the worker's
    region budget; a unit of a region the worker does not serve is sent to its region's queue
    (``rerouted``), never run here; otherwise a slot of the unit's ``region`` (the message's,
    looked up when it names none) is taken before the claim and held until the outcome is recorded; with none free the unit is put back
    (:func:`put_back`, outcome ``waiting``) without being claimed.
    Raises :class:`DatabaseUnavailable` when the database cannot be reached.
    """
    if resume is not None and "finalize" in resume:
        job_id = resume["finalize"]
        finalised = _finalize(db, settings, job_id, deadline=bool(resume.get("deadline")))
        if observer is not None and finalised is not None:
            observer.finalised(finalised)
        return Outcome(UnitOutcome.SKIPPED, job_id)
    slot = None
    if slots is not None and resume is None:  # a resumed delivery finishes what it had started
        try:
            region = region or unit_region(db, execution_id)
            if region is not None and not slots.serves(region):
                log.warning("unit of a region this worker does not serve: sent to its region's queue",
                            extra={"execution_id": execution_id, "region": region})
                dispatch(execution_id, region, 0)
                return Outcome(UnitOutcome.REROUTED, None, region)
            if region is not None and not slots.try_take(region, execution_id):
                slots.waited(region, execution_id)
                return put_back(db, execution_id, region, dispatch, slots.retry_after(region))
        except Exception as exc:
            if is_db_unavailable(exc):
                raise DatabaseUnavailable(None, exc) from exc
            raise
        slot = region
    taken = time.monotonic()
    try:
        return _step_claimed(db, settings, registry, execution_id, dispatch, observer, aborts, resume, worker)
    finally:
        if slot is not None:
            slots.give_back(slot, time.monotonic() - taken)


def _step_claimed(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
                  dispatch: DispatchUnit, observer: UnitObserver | None, aborts: CallAborts | None,
                  resume: dict | None, worker: str | None) -> Outcome:
    outcome = run_unit(db, settings, registry, execution_id, on_claim=observer.claimed if observer else None,
                       aborts=aborts, resume=resume, worker=worker)
    if observer is not None:
        observer.outcome(outcome)
    finalised = None
    if outcome.status == UnitOutcome.RETRY:
        dispatch(execution_id, outcome.region, outcome.retry_in)
    elif outcome.status in (UnitOutcome.COMPLETED, UnitOutcome.FAILED, UnitOutcome.DEAD_LETTERED):
        finalised = _finalize(db, settings, outcome.job_id)
    elif outcome.status == UnitOutcome.DEADLINE:
        finalised = _finalize(db, settings, outcome.job_id, deadline=True)
    if observer is not None and finalised is not None:
        observer.finalised(finalised)
    return outcome


def _finalize(db: Database, settings: Settings, job_id: str, *, deadline: bool = False) -> str | None:
    try:
        if deadline:
            return finalize_job(db, settings, job_id, deadline=True)
        return finalize_if_complete(db, settings, job_id)
    except Exception as exc:
        if is_db_unavailable(exc):
            raise DatabaseUnavailable({"finalize": job_id, "deadline": deadline}, exc) from exc
        raise


def run_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
             on_claim: Callable[[Claim], None] | None = None, aborts: CallAborts | None = None,
             resume: dict | None = None, worker: str | None = None) -> Outcome:
    """Claim, call the provider, record; ``on_claim`` learns which unit this is as soon as it is
    claimed (for tags and log context). :func:`step_unit` acts on the outcome."""
    if resume is not None and "record" in resume:  # the call was made; its outcome awaits recording
        claim = Claim.from_resume(resume["claim"])
        if on_claim is not None:
            on_claim(claim)
        return _record(db, claim, resume["record"])
    held_since = parse_rfc3339(resume["held_since"]) if resume and resume.get("held_since") else None
    stamp = utcnow()
    try:
        claim = claim_unit(db, settings, execution_id, held_since=held_since, worker=worker, now=stamp)
    except Exception as exc:
        if is_db_unavailable(exc):  # the claim may have committed before the connection was lost
            raise DatabaseUnavailable({"held_since": isoformat(stamp)}, exc) from exc
        raise
    if claim is None:
        return Outcome(UnitOutcome.SKIPPED)
    if on_claim is not None:
        on_claim(claim)
    if claim.dead_lettered:
        return Outcome(UnitOutcome.DEAD_LETTERED, claim.job_id, claim.region)
    return _record(db, claim, _call(settings, registry, claim, aborts or CallAborts()))


def _call(settings: Settings, registry: ProviderRegistry, claim: Claim, aborts: CallAborts) -> dict:
    """Make the claim's provider call; what to record, as JSON (so it can wait for the database)."""
    provider = registry.get(claim.region)
    with aborts.job(claim.job_id) as abort:
        request = ProviderRequest(region=claim.region, model_id=claim.model_id, prompt=claim.prompt,
                                  question_id=claim.question_id, timeout_s=claim.call_timeout_s,
                                  deadline=call_deadline(claim), max_answer_bytes=settings.max_answer_bytes,
                                  abort=abort)
        try:
            answer = registry.call(claim.region, request)
        except ProviderAborted as aborted:
            if aborted.reason == SHUTDOWN:
                return {"kind": "release"}
            return {"kind": "skip"}  # the job ended (cancelled, finalised) while the call was in flight
        except ProviderError as error:
            return _after_failure(settings, claim, error, provider.name)
    # Plain JSON: a database outage carries the record through the broker (``DatabaseUnavailable``).
    return {"kind": "answer", "output": answer.output, "provider": answer.provider_used or answer.provider,
            "served_region": answer.served_region, "region_flag": answer.region_flag,
            "provider_receipt": answer.provider_receipt, "finish_reason": answer.finish_reason,
            "usage": answer.usage}


def _after_failure(settings: Settings, claim: Claim, error: ProviderError, provider: str) -> dict:
    """Retry a transient failure while the job's deadline leaves time for another call, within
    MAX_PROVIDER_CALLS; otherwise the unit fails with this (its last) error."""
    now = utcnow()
    failure = {**error.to_dict(), "attempt": claim.attempts, "provider_calls": claim.provider_retries + 1}
    if claim.deadline_at is not None and now >= claim.deadline_at:
        # The call was cut by the job's deadline: leave the unit open; finalisation times it out.
        return {"kind": "deadline", "failure": failure}
    delay, final = 0.0, True
    if not error.transient:
        pass
    elif claim.provider_retries + 1 >= settings.max_provider_calls:
        failure["retries_ended"] = "max_provider_calls"
    else:
        delay = retry_delay(settings, claim.provider_retries + 1)
        if claim.deadline_at is not None and (claim.deadline_at - now).total_seconds() - delay < MIN_CALL_SECONDS:
            failure["retries_ended"] = "deadline"
            delay = 0.0
        else:
            final = False
    return {"kind": "failure", "failure": failure, "provider": provider, "final": final, "retry_in": delay}


def _error_of(failure: dict) -> ProviderError:
    """The ProviderError a recorded failure describes (for observers)."""
    known = ("code", "transient", "stage", "region", "model", "provider", "message")
    details = {k: v for k, v in failure.items() if k not in known}
    return ProviderError(failure["code"], failure["stage"], failure["region"], failure["model"], failure["provider"],
                         failure["message"], details)


def _record(db: Database, claim: Claim, record: dict) -> Outcome:
    """Record what the call gave, while the claim holds the lease (else: skipped)."""
    kind = record["kind"]
    try:
        if kind == "answer":
            recorded = record_answer(db, claim, record["output"], record["provider"], record["served_region"],
                                     region_flag=record.get("region_flag"),
                                     provider_receipt=record.get("provider_receipt"),
                                     finish_reason=record.get("finish_reason"), usage=record.get("usage"))
            if recorded:
                return Outcome(UnitOutcome.COMPLETED, claim.job_id, claim.region)
        elif kind == "failure":
            final, error = record["final"], _error_of(record["failure"])
            recorded = record_failure(db, claim, record["failure"], record["provider"], final=final,
                                      retry_in=record["retry_in"])
            if recorded:
                status = UnitOutcome.FAILED if final else UnitOutcome.RETRY
                return Outcome(status, claim.job_id, claim.region, record["retry_in"], error)
        elif kind == "release":
            if release_unit(db, claim):
                log.info("unit handed back: worker shutting down",
                         extra={"job_id": claim.job_id, "execution_id": claim.execution_id})
                return Outcome(UnitOutcome.RETRY, claim.job_id, claim.region, 0.0)
        elif kind == "deadline":
            return Outcome(UnitOutcome.DEADLINE, claim.job_id, claim.region, error=_error_of(record["failure"]))
    except Exception as exc:
        if is_db_unavailable(exc):
            raise DatabaseUnavailable({"claim": claim.to_resume(), "record": record}, exc) from exc
        raise
    return Outcome(UnitOutcome.SKIPPED)


def ended_jobs(db: Database, job_ids: list[str]) -> list[str]:
    """Those of ``job_ids`` no longer running (cancelled, stopped, finalised or finalising)."""
    if not job_ids:
        return []
    with db.session() as session:
        return list(session.scalars(
            select(Job.id).where(Job.id.in_(job_ids), or_(Job.status != JobStatus.RUNNING, Job.finalizing_at.isnot(None)))
        ))


def job_outcome(spec: JobSpec, units: list[Execution]) -> tuple[str, str]:
    """``completed`` or ``failed`` by DESIGN's rules, with the reason."""
    total = len(units)
    successes = [u for u in units if is_success(u.status, u.classification)]
    rate = len(successes) / total if total else 0.0
    regions_ok = {u.region for u in successes}
    needed_regions = min(spec.min_regions, len(spec.regions))
    reason = (f"{len(successes)}/{total} units succeeded (rate {rate:.2f}, needed {spec.min_success_rate:.2f}); "
              f"{len(regions_ok)} regions with a success (needed {needed_regions})")
    ok = rate >= spec.min_success_rate and len(regions_ok) >= needed_regions
    return (JobStatus.COMPLETED if ok else JobStatus.FAILED), reason


def finalize_job(db: Database, settings: Settings, job_id: str, *, deadline: bool = False) -> str | None:
    """Finalise once: when no unit is open (or, with ``deadline``, past the deadline). Returns the status.

    The analysis, the receipts, the signed evidence bundle (and its CID), the transparency log
    entry and the terminal status commit in one transaction; the event and IPFS pinning follow.
    """
    from beacon.evidence import bundles

    now = utcnow()
    with db.session() as session:
        if deadline:  # units before the job row, the order every unit's event takes: no deadlock with them
            session.execute(select(_UNITS.c.id).where(_UNITS.c.job_id == job_id, _OPEN).with_for_update())
        claim = _CLAIM_FINALIZE_DEADLINE if deadline else _CLAIM_FINALIZE_DONE
        claimed = session.execute(claim, {"job_id": job_id, "now": now}).rowcount
        if not claimed:
            return None
        timed_out = session.execute(
            update(Execution)
            .where(Execution.job_id == job_id, Execution.status.in_(OPEN_UNIT))
            .values(status=UnitStatus.TIMEOUT, completed_at=now, lease_expires_at=None, classification=Classification.TECHNICAL_FAILURE)
            .returning(Execution.id, Execution.region, Execution.model_id, Execution.question_id, Execution.attempts)
        ).all()
        for unit in sorted(timed_out):
            emit(session, job_id, "unit.failed", unit_event(unit.id, unit, status=UnitStatus.TIMEOUT, error="timeout"))
        job = session.get(Job, job_id)
        units = list(session.scalars(select(Execution).where(Execution.job_id == job_id)))
        status, reason = job_outcome(stored_spec(job, settings), units)
        job.analysis = analyse([execution_dict(u) for u in units], Thresholds(*settings.analysis_thresholds))
        job.status, job.status_reason, job.updated_at = status, reason, now
        emit_finished(session, job_id, status, reason)
        sealed = bundles.seal_job(session, db, settings, job, units, now)
        job.finished_at = job.updated_at = utcnow()  # the finalising commit follows: stamped after sealing
    log.info("job finalised", extra={"job_id": job_id, "status": status, "reason": reason, "bundle_cid": sealed.cid,
                                     "leaf_index": sealed.appended.leaf_index})
    bundles.after_seal(db, settings, sealed)
    return status


def execution_dict(execution: Execution) -> dict:
    return {
        "region": execution.region, "model_id": execution.model_id, "question_id": execution.question_id,
        "status": execution.status, "classification": execution.classification, "output": execution.output,
        "attempts": execution.attempts,
    }


def unit_event(execution_id: int, unit: Any, **extra: Any) -> dict:
    """An event's ``data`` for one unit (``unit``: a claim or a row with region, model_id, question_id)."""
    return {"execution_id": execution_id, "region": unit.region, "model_id": unit.model_id,
            "question_id": unit.question_id, "attempts": getattr(unit, "attempts", None), **extra}


def emit_finished(session, job_id: str, status: str, reason: str) -> None:  # noqa: ANN001
    """``job.finished`` (as before) and the terminal ``job.<status>``, in the ending transaction."""
    emit(session, job_id, "job.finished", {"status": status, "reason": reason})
    emit(session, job_id, f"job.{status}", {"status": status, "reason": reason})


def end_job(db: Database, settings: Settings, job_id: str, *, status: str, reason: str, action: str,
            failure_code: str | None = None) -> tuple[str, int]:
    """End a job that is not terminal, in one transaction: the job and its open units take ``status``
    (with a ``failure_code`` on each unit when given). Returns (status before, units ended)."""
    now = utcnow()
    with db.session() as session:
        job = get_job(session, job_id)
        before = job.status
        require_state(job, OPEN_JOB, action)
        # units before the job row, the order every unit's event takes: no deadlock with them
        session.execute(select(_UNITS.c.id).where(_UNITS.c.job_id == job_id, _OPEN).with_for_update())
        moved = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(OPEN_JOB), Job.finalizing_at.is_(None))
            .values(status=status, status_reason=reason, finished_at=now, updated_at=now, finalizing_at=now)
        ).rowcount
        if not moved:  # finalised between our read and the update
            session.refresh(job)
            require_state(job, OPEN_JOB, action)
        units = list(session.scalars(
            select(Execution).where(Execution.job_id == job_id, Execution.status.in_(OPEN_UNIT)).with_for_update()
        ))
        for unit in units:
            unit.status, unit.completed_at, unit.lease_expires_at = status, now, None
            if failure_code:
                unit.classification = Classification.TECHNICAL_FAILURE
                unit.failure = {"code": failure_code, "transient": False, "stage": action, "region": unit.region,
                                "model": unit.model_id, "provider": unit.provider, "message": reason}
        emit_finished(session, job_id, status, reason)
    log.info(f"job {status}", extra={"job_id": job_id, "units": len(units), "reason": reason, "action": action})
    return before, len(units)


@dataclass(frozen=True)
class SweepResult:
    finalized_by_deadline: int
    finalized_late: int
    units_redispatched: int
    jobs_republished: int
    units_of_lost_workers: int = 0  # of units_redispatched: held by a worker whose heartbeat stopped
    workers_lost: int = 0


def heartbeat_timeout(settings: Settings) -> float:
    """A worker whose heartbeat is older than this is taken for dead (three missed heartbeats)."""
    return 3 * settings.worker_heartbeat_seconds


def record_heartbeat(db: Database, worker: str, units: list[int], started_at: datetime) -> None:
    """The worker ``worker`` is alive and holds the messages of ``units`` (received, not yet done)."""
    now = utcnow()
    values = {"worker": worker, "started_at": started_at, "seen_at": now, "units": sorted(set(units))}
    with db.session() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        statement = upsert(WorkerHeartbeat).values(**values)
        session.execute(statement.on_conflict_do_update(
            index_elements=["worker"], set_={"seen_at": now, "units": values["units"], "started_at": started_at}))


def forget_worker(db: Database, worker: str) -> None:
    """A worker leaving cleanly: it holds nothing any more."""
    with db.session() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker))


def sweep(db: Database, settings: Settings, dispatch: DispatchUnit, republish_job: Callable[[str], None]) -> SweepResult:
    """The periodic safety net (beat): nothing accepted is left without a way to a terminal state.

    Lost units are told from queued ones with the workers' heartbeats: the open units held by a
    worker whose heartbeat stopped, or claimed by it (``claimed_by``), and held by no live worker,
    are re-dispatched at once (a running one's lease is ended first), when some worker is alive
    to run them. The timers remain the
    safety net for what no heartbeat names (a broker that lost its messages, workers without
    heartbeats): expired leases, and units still pending ``PENDING_REDISPATCH_SECONDS`` after
    dispatch — except units a live worker holds (received, waiting for a thread or a retry's
    countdown), which are queued, not lost.
    """
    now = utcnow()
    with db.session() as session:
        overdue = list(session.scalars(
            select(Job.id).where(Job.status == JobStatus.RUNNING, Job.finalizing_at.is_(None), Job.deadline_at <= now)
        ))
        stalled = list(session.scalars(
            select(Job.id).where(Job.status == JobStatus.RUNNING, Job.finalizing_at.is_(None), ~exists().where(_UNITS.c.job_id == _JOBS.c.id, _OPEN))
        ))
        queued = list(session.scalars(
            select(Job.id).where(Job.status == JobStatus.QUEUED,
                                 Job.created_at <= now - timedelta(seconds=settings.job_queued_grace_seconds))
        ))
        cutoff = now - timedelta(seconds=heartbeat_timeout(settings))
        beats = session.execute(select(WorkerHeartbeat.worker, WorkerHeartbeat.seen_at, WorkerHeartbeat.units)).all()
        live = [b for b in beats if b.seen_at > cutoff]
        dead = [b for b in beats if b.seen_at <= cutoff] if live else []  # nobody alive: nothing to hand over
        held_live = {int(u) for b in live for u in b.units}
        orphans = {int(u) for b in dead for u in b.units} - held_live
        dead_names = [b.worker for b in dead]
        runnable = Execution.job_id.in_(select(Job.id).where(Job.status == JobStatus.RUNNING, Job.deadline_at > now))
        rescued = []
        if dead:
            of_dead = or_(Execution.id.in_(sorted(orphans)),
                          and_(Execution.status == UnitStatus.RUNNING, Execution.claimed_by.in_(dead_names)))
            if held_live:
                of_dead = and_(of_dead, Execution.id.not_in(sorted(held_live)))
            rescued = session.execute(
                update(Execution)
                .where(of_dead, Execution.status.in_(OPEN_UNIT), runnable)
                .values(dispatched_at=now, lease_expires_at=case((Execution.status == UnitStatus.RUNNING, now),
                                                                 else_=Execution.lease_expires_at))
                .returning(Execution.id, Execution.region)
            ).all()
        if dead:
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker.in_([b.worker for b in dead]),
                                                          WorkerHeartbeat.seen_at <= cutoff))
        lost = or_(
            and_(Execution.status == UnitStatus.RUNNING, Execution.lease_expires_at < now),
            and_(Execution.status == UnitStatus.PENDING,
                 Execution.dispatched_at <= now - timedelta(seconds=settings.pending_redispatch_seconds)),
        )
        timed = (
            update(Execution)
            .where(lost, runnable)
            .where(or_(Execution.dispatched_at.is_(None),
                       Execution.dispatched_at <= now - timedelta(seconds=settings.pending_redispatch_seconds)))
        )
        if held_live:
            timed = timed.where(Execution.id.not_in(sorted(held_live)))
        units = rescued + session.execute(
            timed.values(dispatched_at=now).returning(Execution.id, Execution.region)
        ).all()
    deadline_done = sum(1 for job_id in overdue if finalize_job(db, settings, job_id, deadline=True))
    late_done = sum(1 for job_id in stalled if finalize_job(db, settings, job_id))
    for execution_id, region in units:
        dispatch(execution_id, region, 0)
    for job_id in queued:
        republish_job(job_id)
    result = SweepResult(deadline_done, late_done, len(units), len(queued), len(rescued), len(dead))
    if any(vars(result).values()):
        log.info("sweep", extra=vars(result))
    if dead:
        log.warning("workers lost: their units dispatched again", extra={
            "workers": [b.worker for b in dead], "units": len(rescued)})
    return result


# --------------------------------------------------------------------------- generations (manual retries)

#: Only a finished job may start a new generation, and only these units re-run.
RETRYABLE_JOB = (JobStatus.COMPLETED, JobStatus.FAILED)
RETRYABLE_UNIT = (UnitStatus.FAILED, UnitStatus.TIMEOUT)


@dataclass(frozen=True)
class Generation:
    job_id: str
    generation: int
    previous_status: str
    execution_ids: list[int]
    outbox_ids: list[int]  # one execute_unit message per unit, committed with the change
    deadline_at: object


def unit_snapshot(unit: Execution) -> dict:
    """What a generation left on a unit, kept in its ``history`` when the unit re-runs."""
    return {
        "generation": unit.generation or 1, "status": unit.status, "classification": unit.classification,
        "output": unit.output, "output_sha256": unit.output_sha256, "provider": unit.provider,
        "served_region": unit.served_region, "region_flag": unit.region_flag,
        "provider_receipt": unit.provider_receipt, "bias_score": unit.bias_score, "attempts": unit.attempts,
        "started_at": isoformat(unit.started_at), "completed_at": isoformat(unit.completed_at),
        "duration_ms": unit.duration_ms, "failure": unit.failure,
    }


def start_generation(db: Database, settings: Settings, job_id: str, execution_ids: list[int] | None, *,
                     reason: str) -> Generation:
    """Re-run a finished job's failed or timed-out units as its next generation, in one transaction.

    ``execution_ids``: these units (each must be ``failed`` or ``timeout``), or ``None`` for every
    such unit. The job goes ``completed | failed → running`` (the only way out of a terminal
    state) with ``generation`` + 1, ``finalizing_at`` and ``finished_at`` cleared, no analysis yet
    and ``deadline_at`` = now + the signed timeout. Each chosen unit keeps its earlier run in
    ``history`` and starts again from ``pending`` with no attempts used. Its ``execute_unit``
    message is written to the outbox in the same transaction (``Generation.outbox_ids``: the
    caller relays them; beat's relay and sweeper are the safety net). Anything else raises
    ``invalid_state`` (409).
    """
    now = utcnow()
    with db.session() as session:
        job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            raise not_found("job", job_id)
        require_state(job, RETRYABLE_JOB, "retry")
        units = list(session.scalars(
            select(Execution).where(Execution.job_id == job_id).order_by(Execution.id).with_for_update()))
        if execution_ids is None:
            chosen = [u for u in units if u.status in RETRYABLE_UNIT]
            if not chosen:
                raise InvalidState("invalid_state", f"job {job_id} has no failed or timed-out unit to retry",
                                   {"status": job.status})
        else:
            by_id = {u.id: u for u in units}
            missing = [i for i in execution_ids if i not in by_id]
            if missing:
                raise not_found("execution", f"{missing[0]} of job {job_id}")
            chosen = [by_id[i] for i in dict.fromkeys(execution_ids)]
            done = [u for u in chosen if u.status not in RETRYABLE_UNIT]
            if done:
                raise InvalidState("invalid_state", f"execution {done[0].id} is {done[0].status}: only failed or "
                                   "timed-out units are retried", {"status": done[0].status, "execution_id": done[0].id})
        spec = stored_spec(job, settings)
        previous, generation = job.status, (job.generation or 1) + 1
        deadline = now + timedelta(seconds=spec.timeout_s)
        moved = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(RETRYABLE_JOB), Job.generation == job.generation)
            .values(status=JobStatus.RUNNING, generation=generation, finalizing_at=None, finished_at=None,
                    deadline_at=deadline, analysis=None, status_reason=reason, updated_at=now)
        ).rowcount
        if not moved:  # another retry or change won the race
            session.refresh(job)
            raise InvalidState("invalid_state", f"job {job_id} changed while retrying (it is {job.status})",
                               {"status": job.status})
        for unit in chosen:
            unit.history = [*(unit.history or []), unit_snapshot(unit)]
            unit.generation, unit.status, unit.attempts, unit.dispatched_at = generation, UnitStatus.PENDING, 0, now
            for name in ("classification", "output", "output_sha256", "provider", "served_region", "region_flag",
                         "provider_receipt", "bias_score", "claimed_at", "lease_expires_at", "started_at",
                         "completed_at", "duration_ms", "failure"):
                setattr(unit, name, None)
        outbox = [enqueue(session, EXECUTE_UNIT, region_queue(u.region), [u.id]).id for u in chosen]
        ids = [u.id for u in chosen]
        emit(session, job_id, "job.started", {"units": len(ids), "generation": generation})
        emit(session, job_id, "job.running", {"units": len(ids), "generation": generation})
    log.info("job generation started", extra={"job_id": job_id, "generation": generation, "units": len(ids),
                                               "previous_status": previous, "reason": reason})
    return Generation(job_id, generation, previous, ids, outbox, deadline)
