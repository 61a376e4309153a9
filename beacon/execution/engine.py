"""The execution engine: a queued job becomes units, each run once, the job finalised once.

Every state change is a conditional UPDATE, so a second delivery of any message is a no-op:

* ``start_job``: ``queued → running`` and one ``pending`` row per unit (``ON CONFLICT DO
  NOTHING``), then one ``execute_unit`` message per unit on its region queue.
* ``step_unit``: one ``execute_unit`` delivery, start to finish. ``run_unit`` claims its row
  with a lease (``pending``, or ``running`` with an expired lease), calls the region's
  provider, and records the outcome only while it still holds that lease. Transient errors go
  back to ``pending`` and retry with backoff; permanent ones fail at once; a unit whose claims
  reach ``MAX_UNIT_ATTEMPTS`` fails with code ``poison``. ``step_unit`` then does what the
  outcome calls for: re-dispatch, or finalise the job.
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
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Protocol

from sqlalchemy import and_, bindparam, exists, null, or_, select, update

from beacon.db import Database, insert_ignore
from beacon.errors import InvalidState, not_found
from beacon.execution.analysis import Thresholds, analyse
from beacon.execution.bias import score_answer
from beacon.execution.classify import classify, is_success
from beacon.execution.providers import ProviderError, ProviderRegistry, ProviderRequest
from beacon.ingest.jobspec import JobSpec, parse_jobspec
from beacon.ingest.questions import load_catalogue
from beacon.messaging.celery_app import EXECUTE_UNIT, region_queue
from beacon.messaging.events import publish_event
from beacon.messaging.outbox import enqueue
from beacon.models import Execution, Job
from beacon.resources.jobs import get_job, require_state
from beacon.settings import Settings
from beacon.statuses import OPEN_JOB, OPEN_UNIT, Classification, JobStatus, UnitOutcome, UnitStatus
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)


# dispatch(execution_id, region, countdown_seconds) publishes one execute_unit message.
DispatchUnit = Callable[[int, str, float], None]


def stored_spec(job: Job, settings: Settings) -> JobSpec:
    """The parsed JobSpec of a stored job (validated at ingest; parsed again for its defaults)."""
    return parse_jobspec(job.spec, default_model=settings.default_model, catalogue=load_catalogue(settings.questions_file),
                         max_units=10**9)


def start_job(db: Database, settings: Settings, job_id: str, dispatch: DispatchUnit) -> int:
    """``queued → running``, insert the units, dispatch them. Returns units dispatched (0: a no-op)."""
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
    for execution_id, region in rows:
        dispatch(execution_id, region, 0)
    log.info("job started", extra={"job_id": job_id, "units": len(rows)})
    publish_event(settings, "job.started", {"job_id": job_id, "units": len(rows)})
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
    claimed_at: object
    call_timeout_s: float
    deadline_at: object = None
    dead_lettered: bool = False  # the claim used the last attempt: the unit is already failed as poison


# The hot path's statements, built once on the tables (Core: no ORM flush or bulk-update path);
# each call only binds values.
_JOBS, _UNITS = Job.__table__, Execution.__table__
_OPEN = _UNITS.c.status.in_(OPEN_UNIT)
_CLAIM_JOB = (  # only the columns a claim needs, never the spec or raw body
    select(_JOBS.c.id, _JOBS.c.status, _JOBS.c.finalizing_at, _JOBS.c.deadline_at, _JOBS.c.provider_timeout_ms)
    .join(_UNITS, _UNITS.c.job_id == _JOBS.c.id)
    .where(_UNITS.c.id == bindparam("execution_id"))
)
_CLAIM = (
    update(_UNITS)
    .where(_UNITS.c.id == bindparam("execution_id"),
           or_(_UNITS.c.status == UnitStatus.PENDING,
               and_(_UNITS.c.status == UnitStatus.RUNNING, _UNITS.c.lease_expires_at < bindparam("now"))))
    .values(status=UnitStatus.RUNNING, claimed_at=bindparam("now"), started_at=bindparam("now"),
            lease_expires_at=bindparam("lease_until"), attempts=_UNITS.c.attempts + 1)
    .returning(_UNITS.c.attempts, _UNITS.c.region, _UNITS.c.model_id, _UNITS.c.question_id, _UNITS.c.prompt,
               _UNITS.c.provider, _UNITS.c.failure)
)
_HELD = and_(_UNITS.c.id == bindparam("execution_id"), _UNITS.c.status == UnitStatus.RUNNING,
             _UNITS.c.claimed_at == bindparam("held_since"))
_RECORD_ANSWER = update(_UNITS).where(_HELD).values(
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


def claim_unit(db: Database, settings: Settings, execution_id: int) -> Claim | None:
    """Take the unit's lease, or None when it is not ours to run (done, leased, job over)."""
    now = utcnow()
    with db.session() as session:
        job = session.execute(_CLAIM_JOB, {"execution_id": execution_id}).one_or_none()
        if job is None or job.status != JobStatus.RUNNING or job.finalizing_at is not None:
            return None
        remaining = (job.deadline_at - now).total_seconds()
        if remaining <= 0:
            return None  # the deadline sweep finalises the job and times the unit out
        call_timeout = min(job.provider_timeout_ms / 1000, remaining)
        lease_until = now + timedelta(seconds=call_timeout + settings.unit_lease_margin_seconds)
        execution = session.execute(
            _CLAIM, {"execution_id": execution_id, "now": now, "lease_until": lease_until}
        ).one_or_none()
        if execution is None:
            return None
        claimed = execution.attempts
        if claimed > settings.max_unit_attempts:
            execution_failure = {
                "code": "poison", "transient": False, "stage": "claim", "region": execution.region,
                "model": execution.model_id, "provider": execution.provider,
                "message": f"unit used all {settings.max_unit_attempts} attempts without an answer",
                "dead_letter": True, "last_error": execution.failure,
            }
            session.execute(
                update(_UNITS).where(_UNITS.c.id == execution_id)
                .values(status=UnitStatus.FAILED, completed_at=now, duration_ms=0, lease_expires_at=None,
                        attempts=settings.max_unit_attempts, failure=execution_failure,
                        classification=Classification.TECHNICAL_FAILURE)
            )
            log.warning("unit dead-lettered", extra={"job_id": job.id, "execution_id": execution_id})
            return Claim(execution_id, job.id, execution.region, execution.model_id, execution.question_id,
                         execution.prompt, claimed, None, 0.0, dead_lettered=True)
        return Claim(execution_id, job.id, execution.region, execution.model_id, execution.question_id,
                     execution.prompt, claimed, now, call_timeout, job.deadline_at)


