"""The execution engine: a queued job becomes units, each run once, the job finalised once.

This module is the engine's interface (the names workers, the API and the tests use) and the
delivery of a unit from start to finish; its parts live beside it: ``claims`` (the lease),
``recording`` (an outcome under the lease), ``finalisation`` (finalising or ending a job),
``sweep`` (the safety net and the heartbeats it reads), and ``store`` (what they share).

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

import logging
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, ContextManager, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from beacon.db import Database, insert_ignore
from beacon.errors import InvalidState, not_found
from beacon.execution.claims import Claim, call_deadline, claim_unit
from beacon.execution.finalisation import end_job as end_job
from beacon.execution.finalisation import ended_jobs as ended_jobs
from beacon.execution.finalisation import execution_dict as execution_dict
from beacon.execution.finalisation import finalize_if_complete, finalize_job
from beacon.execution.finalisation import job_outcome as job_outcome
from beacon.execution.providers import ProviderError, ProviderRegistry, ProviderRequest
from beacon.execution.providers.base import ProviderAborted
from beacon.execution.providers.inflight import SHUTDOWN, CallAborts, RegionSlots
from beacon.execution.recording import record_answer as record_answer
from beacon.execution.recording import record_failure, release_unit
from beacon.execution.store import JOBS, UNITS, DispatchUnit, stored_spec
from beacon.execution.sweep import forget_worker as forget_worker
from beacon.execution.sweep import record_heartbeat as record_heartbeat
from beacon.execution.sweep import sweep as sweep
from beacon.ingest.questions import load_catalogue
from beacon.messaging.celery_app import EXECUTE_UNIT, region_queue
from beacon.messaging.events import emit_many
from beacon.messaging.outbox import enqueue
from beacon.models import Execution, Job
from beacon.resources.jobs import require_state
from beacon.settings import Settings
from beacon.statuses import JobStatus, UnitOutcome, UnitStatus
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


# around_call(claim) is a context manager entered for the claim's provider call.
AroundCall = Callable[[Claim], ContextManager]

# dispatch_lanes(job_id, [(execution_id, region), ...]) publishes one lane message per pair (an
# ``execute_unit`` naming the unit and ``lane=job_id``: see ``beacon.execution.lanes``), as one batch.
DispatchLanes = Callable[[str, list[tuple[int, str]]], None]


def start_job(db: Database, settings: Settings, job_id: str, dispatch_lanes: DispatchLanes) -> int:
    """``queued → running``, insert the units, then dispatch one lane per region, at the region's
    first unit (``beacon.execution.lanes``: lanes fork as the units need). Returns the units
    inserted (0: a no-op)."""
    now = utcnow()
    with db.session() as session:  # Core statements on the tables: no ORM load, flush or bulk-insert path
        job = session.execute(select(JOBS.c.spec, JOBS.c.generation).where(JOBS.c.id == job_id)).one_or_none()
        if job is None:
            log.warning("run_job for an unknown job", extra={"job_id": job_id})
            return 0
        spec = stored_spec(job.spec, settings)
        moved = session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now, updated_at=now,
                    deadline_at=now + timedelta(seconds=spec.timeout_s),
                    provider_timeout_ms=int(spec.provider_timeout_s * 1000))
        ).rowcount
        if not moved:
            return 0
        units = spec.units(load_catalogue(settings.questions_file))
        rows = session.execute(
            insert_ignore(session, UNITS, "job_id", "region", "model_id", "question_id")
            .returning(UNITS.c.id, UNITS.c.region),
            [
                {"job_id": job_id, "region": u.region, "model_id": u.model_id, "question_id": u.question_id,
                 "prompt": u.prompt, "status": UnitStatus.PENDING, "attempts": 0, "created_at": now, "dispatched_at": now}
                for u in units
            ],
        ).all()
        emit_many(session, job_id, [("job.started", {"units": len(rows)}),
                                    ("job.running", {"units": len(rows), "generation": job.generation or 1})])
    heads: dict[str, int] = {}
    for execution_id, region in sorted(rows):
        heads.setdefault(region, execution_id)
    dispatch_lanes(job_id, [(execution_id, region) for region, execution_id in heads.items()])
    log.info("job started", extra={"job_id": job_id, "units": len(rows)})
    return len(rows)


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
    last: bool | None = None  # a recorded end: whether it left no unit of the job open (None: unknown, ask)


class UnitObserver(Protocol):
    """Hooks for instrumentation (``beacon.observability.units``); every one is optional to act on."""

    def claimed(self, claim: Claim) -> None: ...
    def outcome(self, outcome: Outcome) -> None: ...
    def finalised(self, status: str | None) -> None: ...


_PUT_BACK = (
    update(UNITS)
    .where(UNITS.c.id == bindparam("execution_id"), UNITS.c.status == UnitStatus.PENDING)
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
        return session.scalar(select(UNITS.c.region).where(UNITS.c.id == execution_id))


def step_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
              dispatch: DispatchUnit, observer: UnitObserver | None = None, aborts: CallAborts | None = None,
              resume: dict | None = None, worker: str | None = None, slots: RegionSlots | None = None,
              region: str | None = None, around_call: AroundCall | None = None) -> Outcome:
    """One ``execute_unit`` delivery: run the unit, then re-dispatch it (``retry``) or finalise
    the job (the unit ended, or the deadline cut its call).

    ``aborts`` holds the job Aborts the worker triggers (default: a private one). ``resume`` is
    a :class:`DatabaseUnavailable`'s, from the delivery that could not reach the database.
    ``worker`` names the worker claiming the unit (``claimed_by``). ``slots``: the worker's
    region budget; a unit of a region the worker does not serve is sent to its region's queue
    (``rerouted``), never run here; otherwise a slot of the unit's ``region`` (the message's,
    looked up when it names none) is taken before the claim and held until the outcome is recorded; with none free the unit is put back
    (:func:`put_back`, outcome ``waiting``) without being claimed. ``around_call``: entered for the
    provider call (:func:`run_unit`).
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
        return _step_claimed(db, settings, registry, execution_id, dispatch, observer, aborts, resume, worker,
                             around_call)
    finally:
        if slot is not None:
            slots.give_back(slot, time.monotonic() - taken)


