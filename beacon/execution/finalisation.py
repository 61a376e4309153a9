"""Finalising a job once (analysis, receipts, the signed bundle, the transparency log entry, the
terminal status), and ending one early (cancel, stop)."""

from __future__ import annotations

import logging

from sqlalchemy import and_, bindparam, exists, or_, select, update

from beacon.db import Database
from beacon.execution.analysis import Thresholds, analyse
from beacon.execution.classify import is_success
from beacon.execution.store import JOBS, OPEN, UNITS, stored_spec, unit_event
from beacon.ingest.jobspec import JobSpec
from beacon.messaging.events import emit_many
from beacon.models import Execution, Job
from beacon.resources.jobs import get_job, require_state
from beacon.settings import Settings
from beacon.statuses import OPEN_JOB, OPEN_UNIT, Classification, JobStatus, UnitStatus
from beacon.timeutil import utcnow

log = logging.getLogger(__name__)


_FINALIZABLE = and_(JOBS.c.id == bindparam("job_id"), JOBS.c.status == JobStatus.RUNNING, JOBS.c.finalizing_at.is_(None))
_CLAIM_FINALIZE_DONE = update(JOBS).where(
    _FINALIZABLE, ~exists().where(UNITS.c.job_id == JOBS.c.id, OPEN)
).values(finalizing_at=bindparam("now"))
_CLAIM_FINALIZE_DEADLINE = update(JOBS).where(
    _FINALIZABLE, JOBS.c.deadline_at <= bindparam("now")
).values(finalizing_at=bindparam("now"))
_COMPLETE = select(JOBS.c.id).where(_FINALIZABLE, ~exists().where(UNITS.c.job_id == JOBS.c.id, OPEN))


def finalize_if_complete(db: Database, settings: Settings, job_id: str) -> str | None:
    """Finalise the job if no unit is open: what a unit's delivery does once its outcome is recorded,
    when the recording could not tell (``recording.Recorded.last``).

    The check is one autocommitted read, no lock, made after the outcome committed: of a job's
    last units recorded concurrently, the one that commits last sees them all terminal (others
    may too); :func:`finalize_job` claims the job once, whoever else tries."""
    complete = bool(db.run(_COMPLETE, {"job_id": job_id}))
    return finalize_job(db, settings, job_id) if complete else None


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
            session.execute(select(UNITS.c.id).where(UNITS.c.job_id == job_id, OPEN).with_for_update())
        claim = _CLAIM_FINALIZE_DEADLINE if deadline else _CLAIM_FINALIZE_DONE
        claimed = session.execute(claim, {"job_id": job_id, "now": now}).rowcount
        if not claimed:
            return None
        timed_out = session.execute(  # without the deadline the claim found no open unit: nothing to time out
            update(Execution)
            .where(Execution.job_id == job_id, Execution.status.in_(OPEN_UNIT))
            .values(status=UnitStatus.TIMEOUT, completed_at=now, lease_expires_at=None, classification=Classification.TECHNICAL_FAILURE)
            .returning(Execution.id, Execution.region, Execution.model_id, Execution.question_id, Execution.attempts)
        ).all() if deadline else []
        events = [("unit.failed", unit_event(unit.id, unit, status=UnitStatus.TIMEOUT, error="timeout"))
                  for unit in sorted(timed_out)]
        job = session.get(Job, job_id)
        units = list(session.scalars(select(Execution).where(Execution.job_id == job_id)))
        status, reason = job_outcome(stored_spec(job.spec, settings), units)
        job.analysis = analyse([execution_dict(u) for u in units], Thresholds(*settings.analysis_thresholds))
        job.status, job.status_reason, job.updated_at = status, reason, now
        sealed = bundles.seal_job(session, db, settings, job, units, now)
        emit_many(session, job_id, [*events, *finished_events(status, reason), *sealed.events])
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


def finished_events(status: str, reason: str) -> list[tuple[str, dict]]:
    """``job.finished`` (as before) and the terminal ``job.<status>``, for the ending transaction."""
    return [("job.finished", {"status": status, "reason": reason}), (f"job.{status}", {"status": status, "reason": reason})]


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
        session.execute(select(UNITS.c.id).where(UNITS.c.job_id == job_id, OPEN).with_for_update())
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
        emit_many(session, job_id, finished_events(status, reason))
    log.info(f"job {status}", extra={"job_id": job_id, "units": len(units), "reason": reason, "action": action})
    return before, len(units)