def record_answer(db: Database, claim: Claim, output: str, provider: str, served_region: str, *,
                  region_flag: str | None = None, provider_receipt: dict | None = None,
                  finish_reason: str | None = None, usage: dict | None = None) -> bool:
    """Record the answer, its classification and its bias score (``beacon.execution.bias``) while
    the claim still holds the unit's lease. ``provider`` is the backend that answered (the hybrid
    router's ``provider_used`` when it reports one); ``region_flag`` and ``provider_receipt`` are
    the router's; ``finish_reason`` and ``usage`` (token counts) an OpenAI-compatible endpoint's."""
    now = utcnow()
    classification = classify(output, failed=False)
    with db.session() as session:
        return bool(session.execute(_RECORD_ANSWER, {
            "execution_id": claim.execution_id, "held_since": claim.claimed_at, "output": output,
            "output_sha256": hashlib.sha256(output.encode()).hexdigest(),
            "classification": classification, "provider": provider[:64], "served_region": served_region,
            "now": now, "duration_ms": int((now - claim.claimed_at).total_seconds() * 1000),
            "bias_score": score_answer(output, classification), "region_flag": region_flag,
            "provider_receipt": provider_receipt, "finish_reason": finish_reason,
            "prompt_tokens": (usage or {}).get("prompt_tokens"), "completion_tokens": (usage or {}).get("completion_tokens"),
        }).rowcount)