def _step_claimed(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
                  dispatch: DispatchUnit, observer: UnitObserver | None, aborts: CallAborts | None,
                  resume: dict | None, worker: str | None, around_call: AroundCall | None) -> Outcome:
    outcome = run_unit(db, settings, registry, execution_id, on_claim=observer.claimed if observer else None,
                       aborts=aborts, resume=resume, worker=worker, around_call=around_call)
    if observer is not None:
        observer.outcome(outcome)
    finalised = None
    if outcome.status == UnitOutcome.RETRY:
        dispatch(execution_id, outcome.region, outcome.retry_in)
    elif outcome.status in (UnitOutcome.COMPLETED, UnitOutcome.FAILED, UnitOutcome.DEAD_LETTERED):
        finalised = _finalize(db, settings, outcome.job_id, last=outcome.last)
    elif outcome.status == UnitOutcome.DEADLINE:
        finalised = _finalize(db, settings, outcome.job_id, deadline=True)
    if observer is not None and finalised is not None:
        observer.finalised(finalised)
    return outcome


def _finalize(db: Database, settings: Settings, job_id: str, *, deadline: bool = False,
              last: bool | None = None) -> str | None:
    """Finalise the job by its deadline, or once no unit is open: ``last`` says whether the recording
    left none open (None: it could not tell, so ask)."""
    try:
        if deadline:
            return finalize_job(db, settings, job_id, deadline=True)
        if last is None:
            return finalize_if_complete(db, settings, job_id)
        return finalize_job(db, settings, job_id) if last else None
    except Exception as exc:
        if is_db_unavailable(exc):
            raise DatabaseUnavailable({"finalize": job_id, "deadline": deadline}, exc) from exc
        raise


def run_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
             on_claim: Callable[[Claim], None] | None = None, aborts: CallAborts | None = None,
             resume: dict | None = None, worker: str | None = None, around_call: AroundCall | None = None) -> Outcome:
    """Claim, call the provider, record; ``on_claim`` learns which unit this is as soon as it is
    claimed (for tags and log context); ``around_call(claim)`` is entered for the provider call
    (a lane's fork timer). :func:`step_unit` acts on the outcome."""
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
    return _record(db, claim, _call(settings, registry, claim, aborts or CallAborts(), around_call))


def _call(settings: Settings, registry: ProviderRegistry, claim: Claim, aborts: CallAborts,
          around_call: AroundCall | None) -> dict:
    """Make the claim's provider call; what to record, as JSON (so it can wait for the database)."""
    provider = registry.get(claim.region)
    with aborts.job(claim.job_id) as abort, (around_call(claim) if around_call else nullcontext()):
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
                return Outcome(UnitOutcome.COMPLETED, claim.job_id, claim.region, last=recorded.last)
        elif kind == "failure":
            final, error = record["final"], _error_of(record["failure"])
            recorded = record_failure(db, claim, record["failure"], record["provider"], final=final,
                                      retry_in=record["retry_in"])
            if recorded:
                status = UnitOutcome.FAILED if final else UnitOutcome.RETRY
                return Outcome(status, claim.job_id, claim.region, record["retry_in"], error, recorded.last)
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
        spec = stored_spec(job.spec, settings)
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
        emit_many(session, job_id, [("job.started", {"units": len(ids), "generation": generation}),
                                    ("job.running", {"units": len(ids), "generation": generation})])
    log.info("job generation started", extra={"job_id": job_id, "generation": generation, "units": len(ids),
                                               "previous_status": previous, "reason": reason})
    return Generation(job_id, generation, previous, ids, outbox, deadline)

