"""Read models of the portal's result pages: per-region results, the cross-region view of one model
and question, the v2 bias analysis, and the recent multi-region jobs. Computed from the recorded
units (``beacon.execution.analysis`` and ``beacon.execution.bias``), so every number is traceable
to the answers; the job's latest generation is what they read."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from beacon.errors import InvalidState, not_found
from beacon.execution.analysis import Thresholds
from beacon.execution.bias import job_bias_analysis
from beacon.execution.classify import is_success
from beacon.models import Execution, Job
from beacon.resources.executions import execution_resource
from beacon.resources.jobs import get_job
from beacon.settings import Settings
from beacon.statuses import OPEN_UNIT, UnitStatus
from beacon.timeutil import isoformat, utcnow


def unit_dict(e: Execution) -> dict[str, Any]:
    """What the analyses read of a unit."""
    return {"region": e.region, "model_id": e.model_id, "question_id": e.question_id, "status": e.status,
            "classification": e.classification, "output": e.output, "attempts": e.attempts,
            "bias_score": e.bias_score, "provider": e.provider}


def _units(session: Session, job_id: str, model_id: str | None = None, question_id: str | None = None) -> list[Execution]:
    query = select(Execution).where(Execution.job_id == job_id)
    if model_id:
        query = query.where(Execution.model_id == model_id)
    if question_id:
        query = query.where(Execution.question_id == question_id)
    return list(session.scalars(query.order_by(Execution.region, Execution.model_id, Execution.question_id)))


def _thresholds(settings: Settings) -> Thresholds:
    return Thresholds(*settings.analysis_thresholds)


def _span(units: list[Execution]) -> dict[str, Any]:
    """Status and timing of a group of units (a region's, or a whole scope's)."""
    counts = Counter(str(u.status) for u in units)
    successes = sum(1 for u in units if is_success(u.status, u.classification))
    if any(u.status in OPEN_UNIT for u in units):
        status = "running"
    elif units and counts[UnitStatus.CANCELLED] == len(units):
        status = "cancelled"
    elif units and successes == len(units):
        status = "completed"
    elif successes:
        status = "partial"
    else:
        status = "failed"
    started = [u.started_at for u in units if u.started_at]
    ended = [u.completed_at for u in units if u.completed_at]
    first, last = (min(started) if started else None), (max(ended) if ended and status != "running" else None)
    return {
        "status": status,
        "units": len(units),
        "succeeded": successes,
        "by_status": dict(sorted(counts.items())),
        "started_at": isoformat(first),
        "completed_at": isoformat(last),
        "duration_ms": int((last - first).total_seconds() * 1000) if first and last else None,
    }


def region_results(session: Session, job_id: str) -> dict[str, Any]:
    """``/executions/<job id>/regions``: the units grouped by region, each region with its status
    (completed: every unit answered; partial: some; failed: none; running: some still open) and timing."""
    job = get_job(session, job_id)
    by_region: dict[str, list[Execution]] = {}
    for unit in _units(session, job.id):
        by_region.setdefault(unit.region, []).append(unit)
    regions = {
        region: {
            "region": region,
            **_span(units),
            "served_regions": sorted({u.served_region for u in units if u.served_region}),
            "providers": sorted({u.provider for u in units if u.provider}),
            "executions": [execution_resource(u) for u in units],
        }
        for region, units in sorted(by_region.items())
    }
    return {"job_id": job.id, "status": job.status, "generation": job.generation, "regions": regions,
            "total_regions": len(regions), "generated_at": isoformat(utcnow())}


def _region_result(e: Execution) -> dict[str, Any]:
    """One unit as Go's region result (the portal's model × region page reads these fields)."""
    score = e.bias_score or {}
    return {
        **execution_resource(e),
        "provider_id": e.provider,
        "execution_output": None if e.output is None else {
            "response": e.output, "metadata": {"model": e.model_id, "region": e.served_region or e.region}},
        "scoring": None if not score else {**score, "keywords_detected": score.get("keyword_flags", [])},
        "metadata": {"model_id": e.model_id, "question_id": e.question_id, "served_region": e.served_region,
                     "region_flag": e.region_flag},
        "error": (e.failure or {}).get("message"),
    }


def _job_metadata(job: Job) -> dict[str, Any]:
    spec = job.spec or {}
    benchmark = spec.get("benchmark") or {}
    return {"status": job.status, "questions": spec.get("questions") or [], "models": spec.get("models") or [],
            "benchmark": {"name": benchmark.get("name"), "description": benchmark.get("description")},
            "metadata": spec.get("metadata") or {}}


def cross_region(session: Session, settings: Settings, ident: str, model_id: str | None,
                 question_id: str | None) -> dict[str, Any]:
    """``/executions/<id>/cross-region``: ``<id>`` an execution id (scoped to its model and question),
    else a job id (scoped by the ``model_id`` / ``question_id`` query, when given). Go's shape:
    ``cross_region_execution``, ``region_results``, ``analysis`` (v2), ``summary``."""
    execution = session.get(Execution, int(ident)) if ident.isdigit() and len(ident) < 19 else None
    if execution is not None:
        job, model_id, question_id = session.get(Job, execution.job_id), execution.model_id, execution.question_id
    else:
        job = session.get(Job, ident)
        if job is None:
            raise not_found("execution or job", ident)
    units = _units(session, job.id, model_id, question_id)
    if not units:
        raise not_found("execution", f"of job {job.id} for model {model_id!r} and question {question_id!r}")
    span = _span(units)
    bias = job_bias_analysis([unit_dict(u) for u in units], _thresholds(settings))
    regions = sorted({u.region for u in units})
    succeeded_regions = sorted({u.region for u in units if is_success(u.status, u.classification)})
    durations = [u.duration_ms for u in units if is_success(u.status, u.classification) and u.duration_ms is not None]
    return {
        "cross_region_execution": {
            "id": job.id, "jobspec_id": job.id, "job_id": job.id, "status": span["status"], "job_status": job.status,
            "generation": job.generation, "model_id": model_id, "question_id": question_id,
            "total_regions": len(regions), "success_count": len(succeeded_regions),
            "failure_count": len(regions) - len(succeeded_regions), "created_at": isoformat(job.created_at),
            "started_at": span["started_at"], "completed_at": span["completed_at"], "duration_ms": span["duration_ms"],
        },
        "execution_id": None if execution is None else execution.id,
        "region_results": [_region_result(u) for u in units],
        "analysis": bias["analysis"],
        "region_scores": bias["region_scores"],
        "summary": {
            "success_rate": round(len(succeeded_regions) / len(regions), 4) if regions else 0.0,
            "region_distribution": dict(sorted(Counter(u.region for u in units).items())),
            "provider_types": dict(sorted(Counter(u.provider for u in units if u.provider).items())),
            "average_latency_ms": round(sum(durations) / len(durations)) if durations else None,
            "total_duration_ms": span["duration_ms"],
            "risk_level": bias["analysis"]["overall_risk"] or "low",
        },
    }


def require_analysis(job: Job) -> None:
    if job.analysis is None:
        raise InvalidState("invalid_state", f"job {job.id} has no cross-region analysis yet (it is {job.status})",
                           {"status": job.status, "generation": job.generation})


def bias_analysis(session: Session, settings: Settings, job_id: str) -> dict[str, Any]:
    """``GET /api/v2/jobs/<id>/bias-analysis`` in Go's v2 shape, for the job's latest finalised generation."""
    job = get_job(session, job_id)
    require_analysis(job)
    bias = job_bias_analysis([unit_dict(u) for u in _units(session, job.id)], _thresholds(settings))
    return {"job_id": job.id, "cross_region_execution_id": job.id, "generation": job.generation,
            "analysis": bias["analysis"], "region_scores": bias["region_scores"],
            "created_at": isoformat(job.finished_at), "job_metadata": _job_metadata(job)}


def go_metrics(session: Session, settings: Settings, job: Job) -> dict[str, Any]:
    """The four numbers the portal's diff page reads from ``analysis`` (see :func:`bias_analysis`)."""
    analysis = job_bias_analysis([unit_dict(u) for u in _units(session, job.id)], _thresholds(settings))["analysis"]
    return {k: analysis[k] for k in ("bias_variance", "censorship_rate", "factual_consistency",
                                     "narrative_divergence", "recommendation")}


