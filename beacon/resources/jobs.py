"""Job reads and their resource shapes, shared by the HTTP views and the CLI."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from beacon.crypto.canonical import loads
from beacon.errors import InvalidState, NotFound, ValidationError, not_found
from beacon.ids import is_job_id
from beacon.models import Execution, Job
from beacon.timeutil import isoformat, parse_rfc3339

MAX_PAGE = 200
MAX_CURSOR_LENGTH = 512  # encode_cursor writes about 100 characters


def encode_cursor(created_at: datetime, ident: Any) -> str:
    raw = json.dumps([isoformat(created_at), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, job id) of a cursor ``encode_cursor`` wrote; 400 for anything else."""
    refused = ValidationError("cursor is not one this API returned", "cursor")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)  # at most 384 bytes: too short to nest deep enough to hurt
    except (binascii.Error, ValueError, RecursionError):  # ValueError: not ASCII, not UTF-8, not JSON
        raise refused from None
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[0], str)
            and is_job_id(decoded[1])):
        raise refused
    try:
        return parse_rfc3339(decoded[0]), decoded[1]
    except ValueError:  # not a time, or one that overflows
        raise refused from None


def page_limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError("limit must be an integer", "limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be from 1 to {MAX_PAGE}", "limit")
    return limit


def unit_counts(session: Session, job_ids: list[str]) -> dict[str, dict[str, int]]:
    counts = {job_id: {"units": 0, "completed": 0, "failed": 0, "timeout": 0} for job_id in job_ids}
    if not job_ids:
        return counts
    rows = session.execute(
        select(Execution.job_id, Execution.status, func.count())
        .where(Execution.job_id.in_(job_ids))
        .group_by(Execution.job_id, Execution.status)
    )
    for job_id, status, count in rows:
        counts[job_id]["units"] += count
        if status in ("completed", "failed", "timeout"):
            counts[job_id][status] += count
    return counts


def unit_usage(session: Session, job_ids: list[str]) -> dict[str, dict[str, int | None]]:
    """Per job: the token counts its units reported, summed (``None`` while no unit reported any),
    and how many units reported them."""
    usage: dict[str, dict[str, int | None]] = {
        job_id: {"prompt_tokens": None, "completion_tokens": None, "units_reporting": 0} for job_id in job_ids}
    if not job_ids:
        return usage
    reported = or_(Execution.prompt_tokens.is_not(None), Execution.completion_tokens.is_not(None))
    rows = session.execute(
        select(Execution.job_id, func.sum(Execution.prompt_tokens), func.sum(Execution.completion_tokens),
               func.count())
        .where(Execution.job_id.in_(job_ids), reported)
        .group_by(Execution.job_id)
    )
    for job_id, prompt, completion, count in rows:
        usage[job_id] = {"prompt_tokens": None if prompt is None else int(prompt),
                         "completion_tokens": None if completion is None else int(completion),
                         "units_reporting": count}
    return usage


def job_resource(job: Job, counts: dict[str, int], usage: dict[str, int | None] | None = None) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "status_reason": job.status_reason,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "finished_at": isoformat(job.finished_at),
        "deadline_at": isoformat(job.deadline_at),
        "spec": loads(job.signed_spec) if job.signed_spec else job.spec,
        "job": {**job.spec, "id": job.id, "created_at": isoformat(job.created_at)},  # Go's shape; unsigned id/time
        "signature_form": job.signature_form,
        "submitter_wallet": job.submitter_wallet,
        "benchmark": {"name": (job.spec.get("benchmark") or {}).get("name")},
        "requested": job.requested,
        "generation": job.generation or 1,
        "counts": counts,
        "usage": usage or {"prompt_tokens": None, "completion_tokens": None, "units_reporting": 0},
    }


def get_job(session: Session, job_id: str) -> Job:
    """The job, or 404; an id no job can have (``beacon.ids``) is answered without a query."""
    if not is_job_id(job_id):
        raise NotFound("not_found", "job not found: not a job id")
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def job_view(session: Session, job_id: str) -> dict[str, Any]:
    job = get_job(session, job_id)
    return job_resource(job, unit_counts(session, [job.id])[job.id], unit_usage(session, [job.id])[job.id])


def list_jobs(session: Session, limit: int, cursor: str | None) -> dict[str, Any]:
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if cursor:
        stamp, ident = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < stamp, and_(Job.created_at == stamp, Job.id < ident)))
    jobs = list(session.scalars(query))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    counts = unit_counts(session, [job.id for job in jobs])
    usage = unit_usage(session, [job.id for job in jobs])
    return {
        "jobs": [job_resource(job, counts[job.id], usage[job.id]) for job in jobs],
        "next_cursor": encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None,
    }


def require_state(job: Job, allowed: tuple[str, ...], action: str) -> None:
    if job.status not in allowed:
        raise InvalidState("invalid_state", f"cannot {action} a job that is {job.status}", {"status": job.status}
        )