def record_failure(db: Database, claim: Claim, error: ProviderError, provider: str, final: bool,
                   retry_in: float = 0.0) -> bool:
    """Fail the unit (``final``) or hand it back as ``pending`` for a retry in ``retry_in`` seconds."""
    now = utcnow()
    failure = {**error.to_dict(), "attempt": claim.attempts}
    values: dict = {"failure": failure, "provider": provider, "lease_expires_at": None}
    if final:
        values.update(status=UnitStatus.FAILED, classification=Classification.TECHNICAL_FAILURE, completed_at=now,
                      duration_ms=int((now - claim.claimed_at).total_seconds() * 1000))
    else:
        values.update(status=UnitStatus.PENDING, dispatched_at=now + timedelta(seconds=retry_in))
    with db.session() as session:
        held = {"execution_id": claim.execution_id, "held_since": claim.claimed_at}
        return bool(session.execute(update(_UNITS).where(_HELD).values(**values), held).rowcount)


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


def step_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
              dispatch: DispatchUnit, observer: UnitObserver | None = None) -> Outcome:
    """One ``execute_unit`` delivery: run the unit, then re-dispatch it (``retry``) or finalise
    the job (the unit ended, or the deadline cut its call)."""
    outcome = run_unit(db, settings, registry, execution_id, on_claim=observer.claimed if observer else None)
    if observer is not None:
        observer.outcome(outcome)
    finalised = None
    if outcome.status == UnitOutcome.RETRY:
        dispatch(execution_id, outcome.region, outcome.retry_in)
    elif outcome.status in (UnitOutcome.COMPLETED, UnitOutcome.FAILED, UnitOutcome.DEAD_LETTERED):
        finalised = finalize_job(db, settings, outcome.job_id)
    elif outcome.status == UnitOutcome.DEADLINE:
        finalised = finalize_job(db, settings, outcome.job_id, deadline=True)
    if observer is not None and finalised is not None:
        observer.finalised(finalised)
    return outcome


def run_unit(db: Database, settings: Settings, registry: ProviderRegistry, execution_id: int,
             on_claim: Callable[[Claim], None] | None = None) -> Outcome:
    """Claim, call the provider, record; ``on_claim`` learns which unit this is as soon as it is
    claimed (for tags and log context). :func:`step_unit` acts on the outcome."""
    claim = claim_unit(db, settings, execution_id)
    if claim is None:
        return Outcome(UnitOutcome.SKIPPED)
    if on_claim is not None:
        on_claim(claim)
    if claim.dead_lettered:
        return Outcome(UnitOutcome.DEAD_LETTERED, claim.job_id, claim.region)
    provider = registry.get(claim.region)
    request = ProviderRequest(region=claim.region, model_id=claim.model_id, prompt=claim.prompt,
                              question_id=claim.question_id, timeout_s=claim.call_timeout_s)
    try:
        answer = registry.call(claim.region, request)
    except ProviderError as error:
        if utcnow() >= claim.deadline_at:
            # The call was cut by the job's deadline: leave the unit open; finalisation times it out.
            return Outcome(UnitOutcome.DEADLINE, claim.job_id, claim.region, error=error)
        retryable = error.transient and claim.attempts < settings.max_unit_attempts
        delay = retry_delay(settings, claim.attempts) if retryable else 0.0
        if not record_failure(db, claim, error, provider.name, final=not retryable, retry_in=delay):
            return Outcome(UnitOutcome.SKIPPED)
        return Outcome(UnitOutcome.RETRY if retryable else UnitOutcome.FAILED, claim.job_id, claim.region, delay, error)
    if not record_answer(db, claim, answer.output, answer.provider_used or answer.provider, answer.served_region,
                         region_flag=answer.region_flag, provider_receipt=answer.provider_receipt,
                         finish_reason=answer.finish_reason, usage=answer.usage):
        return Outcome(UnitOutcome.SKIPPED)
    return Outcome(UnitOutcome.COMPLETED, claim.job_id, claim.region)


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
        claim = _CLAIM_FINALIZE_DEADLINE if deadline else _CLAIM_FINALIZE_DONE
        claimed = session.execute(claim, {"job_id": job_id, "now": now}).rowcount
        if not claimed:
            return None
        session.execute(
            update(Execution)
            .where(Execution.job_id == job_id, Execution.status.in_(OPEN_UNIT))
            .values(status=UnitStatus.TIMEOUT, completed_at=now, lease_expires_at=None, classification=Classification.TECHNICAL_FAILURE)
        )
        job = session.get(Job, job_id)
        units = list(session.scalars(select(Execution).where(Execution.job_id == job_id)))
        status, reason = job_outcome(stored_spec(job, settings), units)
        job.analysis = analyse([execution_dict(u) for u in units], Thresholds(*settings.analysis_thresholds))
        job.status, job.status_reason, job.finished_at, job.updated_at = status, reason, now, now
        sealed = bundles.seal_job(session, db, settings, job, units, now)
    log.info("job finalised", extra={"job_id": job_id, "status": status, "reason": reason, "bundle_cid": sealed.cid,
                                     "leaf_index": sealed.appended.leaf_index})
    publish_event(settings, "job.finished", {"job_id": job_id, "status": status, "reason": reason})
    bundles.after_seal(db, settings, sealed)
    return status