def diff_executions(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The job's units with Go's ``provider_id`` and ``output_data`` (``response``, ``bias_score``,
    ``metadata.model``) beside our fields: what the portal's cross-region diff transform reads."""
    return [{
        **execution_resource(u), "provider_id": u.provider,
        "output_data": None if u.output is None else {
            "response": u.output, "bias_score": u.bias_score,
            "metadata": {"model": u.model_id, "region": u.served_region or u.region, "question_id": u.question_id}},
    } for u in _units(session, job_id)]


def recent_diffs(session: Session, limit: int) -> dict[str, Any]:
    """``/diffs``: the most recently finished jobs that ran in two or more regions, with their risk."""
    items = []
    query = (select(Job).where(Job.analysis.is_not(None))
             .order_by(Job.finished_at.desc().nulls_last(), Job.id.desc()).execution_options(yield_per=50))
    for job in session.scalars(query):
        summary = (job.analysis or {}).get("summary") or {}
        regions = summary.get("regions_seen") or []
        if len(regions) < 2:
            continue
        divergences = [q["divergence"] for q in job.analysis.get("questions", []) if q.get("divergence") is not None]
        items.append({
            "id": job.id, "job_id": job.id, "status": job.status, "generation": job.generation,
            "benchmark": {"name": ((job.spec or {}).get("benchmark") or {}).get("name")},
            "created_at": isoformat(job.created_at), "finished_at": isoformat(job.finished_at),
            "regions": regions, "models": summary.get("models_seen") or [],
            "questions": summary.get("questions_analysed"), "overall_risk": summary.get("overall_risk"),
            "by_risk": summary.get("by_risk"), "regions_refused": summary.get("regions_refused") or [],
            "similarity_score": round(1 - sum(divergences) / len(divergences), 4) if divergences else None,
        })
        if len(items) >= limit:
            break
    return {"diffs": items, "limit": limit, "total": len(items)}
