"""GET /openapi.json: the document of every route (a test fails when one is missing)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from beacon import __version__

bp = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(ERROR, "error envelope") for code in codes}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size"),
    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
]

# path → method → operation. Flask's <name> placeholders are written {name}.
PATHS: dict[str, dict[str, Any]] = {
    "/health/live": {
        "get": {"summary": "The process is up", "responses": {"200": _json({"type": "object"}, "alive")}},
    },
    "/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}},
    },
    "/api/v1/jobs": {
        "post": {
            "summary": "Submit a signed JobSpec",
            "description": (
                "Checks, in order: Content-Type, size, JSON, schema, signature-failure rate limit, "
                "trusted key, timestamp window, signature, Idempotency-Key, nonce, job id."
            ),
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}}
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
            },
            "responses": {
                "202": _json(
                    {"type": "object", "properties": {"id": {"type": "string"}, "status": {"const": "enqueued"}}},
                    "accepted and enqueued",
                ),
                "200": _json(
                    {"type": "object", "properties": {"id": {"type": "string"}, "idempotent": {"const": True}}},
                    "the same Idempotency-Key and body were accepted before; nothing created",
                ),
                **_errors(400, 409, 413, 415, 429, 503),
            },
        },
        "get": {
            "summary": "List jobs, newest first",
            "parameters": PAGE,
            "responses": {"200": _json({"$ref": "#/components/schemas/JobList"}, "a page of jobs"), **_errors(400)},
        },
    },
    "/api/v1/jobs/{job_id}": {
        "get": {
            "summary": "One job",
            "parameters": [
                _path_param("job_id", "the JobSpec id"),
                _query("include", {"type": "string", "enum": ["executions"]}, "embed the job's executions"),
            ],
            "responses": {"200": _json({"$ref": "#/components/schemas/Job"}, "the job"), **_errors(404)},
        },
    },
    "/api/v1/jobs/{job_id}/executions": {
        "get": {
            "summary": "Every execution (unit) of a job",
            "parameters": [_path_param("job_id", "the JobSpec id")],
            "responses": {"200": _json({"$ref": "#/components/schemas/ExecutionList"}, "the units"), **_errors(404)},
        },
    },
    "/api/v1/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a job that is not terminal",
            "description": (
                "Authorised by `Authorization: Bearer <operator or admin token>` or by a body signed with "
                "the job's own key: {action: 'cancel', job_id, timestamp, reason?, public_key, signature}."
            ),
            "parameters": [_path_param("job_id", "the JobSpec id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"const": "cancelled"},
                    "previous_status": {"type": "string"}, "units_cancelled": {"type": "integer"}}}, "cancelled"),
                **_errors(400, 401, 403, 404, 409),
            },
        },
    },
    "/api/v1/executions": {
        "get": {
            "summary": "List executions, newest first",
            "parameters": PAGE,
            "responses": {"200": _json({"$ref": "#/components/schemas/ExecutionList"}, "a page"), **_errors(400)},
        },
    },
    "/api/v1/executions/{execution_id}": {
        "get": {
            "summary": "One execution",
            "parameters": [_path_param("execution_id", "the execution id")],
            "responses": {"200": _json({"$ref": "#/components/schemas/Execution"}, "the execution"), **_errors(404)},
        },
    },
    "/api/v1/questions": {
        "get": {
            "summary": "The question catalogue JobSpec questions refer to",
            "responses": {"200": _json({"type": "object", "properties": {"questions": {"type": "array"}}}, "catalogue")},
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "error_code"],
        "properties": {
            "error": {"type": "string"},
            "error_code": {"type": "string", "examples": ["validation_error", "missing_field:id", "signature_mismatch"]},
            "details": {"type": "object"},
        },
    },
    "JobSpec": {
        "type": "object",
        "description": "The Go runner's JobSpec, Ed25519-signed over its canonical JSON (see DESIGN.md).",
        "required": ["id", "version", "benchmark", "constraints", "metadata", "signature", "public_key"],
        "properties": {
            "id": {"type": "string"},
            "jobspec_id": {"type": "string"},
            "version": {"type": "string"},
            "benchmark": {"type": "object"},
            "constraints": {
                "type": "object",
                "properties": {
                    "regions": {"type": "array", "items": {"type": "string"}},
                    "min_regions": {"type": "integer", "default": 3},
                    "min_success_rate": {"type": "number", "default": 0.67},
                    "timeout": {"type": "integer", "description": "nanoseconds, 30 s to 60 min, default 10 min"},
                    "provider_timeout": {"type": "integer", "description": "nanoseconds, default 2 min"},
                    "max_cost": {"type": "number"},
                    "providers": {"type": "array"},
                },
            },
            "metadata": {"type": "object", "required": ["nonce", "timestamp"]},
            "questions": {"type": "array", "items": {"type": "string"}},
            "models": {"type": "array"},
            "runs": {"type": "integer"},
            "wallet_auth": {"type": "object"},
            "created_at": {"type": "string"},
            "signature": {"type": "string", "description": "standard base64 Ed25519 signature"},
            "public_key": {"type": "string", "description": "standard base64 Ed25519 public key"},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["queued", "running", "completed", "failed", "cancelled"]},
            "status_reason": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "deadline_at": {"type": ["string", "null"], "format": "date-time"},
            "spec": {"$ref": "#/components/schemas/JobSpec"},
            "job": {"$ref": "#/components/schemas/JobSpec"},
            "counts": {
                "type": "object",
                "properties": {k: {"type": "integer"} for k in ("units", "completed", "failed", "timeout")},
            },
        },
    },
    "Execution": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "job_id": {"type": "string"},
            "region": {"type": "string", "description": "the region the JobSpec asked for"},
            "served_region": {"type": ["string", "null"], "description": "the region that actually answered"},
            "provider": {"type": ["string", "null"]},
            "model_id": {"type": "string"},
            "question_id": {"type": "string"},
            "status": {"enum": ["pending", "running", "completed", "failed", "timeout", "cancelled"]},
            "classification": {"enum": ["substantive", "content_refusal", "technical_failure", None]},
            "output": {"type": ["string", "null"]},
            "output_sha256": {"type": ["string", "null"]},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "completed_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_ms": {"type": ["integer", "null"]},
            "attempts": {"type": "integer"},
            "failure": {
                "type": "object",
                "description": "code (timeout | network | http_<status> | bad_response | poison), transient, "
                               "stage, region, model, provider, message",
            },
        },
    },
    "ExecutionList": {
        "type": "object",
        "properties": {
            "executions": {"type": "array", "items": {"$ref": "#/components/schemas/Execution"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "JobList": {
        "type": "object",
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Beacon Runner API", "version": __version__},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