def execution_dict(execution: Execution) -> dict:
    return {
        "region": execution.region, "model_id": execution.model_id, "question_id": execution.question_id,
        "status": execution.status, "classification": execution.classification, "output": execution.output,
        "attempts": execution.attempts,
    }


def end_job(db: Database, settings: Settings, job_id: str, *, status: str, reason: str, action: str,
            failure_code: str | None = None) -> tuple[str, int]:
    """End a job that is not terminal, in one transaction: the job and its open units take ``status``
    (with a ``failure_code`` on each unit when given). Returns (status before, units ended)."""
    now = utcnow()
    with db.session() as session:
        job = get_job(session, job_id)
        before = job.status
        require_state(job, OPEN_JOB, action)
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
    log.info(f"job {status}", extra={"job_id": job_id, "units": len(units), "reason": reason, "action": action})
    publish_event(settings, "job.finished", {"job_id": job_id, "status": status, "reason": reason})
    return before, len(units)


@dataclass(frozen=True)
class SweepResult:
    finalized_by_deadline: int
    finalized_late: int
    units_redispatched: int
    jobs_republished: int


def sweep(db: Database, settings: Settings, dispatch: DispatchUnit, republish_job: Callable[[str], None]) -> SweepResult:
    """The periodic safety net (beat): nothing accepted is left without a way to a terminal state."""
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
        lost = or_(
            and_(Execution.status == UnitStatus.RUNNING, Execution.lease_expires_at < now),
            and_(Execution.status == UnitStatus.PENDING,
                 Execution.dispatched_at <= now - timedelta(seconds=settings.pending_redispatch_seconds)),
        )
        units = session.execute(
            update(Execution)
            .where(lost, Execution.job_id.in_(select(Job.id).where(Job.status == JobStatus.RUNNING, Job.deadline_at > now)))
            .where(or_(Execution.dispatched_at.is_(None),
                       Execution.dispatched_at <= now - timedelta(seconds=settings.pending_redispatch_seconds)))
            .values(dispatched_at=now)
            .returning(Execution.id, Execution.region)
        ).all()
    deadline_done = sum(1 for job_id in overdue if finalize_job(db, settings, job_id, deadline=True))
    late_done = sum(1 for job_id in stalled if finalize_job(db, settings, job_id))
    for execution_id, region in units:
        dispatch(execution_id, region, 0)
    for job_id in queued:
        republish_job(job_id)
    result = SweepResult(deadline_done, late_done, len(units), len(queued))
    if any(vars(result).values()):
        log.info("sweep", extra=vars(result))
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
    log.info("job generation started", extra={"job_id": job_id, "generation": generation, "units": len(ids),
                                               "previous_status": previous, "reason": reason})
    publish_event(settings, "job.started", {"job_id": job_id, "units": len(ids), "generation": generation})
    return Generation(job_id, generation, previous, ids, outbox, deadline)
