"""Execution reads and their resource shape, shared by the HTTP views and the CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from beacon.errors import NotFound, ValidationError, not_found
from beacon.ids import bigint
from beacon.ids import execution_id as parse_execution_id
from beacon.models import Execution
from beacon.timeutil import isoformat


def execution_resource(e: Execution) -> dict[str, Any]:
    resource = {
        "id": e.id,
        "job_id": e.job_id,
        "region": e.region,
        "served_region": e.served_region,
        "provider": e.provider,
        "model_id": e.model_id,
        "question_id": e.question_id,
        "status": e.status,
        "classification": e.classification,
        "output": e.output,
        "output_sha256": e.output_sha256,
        "started_at": isoformat(e.started_at),
        "completed_at": isoformat(e.completed_at),
        "duration_ms": e.duration_ms,
        "attempts": e.attempts,
    }
    if e.failure:
        resource["failure"] = e.failure
    return resource


def job_executions(session: Session, job_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Execution).where(Execution.job_id == job_id)
        .order_by(Execution.region, Execution.model_id, Execution.question_id)
    )
    return [execution_resource(e) for e in rows]


def get_execution(session: Session, execution_id: str) -> Execution:
    """The execution, or 404; an id that is not a positive bigint is answered without a query."""
    ident = parse_execution_id(execution_id)
    if ident is None:
        raise NotFound("not_found", "execution not found: not an execution id")
    execution = session.get(Execution, ident)
    if execution is None:
        raise not_found("execution", execution_id)
    return execution


def list_executions(session: Session, limit: int, cursor: str | None) -> dict[str, Any]:
    """Newest first; the cursor is the last id of the previous page."""
    query = select(Execution).order_by(Execution.id.desc()).limit(limit + 1)
    if cursor:
        last = bigint(cursor)
        if last is None:
            raise ValidationError("cursor is not one this API returned", "cursor")
        query = query.where(Execution.id < last)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"executions": [execution_resource(e) for e in rows], "next_cursor": str(rows[-1].id) if more else None}
