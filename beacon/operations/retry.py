"""Manual retries: re-run a finished job's failed or timed-out units as its next generation.

Authorised like a cancel (``beacon.operations.signed_requests``): an operator (or admin) token, or
a body signed by the job's own key, trusted now, with a fresh nonce:
``{"action": "retry", "job_id", "execution_id"?, "nonce", "timestamp", "public_key", "signature"}``.
A signed ``retry-question`` must name its execution; a signed ``retry-all-failed`` must not name one.
The state change and the units' messages commit together (``engine.start_generation``); the
messages are then published at once, and beat's relay publishes any the broker did not take.
"""

from __future__ import annotations

from typing import Any

from beacon.db import Database
from beacon.errors import ValidationError
from beacon.execution import engine
from beacon.ingest.trust import TrustStore
from beacon.messaging.outbox import Publisher, relay
from beacon.models import Job
from beacon.operations.signed_requests import authorize_job_action
from beacon.settings import Settings
from beacon.timeutil import isoformat


def retry(settings: Settings, db: Database, trust: TrustStore, wallet_allowlist: frozenset[str], publish: Publisher,
          job: Job, execution_id: int | None, authorization: str | None, body: Any) -> dict[str, Any]:
    """Authorise, then start the job's next generation for one unit (``execution_id``) or every
    failed or timed-out unit (``None``)."""
    actor = authorize_job_action(settings, db, trust, wallet_allowlist, job, authorization, body, "retry")
    if actor.kind == "key":
        signed = body.get("execution_id")
        if execution_id is None and signed is not None:
            raise ValidationError("a signed retry of every failed unit must not name an execution_id", "execution_id")
        if execution_id is not None and signed != execution_id:
            raise ValidationError(f"a signed retry of execution {execution_id} must say execution_id {execution_id}",
                                  "execution_id", missing=signed is None)
    reason = body.get("reason") if isinstance(body, dict) and isinstance(body.get("reason"), str) else None
    scope = f"execution {execution_id}" if execution_id is not None else "every failed or timed-out unit"
    started = engine.start_generation(
        db, settings, job.id, None if execution_id is None else [execution_id],
        reason=str(reason)[:500] if reason else f"retry of {scope} by {actor.kind} {actor.role or actor.fingerprint}")
    actor.log("retry", job_id=job.id, generation=started.generation, units=len(started.execution_ids))
    published = relay(db, publish, ids=started.outbox_ids).published if started.outbox_ids else 0
    return {
        "job_id": job.id, "execution_id": execution_id, "status": "retrying", "job_status": "running",
        "previous_status": started.previous_status, "generation": started.generation,
        "execution_ids": started.execution_ids, "units": len(started.execution_ids), "published": published,
        "deadline_at": isoformat(started.deadline_at),
    }
