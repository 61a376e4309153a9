"""Recording what a unit's provider call gave (an answer, a failure, a retry, a hand-back), only
while its claim still holds the unit, with the unit's event."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, exists, null, select, true, update

from beacon.db import Database
from beacon.execution.bias import score_answer
from beacon.execution.claims import Claim
from beacon.execution.classify import classify
from beacon.execution.providers import ProviderError
from beacon.execution.store import EVENTS, HELD, JOBS, OPEN, UNITS, unit_event, with_event
from beacon.messaging.events import emit, event_message, publish_events
from beacon.statuses import Classification, UnitStatus
from beacon.timeutil import utcnow

_RECORD_ANSWER_VALUES = dict(
    status=UnitStatus.COMPLETED, output=bindparam("output"), output_sha256=bindparam("output_sha256"),
    classification=bindparam("classification"), provider=bindparam("provider"),
    served_region=bindparam("served_region"), completed_at=bindparam("now"), duration_ms=bindparam("duration_ms"),
    lease_expires_at=None, failure=null(),
    bias_score=bindparam("bias_score", type_=UNITS.c.bias_score.type),
    region_flag=bindparam("region_flag"),
    provider_receipt=bindparam("provider_receipt", type_=UNITS.c.provider_receipt.type),
    finish_reason=bindparam("finish_reason"), prompt_tokens=bindparam("prompt_tokens"),
    completion_tokens=bindparam("completion_tokens"),
)


@dataclass(frozen=True)
class Recorded:
    """An outcome recorded under its claim. ``last``: whether no other unit of the job was open when
    it committed (so the job is due for finalisation), or None when the recording could not tell."""

    last: bool | None = None


def _recording(change):  # noqa: ANN001, ANN202
    """Postgres: ``change`` (an UPDATE of the held unit) and its event in one statement (``with_event``),
    with what the statement's snapshot saw: the job's ``event_seq`` before the bump, and whether
    another unit of the job was open."""
    recorded = change.returning(UNITS.c.job_id).cte("recorded")
    seq, event = with_event(recorded, recorded.c.job_id, bindparam("event_type"),
                            bindparam("event_data", type_=EVENTS.c.data.type))
    seen = select(JOBS.c.event_seq).where(JOBS.c.id == recorded.c.job_id).scalar_subquery()
    others_open = exists().where(UNITS.c.job_id == recorded.c.job_id, UNITS.c.id != bindparam("execution_id"), OPEN)
    return select(seq.c.event_seq, event.c.id, seen, others_open).select_from(
        recorded.outerjoin(seq, true()).outerjoin(event, true()))


@dataclass(frozen=True)
class _Change:
    """An UPDATE of a held unit (``update``, for SQLite) and the same with its event (``recording``,
    for Postgres), built once."""

    update: Any
    recording: Any


def _change(**values: Any) -> _Change:
    change = update(UNITS).where(HELD).values(**values)
    return _Change(change, _recording(change))


_FAILURE_VALUES = dict(failure=bindparam("failure", type_=UNITS.c.failure.type), provider=bindparam("provider"),
                       lease_expires_at=None)
_ANSWERED = _change(**_RECORD_ANSWER_VALUES)
_FAILED = _change(**_FAILURE_VALUES, status=UnitStatus.FAILED, classification=Classification.TECHNICAL_FAILURE,
                  completed_at=bindparam("now"), duration_ms=bindparam("duration_ms"))
_RETRYING = _change(**_FAILURE_VALUES, status=UnitStatus.PENDING, dispatched_at=bindparam("dispatched_at"),
                    provider_retries=UNITS.c.provider_retries + 1)


def _record_held(db: Database, claim: Claim, change: _Change, params: dict, event: str, data: dict) -> Recorded | None:
    """Apply ``change`` to the unit while ``claim`` holds it, and write ``event`` with it: one
    autocommitted statement on Postgres, one transaction elsewhere. None when the claim no longer
    holds the unit.

    On Postgres the statement also tells whether the job was left without an open unit, when its
    snapshot is known to be the state it committed on: every change that makes a unit of a running
    job terminal bumps the job's ``event_seq`` with it (its event), under the job row's lock, so
    if the bump here is the snapshot's ``event_seq`` + 1, no such change committed between the
    snapshot and this statement taking the lock, and none can commit before this one does. Else
    (``last`` None) finalisation asks after this commit (:func:`finalize_if_complete`)."""
    held = {"execution_id": claim.execution_id, "held_since": claim.claimed_at, **params}
    if not db.is_postgres:
        with db.session() as session:
            changed = bool(session.execute(change.update, held).rowcount) and bool(
                emit(session, claim.job_id, event, data))
        return Recorded() if changed else None
    now = utcnow()
    payload = {"job_id": claim.job_id, **data}
    rows = db.run(change.recording, {**held, "event_type": event, "event_time": now, "event_data": payload})
    if not rows:
        return None
    seq, event_id, seen, others_open = rows[0]
    publish_events([event_message(event_id, seq, event, claim.job_id, now, payload)])
    return Recorded(last=not others_open if seq == seen + 1 else None)


def record_answer(db: Database, claim: Claim, output: str, provider: str, served_region: str, *,
                  region_flag: str | None = None, provider_receipt: dict | None = None,
                  finish_reason: str | None = None, usage: dict | None = None) -> Recorded | None:
    """Record the answer, its classification and its bias score (``beacon.execution.bias``) while
    the claim still holds the unit's lease. ``provider`` is the backend that answered (the hybrid
    router's ``provider_used`` when it reports one); ``region_flag`` and ``provider_receipt`` are
    the router's; ``finish_reason`` and ``usage`` (token counts) an OpenAI-compatible endpoint's."""
    now = utcnow()
    classification = classify(output, failed=False)
    duration_ms = int((now - claim.claimed_at).total_seconds() * 1000)
    return _record_held(db, claim, _ANSWERED, {
        "output": output, "output_sha256": hashlib.sha256(output.encode()).hexdigest(),
        "classification": classification, "provider": provider[:64], "served_region": served_region,
        "now": now, "duration_ms": duration_ms,
        "bias_score": score_answer(output, classification), "region_flag": region_flag,
        "provider_receipt": provider_receipt, "finish_reason": finish_reason,
        "prompt_tokens": (usage or {}).get("prompt_tokens"), "completion_tokens": (usage or {}).get("completion_tokens"),
    }, "unit.completed", unit_event(claim.execution_id, claim, status=UnitStatus.COMPLETED,
                                    classification=classification, duration_ms=duration_ms))


def record_failure(db: Database, claim: Claim, error: ProviderError | dict, provider: str, final: bool,
                   retry_in: float = 0.0) -> Recorded | None:
    """Fail the unit (``final``) or hand it back as ``pending`` for a retry in ``retry_in`` seconds
    (counted in ``provider_retries``, not as a lost claim)."""
    now = utcnow()
    failure = error if isinstance(error, dict) else {**error.to_dict(), "attempt": claim.attempts}
    params: dict = {"failure": failure, "provider": provider}
    if final:
        params.update(now=now, duration_ms=int((now - claim.claimed_at).total_seconds() * 1000))
    else:
        params.update(dispatched_at=now + timedelta(seconds=retry_in))
    return _record_held(db, claim, _FAILED if final else _RETRYING, params,
                        "unit.failed" if final else "unit.retrying", unit_event(
        claim.execution_id, claim, status=UnitStatus.FAILED if final else UnitStatus.PENDING,
        error=failure.get("code"), retry_in=None if final else retry_in))


def release_unit(db: Database, claim: Claim) -> bool:
    """Hand a unit whose call this worker cut off (shutting down) back as ``pending``, its claim
    refunded: the unit was not at fault, and another worker runs it at once."""
    now = utcnow()
    with db.session() as session:
        return bool(session.execute(
            update(UNITS).where(HELD).values(status=UnitStatus.PENDING, lease_expires_at=None, dispatched_at=now,
                                               attempts=UNITS.c.attempts - 1),
            {"execution_id": claim.execution_id, "held_since": claim.claimed_at},
        ).rowcount)
