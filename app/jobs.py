"""Jobs, executions and the question catalogue under /api/v1."""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, jsonify, request

from app.client import client_address
from app.openapi import PAGE, error_responses, json_response, path_param, query_param
from app.services import services
from beacon.errors import InvalidState, ValidationError
from beacon.execution import engine
from beacon.execution.bias import score_answer
from beacon.ingest.ingestor import require_json_content_type
from beacon.ingest.questions import load_catalogue
from beacon.ingest.rawjson import parse_optional_body
from beacon.messaging.outbox import celery_publisher
from beacon.operations import retry
from beacon.operations.access import bearer_token
from beacon.operations.cancellation import authorize_cancel, cancel_reason
from beacon.resources import executions, jobs
from beacon.timeutil import isoformat

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")

RETRY_DESCRIPTION = (
    "Authorised by `Authorization: Bearer <operator or admin token>` or by a body signed with the job's own key "
    "(trusted now): {action: 'retry', job_id, execution_id?, nonce, timestamp, reason?, public_key, signature}; the "
    "nonce is single-use (a replay answers replay_detected). The job must be completed or failed and the units "
    "failed or timed out: it becomes running in its next generation (generation + 1, deadline renewed), the units "
    "re-run keeping their earlier attempt in history, and the job is finalised and sealed again (a new bundle that "
    "names the one it supersedes). Anything else answers 409 invalid_state."
)

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
            "description": (
                "include=executions (or all, Go's synonym) embeds the job's units: every one, or a page with "
                "exec_limit (1-200) and exec_offset, counted in executions_page. include=latest embeds only the "
                "most recent execution (the last to finish, else the last created), as a list of 0 or 1."),
            "parameters": [
                path_param("job_id", "the JobSpec id"),
                query_param("include", {"type": "string", "enum": ["executions", "all", "latest"]},
                            "embed the job's executions"),
                query_param("exec_limit", {"type": "integer", "minimum": 1, "maximum": 200},
                            "with include=executions|all: page size"),
                query_param("exec_offset", {"type": "integer", "minimum": 0}, "with include=executions|all: skip"),
            ],
            "responses": {"200": json_response({"$ref": "#/components/schemas/Job"}, "the job"),
                          **error_responses(400, 404)},
        },
    },
    "/api/v1/jobs/{job_id}/executions/all": {
        "get": {
            "summary": "Every unit of a job, newest first, each with has_receipt (the Go runner's route)",
            "parameters": [path_param("job_id", "the JobSpec id")],
            "responses": {"200": json_response({"type": "object", "properties": {"executions": {
                "type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/Execution"}, {
                    "type": "object", "properties": {"has_receipt": {"type": "boolean"},
                                                     "provider_id": {"type": ["string", "null"]}}}]}}}},
                "the units"), **error_responses(404)},
        },
    },
    "/api/v1/jobs/{job_id}/retry-all-failed": {
        "post": {
            "summary": "Re-run every failed or timed-out unit of a finished job as its next generation",
            "description": RETRY_DESCRIPTION,
            "parameters": [path_param("job_id", "the JobSpec id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/SignedRetry"}}}},
            "responses": {"200": json_response({"$ref": "#/components/schemas/RetryStarted"}, "the new generation"),
                          **error_responses(400, 401, 403, 404, 409)},
        },
    },
    "/api/v1/executions/{execution_id}/retry-question": {
        "post": {
            "summary": "Re-run one failed or timed-out unit of a finished job as the job's next generation",
            "description": RETRY_DESCRIPTION + " A signed body must name this execution_id.",
            "parameters": [path_param("execution_id", "the execution id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/SignedRetry"}}}},
            "responses": {"200": json_response({"$ref": "#/components/schemas/RetryStarted"}, "the new generation"),
                          **error_responses(400, 401, 403, 404, 409)},
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
                "the job's own key: {action: 'cancel', job_id, nonce, timestamp, reason?, public_key, signature}; "
                "the key must be trusted now and the nonce unused (a replay answers replay_detected)."
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
            "description": "Page with cursor (next_cursor of the previous page) or with offset (Go's), not both; "
                           "total counts every execution.",
            "parameters": [*PAGE, query_param("offset", {"type": "integer", "minimum": 0, "default": 0}, "skip")],
            "responses": {"200": json_response({"allOf": [{"$ref": "#/components/schemas/ExecutionList"}, {
                "type": "object", "properties": {"total": {"type": "integer"}, "limit": {"type": "integer"},
                                                 "offset": {"type": "integer"}}}]}, "a page"),
                          **error_responses(400)},
        },
    },
    "/api/v1/executions/{execution_id}": {
        "get": {
            "summary": "One execution",
            "parameters": [path_param("execution_id", "the execution id")],
            "responses": {"200": json_response({"$ref": "#/components/schemas/Execution"}, "the execution"), **error_responses(404)},
        },
    },
    "/api/v1/executions/{execution_id}/details": {
        "get": {
            "summary": "One execution with its signed receipt (null before its job is finalised)",
            "parameters": [path_param("execution_id", "the execution id")],
            "responses": {"200": json_response({"allOf": [{"$ref": "#/components/schemas/Execution"}, {
                "type": "object", "properties": {"provider_id": {"type": ["string", "null"]},
                                                 "receipt": {"type": ["object", "null"]}}}]}, "the execution"),
                          **error_responses(404)},
        },
    },
    "/api/v1/executions/{execution_id}/bias-score": {
        "get": {
            "summary": "The answer's bias score, computed when it was recorded (docs/analysis.md)",
            "description": "stored is false for an answer recorded before scores existed: its score is computed "
                           "now by the same rule. 409 while the unit has no recorded answer.",
            "parameters": [path_param("execution_id", "the execution id")],
            "responses": {"200": json_response({"$ref": "#/components/schemas/BiasScore"}, "the score"),
                          **error_responses(404, 409)},
        },
    },
    "/api/v1/questions": {
        "get": {
            "summary": "The question catalogue JobSpec questions refer to",
            "responses": {"200": json_response({"type": "object", "properties": {
                "questions": {"type": "array", "items": {"type": "object", "properties": {
                    "question_id": {"type": "string"}, "question": {"type": "string"}, "category": {"type": "string"}}}},
                "categories": {"type": "object", "description": "the same questions by category (the portal's shape)",
                               "additionalProperties": {"type": "array", "items": {"type": "object", "properties": {
                                   "question_id": {"type": "string"}, "question": {"type": "string"}}}}},
            }}, "catalogue")},
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


def _exec_page() -> tuple[int | None, int]:
    raw_limit, raw_offset = request.args.get("exec_limit"), request.args.get("exec_offset")
    limit = None if raw_limit in (None, "") else jobs.page_limit(raw_limit)
    if raw_offset not in (None, "") and not raw_offset.isdigit():
        raise ValidationError("exec_offset must be a non-negative integer", "exec_offset")
    return limit, int(raw_offset or 0)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    include = {part.strip().lower() for part in request.args.get("include", "").split(",") if part.strip()}
    with services().db.session() as session:
        view = jobs.job_view(session, job_id)
        if "latest" in include:
            view["executions"] = executions.latest_execution(session, job_id)
        elif include & {"executions", "all"}:
            limit, offset = _exec_page()
            view["executions"] = executions.job_executions(session, job_id, limit, offset)
            if limit is not None or offset:
                view["executions_page"] = {"limit": limit, "offset": offset,
                                           "total": executions.job_execution_count(session, job_id)}
    return jsonify(view)


@bp.get("/jobs/<job_id>/executions/all")
def all_job_executions(job_id: str):
    with services().db.session() as session:
        jobs.get_job(session, job_id)
        return jsonify({"executions": executions.all_job_executions(session, job_id)})


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
        session.expunge(job)
    authorize = functools.partial(authorize_cancel, svc.settings, svc.db, svc.trust, svc.ingestor.wallet_allowlist,
                                  job, authorization)
    if bearer_token(authorization) is not None:  # the token decides; the body is read only once it passed
        actor = authorize(None)
        body = parse_optional_body(request.get_data(cache=False))
    else:  # without a token, a body signed by the job's key is the credential
        body = parse_optional_body(request.get_data(cache=False))
        actor = authorize(body)
    reason = cancel_reason(body, actor)
    before, units = engine.end_job(svc.db, svc.settings, job_id, status="cancelled", reason=reason, action="cancel")
    return jsonify({"id": job_id, "status": "cancelled", "previous_status": before, "units_cancelled": units})


def _retry(job_id: str, execution_id: int | None):
    svc = services()
    body = parse_optional_body(request.get_data(cache=False))
    with svc.db.session() as session:
        job = jobs.get_job(session, job_id)
        session.expunge(job)
    result = retry.retry(svc.settings, svc.db, svc.trust, svc.ingestor.wallet_allowlist, celery_publisher(svc.celery),
                         job, execution_id, request.headers.get("Authorization"), body)
    return jsonify(result)


@bp.post("/jobs/<job_id>/retry-all-failed")
def retry_all_failed(job_id: str):
    return _retry(job_id, None)


@bp.post("/executions/<execution_id>/retry-question")
def retry_question(execution_id: str):
    with services().db.session() as session:
        execution = executions.get_execution(session, execution_id)
        job_id, ident = execution.job_id, execution.id
    return _retry(job_id, ident)


@bp.get("/executions")
def list_executions():
    limit = jobs.page_limit(request.args.get("limit"))
    offset = executions.page_offset(request.args.get("offset"))
    with services().db.session() as session:
        return jsonify(executions.list_executions(session, limit, request.args.get("cursor"), offset))


@bp.get("/executions/<execution_id>")
def get_execution(execution_id: str):
    with services().db.session() as session:
        return jsonify(executions.execution_resource(executions.get_execution(session, execution_id)))


@bp.get("/executions/<execution_id>/details")
def execution_details(execution_id: str):
    with services().db.session() as session:
        return jsonify(executions.execution_details(session, execution_id))


@bp.get("/executions/<execution_id>/bias-score")
def bias_score(execution_id: str):
    with services().db.session() as session:
        execution = executions.get_execution(session, execution_id)
        score, stored = execution.bias_score, True
        if score is None and execution.status == "completed" and execution.output is not None:
            score, stored = score_answer(execution.output, execution.classification), False  # recorded before scores
        if score is None:
            raise InvalidState("invalid_state", f"execution {execution.id} has no recorded answer to score "
                               f"(it is {execution.status})", {"status": execution.status})
        return jsonify({"execution_id": execution.id, "job_id": execution.job_id, "region": execution.region,
                        "model_id": execution.model_id, "question_id": execution.question_id, **score,
                        "stored": stored})


@bp.get("/questions")
def questions():
    catalogue = load_catalogue(services().settings.questions_file)
    listed = [{"question_id": q.id, "question": q.text, "category": q.category} for q in catalogue.values()]
    categories: dict[str, list[dict[str, str]]] = {}
    for q in catalogue.values():
        categories.setdefault(q.category, []).append({"question_id": q.id, "question": q.text})
    return jsonify({"questions": listed, "categories": categories})
