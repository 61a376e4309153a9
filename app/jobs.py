"""Jobs, executions and the question catalogue under /api/v1."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.services import services
from beacon import engine, executions, jobs
from beacon.cancellation import authorize_cancel
from beacon.ingest import decode_json, require_json_content_type
from beacon.questions import load_catalogue

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")


@bp.post("/jobs")
def submit_job():
    require_json_content_type(request.headers.get("Content-Type"))
    accepted = services().ingestor.submit(
        request.get_data(cache=False),
        request.remote_addr or "unknown",
        request.headers.get("Idempotency-Key"),
    )
    return jsonify(accepted.body), accepted.status


@bp.get("/jobs")
def list_jobs():
    svc = services()
    limit = jobs.page_limit(request.args.get("limit"))
    with svc.db.session() as session:
        return jsonify(jobs.list_jobs(session, limit, request.args.get("cursor")))


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    include = {part.strip() for part in request.args.get("include", "").split(",") if part.strip()}
    with services().db.session() as session:
        view = jobs.job_view(session, job_id)
        if "executions" in include:
            view["executions"] = executions.job_executions(session, job_id)
    return jsonify(view)


@bp.get("/jobs/<job_id>/executions")
def job_executions(job_id: str):
    with services().db.session() as session:
        jobs.get_job(session, job_id)
        return jsonify({"executions": executions.job_executions(session, job_id), "next_cursor": None})


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    svc = services()
    raw = request.get_data(cache=False)
    body = decode_json(raw) if raw.strip() else None
    with svc.db.session() as session:
        job = jobs.get_job(session, job_id)
        who = authorize_cancel(svc.settings, job, request.headers.get("Authorization"), body)
    reason = (body or {}).get("reason") or f"cancelled by {who.split(':', 1)[0]}"
    before, units = engine.cancel_job(svc.db, job_id, reason)
    return jsonify({"id": job_id, "status": "cancelled", "previous_status": before, "units_cancelled": units})


@bp.get("/executions")
def list_executions():
    limit = jobs.page_limit(request.args.get("limit"))
    with services().db.session() as session:
        return jsonify(executions.list_executions(session, limit, request.args.get("cursor")))


@bp.get("/executions/<execution_id>")
def get_execution(execution_id: str):
    with services().db.session() as session:
        return jsonify(executions.execution_resource(executions.get_execution(session, execution_id)))


@bp.get("/questions")
def questions():
    catalogue = load_catalogue(services().settings.questions_file)
    return jsonify({"questions": [
        {"question_id": q.id, "question": q.text, "category": q.category} for q in catalogue.values()
    ]})
