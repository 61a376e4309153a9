"""Execution reads and their resource shape, shared by the HTTP views and the CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from beacon.crypto.canonical import loads
from beacon.errors import NotFound, ValidationError, not_found
from beacon.ids import bigint
from beacon.ids import execution_id as parse_execution_id
from beacon.models import Execution, Receipt
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
        "created_at": isoformat(e.created_at),
        "ran_in_generation": e.generation or 1,
        "bias_score": e.bias_score,
        "region_flag": e.region_flag,
        "provider_receipt": e.provider_receipt,
        "finish_reason": e.finish_reason,
        "truncated": e.finish_reason == "length",
        "usage": (None if e.prompt_tokens is None and e.completion_tokens is None
                  else {"prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens}),
    }
    if e.failure:
        resource["failure"] = e.failure
    if e.history:
        resource["history"] = e.history
    return resource


def job_executions(session: Session, job_id: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """The job's units by region, model and question; a page of them with ``limit``/``offset``."""
    query = (select(Execution).where(Execution.job_id == job_id)
             .order_by(Execution.region, Execution.model_id, Execution.question_id).offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return [execution_resource(e) for e in session.scalars(query)]


def latest_execution(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The job's most recent execution (the last to finish, else the last created), as a list of 0 or 1."""
    row = session.scalars(
        select(Execution).where(Execution.job_id == job_id)
        .order_by(Execution.completed_at.desc().nulls_last(), Execution.id.desc()).limit(1)
    ).first()
    return [] if row is None else [execution_resource(row)]


def job_execution_count(session: Session, job_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Execution).where(Execution.job_id == job_id)) or 0


def all_job_executions(session: Session, job_id: str) -> list[dict[str, Any]]:
    """Every unit of the job, newest first, each with ``has_receipt`` (Go's ``/jobs/<id>/executions/all``)."""
    rows = session.execute(
        select(Execution, Receipt.execution_id.is_not(None))
        .outerjoin(Receipt, Receipt.execution_id == Execution.id)
        .where(Execution.job_id == job_id).order_by(Execution.id.desc())
    ).all()
    return [{**execution_resource(e), "provider_id": e.provider, "has_receipt": bool(has)} for e, has in rows]


def execution_details(session: Session, execution_id: str) -> dict[str, Any]:
    """Go's ``/executions/<id>/details``: the execution, ``provider_id``, and its receipt (or null)."""
    execution = get_execution(session, execution_id)
    receipt = session.get(Receipt, execution.id)
    return {**execution_resource(execution), "provider_id": execution.provider,
            "receipt": None if receipt is None else loads(receipt.document)}


def get_execution(session: Session, execution_id: str) -> Execution:
    """The execution, or 404; an id that is not a positive bigint is answered without a query."""
    ident = parse_execution_id(execution_id)
    if ident is None:
        raise NotFound("not_found", "execution not found: not an execution id")
    execution = session.get(Execution, ident)
    if execution is None:
        raise not_found("execution", execution_id)
    return execution


def page_offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    offset = bigint(raw)
    if offset is None:
        raise ValidationError("offset must be a non-negative integer", "offset")
    return offset


def list_executions(session: Session, limit: int, cursor: str | None, offset: int = 0) -> dict[str, Any]:
    """Newest first; the cursor is the last id of the previous page, or skip ``offset`` rows (Go's
    paging). ``total`` counts every execution."""
    if cursor and offset:
        raise ValidationError("give either cursor or offset, not both", "offset")
    query = select(Execution).order_by(Execution.id.desc()).limit(limit + 1).offset(offset)
    if cursor:
        last = bigint(cursor)
        if last is None:
            raise ValidationError("cursor is not one this API returned", "cursor")
        query = query.where(Execution.id < last)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    total = session.scalar(select(func.count()).select_from(Execution)) or 0
    return {"executions": [execution_resource(e) for e in rows], "next_cursor": str(rows[-1].id) if more else None,
            "total": total, "limit": limit, "offset": offset}
