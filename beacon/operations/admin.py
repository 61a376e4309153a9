"""Operating a running deployment: queue depths, stuck jobs, republish, emergency stop, key reload.

The HTTP admin API (``app/admin.py``) is the only caller; ``beacon admin`` goes through it, so
every action is authorised by a role token and logged with who did it (role and a fingerprint
of the token, never the token).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy import and_, func, or_, select, update

from beacon.db import Database
from beacon.errors import Corrupt, DomainError, Invalid, InvalidState
from beacon.execution.engine import end_job
from beacon.execution.regions import region_names
from beacon.ingest.trust import TrustFileError, TrustStore
from beacon.messaging.celery_app import EXECUTE_UNIT, JOBS_QUEUE, RUN_JOB, region_queue
from beacon.messaging.outbox import Publisher, enqueue, pending_stats, relay
from beacon.models import Execution, Job
from beacon.operations.access import Actor, bearer_token, fingerprint, require_role
from beacon.resources.jobs import get_job, require_state, unit_counts
from beacon.settings import Settings
from beacon.statuses import OPEN_JOB
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

MAX_STUCK_MINUTES = 7 * 24 * 60
MAX_REASON_CHARS = 1000


def authorize(settings: Settings, authorization: str | None, minimum: str, action: str) -> Actor:
    """The caller when their token grants at least ``minimum``; refusals are logged, then raised."""
    token = bearer_token(authorization)
    try:
        role = require_role(settings, authorization, minimum)
    except DomainError as refused:
        log.warning("admin action refused", extra={
            "action": action, "needed_role": minimum, "error_code": refused.code,
            "token_fingerprint": fingerprint(token) if token else None})
        raise
    return Actor.for_role(role, token)


def queue_names(settings: Settings) -> list[str]:
    """The jobs queue and one queue per configured region: every queue a worker may consume."""
    return [JOBS_QUEUE] + [region_queue(r) for r in region_names(settings)]


def queue_depths(celery: Celery, names: list[str]) -> dict[str, int | None]:
    """Messages waiting per queue (a passive declare), or None for every queue when the broker is down."""
    conn = celery.connection_for_read()
    try:
        conn.ensure_connection(max_retries=1)
        return {name: _depth(conn, name) for name in names}
    except (OSError, OperationalError, *conn.connection_errors) as exc:
        log.warning("broker unreachable for queue depths", extra={"error": str(exc)})
        return dict.fromkeys(names)
    finally:
        conn.release()


def _depth(conn, name: str) -> int:  # noqa: ANN001
    channel = conn.channel()
    try:
        return channel.queue_declare(queue=name, passive=True).message_count
    except conn.channel_errors:  # never declared: nothing was ever sent to it
        return 0
    finally:
        try:
            channel.close()
        except conn.channel_errors:
            pass


def overview(db: Database, celery: Celery, settings: Settings) -> dict[str, Any]:
    queues = queue_depths(celery, queue_names(settings))
    with db.session() as session:
        unpublished, oldest = pending_stats(session)
        dead_letters = session.scalar(
            select(func.count()).select_from(Execution)
            .where(Execution.status == "failed", Execution.failure["code"].as_string() == "poison")
        )
    return {
        "queues": queues,
        "broker_reachable": any(depth is not None for depth in queues.values()),
        "outbox": {"unpublished": unpublished, "oldest_age_seconds": oldest},
        "dead_letters": dead_letters,
    }


def stuck_jobs(db: Database, minutes: int, limit: int) -> dict[str, Any]:
    """Jobs queued, or running, for longer than ``minutes``, oldest first."""
    now = utcnow()
    since = func.coalesce(Job.started_at, Job.created_at)
    cutoff = now - timedelta(minutes=minutes)
    with db.session() as session:
        jobs = list(session.scalars(
            select(Job)
            .where(or_(and_(Job.status == "queued", Job.created_at <= cutoff),
                       and_(Job.status == "running", Job.started_at <= cutoff)))
            .order_by(since, Job.id).limit(limit)
        ))
        counts = unit_counts(session, [job.id for job in jobs])
    return {
        "minutes": minutes,
        "jobs": [{
            "id": job.id, "status": job.status, "created_at": isoformat(job.created_at),
            "started_at": isoformat(job.started_at), "deadline_at": isoformat(job.deadline_at),
            "stuck_seconds": round((now - (job.started_at or job.created_at)).total_seconds(), 3),
            "counts": counts[job.id],
        } for job in jobs],
    }


def republish(db: Database, publish: Publisher, job_id: str) -> dict[str, Any]:
    """Send a queued job's run_job again, or a running job's pending and lease-expired units.

    The messages go through the outbox in the same transaction, so a broker outage delays them
    (the relay in beat retries) but never drops them.
    """
    now = utcnow()
    with db.session() as session:
        job = get_job(session, job_id)
        require_state(job, OPEN_JOB, "republish")
        if job.status == "queued":
            ids = [enqueue(session, RUN_JOB, JOBS_QUEUE, [job_id]).id]
            units = 0
        else:
            lost = or_(Execution.status == "pending",
                       and_(Execution.status == "running", Execution.lease_expires_at < now))
            rows = session.execute(
                update(Execution).where(Execution.job_id == job_id, lost)
                .values(dispatched_at=now).returning(Execution.id, Execution.region)
            ).all()
            ids = [enqueue(session, EXECUTE_UNIT, region_queue(region), [execution_id]).id
                   for execution_id, region in rows]
            units = len(rows)
        status = job.status
    published = relay(db, publish, ids=ids).published if ids else 0
    return {"id": job_id, "status": status, "messages": len(ids), "published": published, "units": units}


def reason_from(body: Any) -> str:
    if not isinstance(body, dict) or "reason" not in body:
        raise Invalid("missing_field:reason", "a JSON body {\"reason\": …} is required", {"field": "reason"})
    reason = body["reason"]
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
        raise Invalid("validation_error", f"reason must be a non-empty string of at most {MAX_REASON_CHARS} "
                       "characters", {"field": "reason"})
    return reason.strip()


def emergency_stop(db: Database, settings: Settings, job_id: str, reason: str, actor: Actor) -> dict[str, Any]:
    """In one transaction: the job and its open units end ``failed`` with the reason."""
    stated = f"emergency stop by {actor.role}: {reason}"
    before, units = end_job(db, settings, job_id, status="failed", reason=stated, action="stop", failure_code="emergency_stop")
    return {"id": job_id, "status": "failed", "previous_status": before, "units_failed": units,
            "status_reason": stated}


def reload_trusted_keys(trust: TrustStore) -> dict[str, Any]:
    """Re-read the trusted keys file now; an invalid file keeps the previous keys."""
    if trust.path is None:
        raise InvalidState("invalid_state", "TRUSTED_KEYS_FILE is not set: there is no file to reload")
    try:
        keys = trust.reload()
    except TrustFileError as exc:
        raise Corrupt("trust_file_invalid", f"{exc}; the previous keys stay in force",
                       {"path": str(trust.path)}) from None
    return {"path": str(trust.path), "keys": keys}
