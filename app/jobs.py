"""Jobs, executions and the question catalogue under /api/v1."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from app.client import client_address
from app.openapi import PAGE, error_responses, json_response, path_param, query_param
from app.services import services
from beacon.execution import engine
from beacon.ingest.ingestor import require_json_content_type
from beacon.ingest.questions import load_catalogue
from beacon.ingest.rawjson import parse_optional_body
from beacon.operations.access import bearer_token
from beacon.operations.cancellation import authorize_cancel, cancel_reason
from beacon.resources import executions, jobs
from beacon.timeutil import isoformat

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")

OPENAPI: dict[str, dict[str, Any]] = {
    "/api/v1/jobs": {
        "post": {
            "summary": "Submit a signed JobSpec",
            "description": (
                "Checks, in order: Content-Type, size, JSON, schema, signature-failure rate limit, "
                "trusted key, timestamp window, signature, Idempotency-Key, nonce, job id."
            ),
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "maxLength": 256, "pattern": "^[\\x20-\\x7e]+$"},
                 "description": "1 to 256 printable ASCII characters"}
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
            },
            "responses": {
                "202": json_response(
                    {"type": "object", "properties": {"id": {"type": "string"}, "status": {"const": "enqueued"}}},
                    "accepted and enqueued",
                ),
                "200": json_response(
                    {"type": "object", "properties": {"id": {"type": "string"}, "idempotent": {"const": True}}},
                    "the same signed content (key, form, signed bytes) was accepted before; nothing created",
                ),
                **error_responses(400, 409, 413, 415, 429, 503),
            },
        },
        "get": {
            "summary": "List jobs, newest first",
            "parameters": PAGE,
            "responses": {"200": json_response({"$ref": "#/components/schemas/JobList"}, "a page of jobs"), **error_responses(400)},
        },
    },
    "/api/v1/jobs/cross-region": {
        "post": {
            "summary": "Submit a signed JobSpec wrapped as the portal sends it",
            "description": (
                "Body {jobspec, target_regions?, min_regions?, min_success_rate?, enable_analysis?}. The jobspec "
                "goes through exactly the checks of POST /api/v1/jobs. The outer fields are not signed: "
                "target_regions must name the signed regions; the others are recorded as requested_* and never "
                "change what runs or the verdict."
            ),
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}}
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "202": json_response({"$ref": "#/components/schemas/CrossRegionAccepted"}, "accepted and enqueued"),
                "200": json_response({"$ref": "#/components/schemas/CrossRegionAccepted"},
                                     "the same signed JobSpec was accepted before; nothing created"),
                **error_responses(400, 403, 409, 413, 415, 429, 503),
            },
        },
    },
    "/api/v1/jobs/{job_id}": {
        "get": {
            "summary": "One job",
            "parameters": [
                path_param("job_id", "the JobSpec id"),
                query_param("include", {"type": "string", "enum": ["executions"]}, "embed the job's executions"),
            ],
            "responses": {"200": json_response({"$ref": "#/components/schemas/Job"}, "the job"), **error_responses(404)},
        },
    },
    "/api/v1/jobs/{job_id}/executions": {
        "get": {
            "summary": "Every execution (unit) of a job",
            "parameters": [path_param("job_id", "the JobSpec id")],
            "responses": {"200": json_response({"$ref": "#/components/schemas/ExecutionList"}, "the units"), **error_responses(404)},
        },
    },
    "/api/v1/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a job that is not terminal",
            "description": (
                "Authorised by `Authorization: Bearer <operator or admin token>` or by a body signed with "
                "the job's own key: {action: 'cancel', job_id, timestamp, reason?, public_key, signature}."
            ),
            "parameters": [path_param("job_id", "the JobSpec id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": json_response({"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"const": "cancelled"},
                    "previous_status": {"type": "string"}, "units_cancelled": {"type": "integer"}}}, "cancelled"),
                **error_responses(400, 401, 403, 404, 409),
            },
        },
    },
    "/api/v1/executions": {
        "get": {
            "summary": "List executions, newest first",
            "parameters": PAGE,
            "responses": {"200": json_response({"$ref": "#/components/schemas/ExecutionList"}, "a page"), **error_responses(400)},
        },
    },
    "/api/v1/executions/{execution_id}": {
        "get": {
            "summary": "One execution",
            "parameters": [path_param("execution_id", "the execution id")],
            "responses": {"200": json_response({"$ref": "#/components/schemas/Execution"}, "the execution"), **error_responses(404)},
        },
    },
    "/api/v1/questions": {
        "get": {
            "summary": "The question catalogue JobSpec questions refer to",
            "responses": {"200": json_response({"type": "object", "properties": {"questions": {"type": "array"}}}, "catalogue")},
        },
    },
}


@bp.post("/jobs")
def submit_job():
    require_json_content_type(request.headers.get("Content-Type"))
    accepted = services().ingestor.submit(
        request.get_data(cache=False),
        client_address(),
        request.headers.get("Idempotency-Key"),
    )
    if not accepted.created:
        return jsonify({"id": accepted.job_id, "idempotent": True}), 200
    return jsonify({"id": accepted.job_id, "status": "enqueued"}), 202


@bp.post("/jobs/cross-region")
def submit_cross_region_job():
    """The portal's submit route, answered with the Go handler's fields (every id is the job id)."""
    require_json_content_type(request.headers.get("Content-Type"))
    accepted = services().ingestor.submit_cross_region(
        request.get_data(cache=False),
        client_address(),
        request.headers.get("Idempotency-Key"),
    )
    spec = accepted.spec
    body = {
        "id": accepted.job_id, "job_id": accepted.job_id, "jobspec_id": accepted.job_id,
        "cross_region_execution_id": accepted.job_id, "total_regions": len(spec.regions),
        "min_regions": spec.min_regions, "submitted_at": isoformat(accepted.created_at),
    }
    if not accepted.created:
        return jsonify({**body, "idempotent": True}), 200
    return jsonify({**body, "status": "submitted", "estimated_duration": "2-5 minutes"}), 202


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
    authorization = request.headers.get("Authorization")
    with svc.db.session() as session:
        job = jobs.get_job(session, job_id)
    if bearer_token(authorization) is not None:  # the token decides; the body is read only once it passed
        actor = authorize_cancel(svc.settings, job, authorization, None)
        body = parse_optional_body(request.get_data(cache=False))
    else:  # without a token, a body signed by the job's key is the credential
        body = parse_optional_body(request.get_data(cache=False))
        actor = authorize_cancel(svc.settings, job, authorization, body)
    reason = cancel_reason(body, actor)
    before, units = engine.end_job(svc.db, svc.settings, job_id, status="cancelled", reason=reason, action="cancel")
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
