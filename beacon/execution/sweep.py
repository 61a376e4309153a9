"""The periodic safety net and the workers' heartbeats it reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import and_, case, delete, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from beacon.db import Database
from beacon.execution.finalisation import finalize_job
from beacon.execution.store import JOBS, OPEN, UNITS, DispatchUnit
from beacon.models import Execution, Job, WorkerHeartbeat
from beacon.settings import Settings
from beacon.statuses import OPEN_UNIT, JobStatus, UnitStatus
from beacon.timeutil import utcnow

log = logging.getLogger(__name__)


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


def _upsert_heartbeat(insert):  # noqa: ANN001, ANN202
    statement = insert(WorkerHeartbeat.__table__)
    return statement.on_conflict_do_update(index_elements=["worker"], set_={
        "seen_at": statement.excluded.seen_at, "units": statement.excluded.units,
        "started_at": statement.excluded.started_at})


# Built once per dialect: a worker beats after every burst of messages it receives.
_UPSERT_HEARTBEAT = {"postgresql": _upsert_heartbeat(pg_insert), "sqlite": _upsert_heartbeat(sqlite_insert)}


def record_heartbeat(db: Database, worker: str, units: list[int], started_at: datetime) -> None:
    """The worker ``worker`` is alive and holds the messages of ``units`` (received, not yet done):
    one autocommitted statement."""
    db.run(_UPSERT_HEARTBEAT[db.engine.dialect.name], {
        "worker": worker, "started_at": started_at, "seen_at": utcnow(), "units": sorted(set(units))})


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
            select(Job.id).where(Job.status == JobStatus.RUNNING, Job.finalizing_at.is_(None), ~exists().where(UNITS.c.job_id == JOBS.c.id, OPEN))
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
