"""Job submission and reads under /api/v1."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.services import services
from beacon import jobs
from beacon.ingest import require_json_content_type

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
    with services().db.session() as session:
        return jsonify(jobs.job_view(session, job_id))
