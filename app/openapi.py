"""GET /openapi.json: the document of every route (a test fails when one is missing).

Each blueprint module documents its own routes in ``OPENAPI``; shared schemas live here.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, jsonify

from beacon import __version__
from beacon.statuses import Classification, JobStatus, UnitStatus

bp = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*codes: int) -> dict[str, Any]:
    return {str(code): json_response(ERROR, "error envelope") for code in codes}


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGE = [
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size"),
    query_param("cursor", {"type": "string"}, "next_cursor of the previous page"),
]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "error_code"],
        "properties": {
            "error": {"type": "string"},
            "error_code": {"type": "string", "examples": ["validation_error", "missing_field:id", "signature_mismatch",
                                                         "invalid_json", "duplicate_key", "internal_error"]},
            "details": {"type": "object", "description": "e.g. field (the offending path), reason (invalid_json: "
                                                         "encoding, depth, syntax, number), request_id (internal_error)"},
        },
    },
    "JobSpec": {
        "type": "object",
        "description": "The Go runner's JobSpec, Ed25519-signed in one of the forms of docs/signatures.md.",
        "required": ["version", "benchmark", "constraints", "metadata", "signature", "public_key"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "jobspec_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "version": {"type": "string"},
            "benchmark": {"type": "object"},
            "constraints": {
                "type": "object",
                "properties": {
                    "regions": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 64}},
                    "min_regions": {"type": "integer", "default": 3},
                    "min_success_rate": {"type": "number", "default": 0.67},
                    "timeout": {"type": "integer", "description": "nanoseconds, 30 s to 60 min, default 10 min"},
                    "provider_timeout": {"type": "integer", "description": "nanoseconds, 1 s to 60 min, default 2 min"},
                    "max_cost": {"type": "number"},
                    "providers": {"type": "array"},
                },
            },
            "metadata": {"type": "object", "required": ["nonce", "timestamp"],
                         "properties": {"nonce": {"type": "string", "maxLength": 512}}},
            "questions": {"type": "array", "maxItems": 256, "items": {"type": "string", "maxLength": 256}},
            "models": {"type": "array", "maxItems": 64,
                       "description": "model ids (at most 256 characters) or {id, name?, provider?, regions?}"},
            "runs": {"type": "integer"},
            "wallet_auth": {"type": "object"},
            "created_at": {"type": "string"},
            "signature": {"type": "string", "maxLength": 128, "description": "standard base64 Ed25519 signature"},
            "public_key": {"type": "string", "maxLength": 64, "description": "standard base64 Ed25519 public key"},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": list(JobStatus)},
            "status_reason": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "deadline_at": {"type": ["string", "null"], "format": "date-time"},
            "spec": {"$ref": "#/components/schemas/JobSpec", "description": (
                "the signed projection in the matched form's own serialisation, with signature and "
                "public_key: `beacon verify` accepts it")},
            "job": {"type": "object", "description": (
                "the Go runner's shape: the executed projection plus the server's id and created_at "
                "(those two are not signed)")},
            "signature_form": {"type": ["string", "null"], "description": "the form the signature matched"},
            "submitter_wallet": {"type": ["string", "null"], "description": "the address wallet_auth recovered"},
            "benchmark": {"type": "object", "properties": {"name": {"type": "string"}}},
            "generation": {"type": "integer", "description": (
                "1, then + 1 per manual retry; the job is finalised and sealed once per generation")},
            "requested": {"type": ["object", "null"], "description": (
                "the cross-region wrapper's unsigned min_regions, min_success_rate, enable_analysis and "
                "target_regions, recorded beside the verdict (which always uses the signed constraints)")},
            "counts": {
                "type": "object",
                "properties": {k: {"type": "integer"} for k in ("units", "completed", "failed", "timeout")},
            },
            "usage": {
                "type": "object",
                "description": "tokens the job's units reported (OpenAI-compatible endpoints), summed; null while "
                               "no unit reported any",
                "properties": {"prompt_tokens": {"type": ["integer", "null"]},
                               "completion_tokens": {"type": ["integer", "null"]},
                               "units_reporting": {"type": "integer"}},
            },
        },
    },
    "CrossRegionAccepted": {
        "type": "object",
        "description": "The Go handler's fields; every id is the job id.",
        "properties": {
            **{k: {"type": "string"} for k in ("id", "job_id", "jobspec_id", "cross_region_execution_id",
                                               "status", "submitted_at", "estimated_duration")},
            "total_regions": {"type": "integer"}, "min_regions": {"type": "integer"},
            "idempotent": {"type": "boolean"},
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
            "status": {"enum": list(UnitStatus)},
            "classification": {"enum": [*Classification, None]},
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
            "created_at": {"type": "string", "format": "date-time"},
            "ran_in_generation": {"type": "integer", "description": "the job generation whose run this row holds"},
            "bias_score": {"oneOf": [{"$ref": "#/components/schemas/BiasScore"}, {"type": "null"}]},
            "region_flag": {"enum": ["mismatch", "unknown", None], "description": (
                "the hybrid router's: it served another known region (mismatch) or one we cannot map (unknown)")},
            "provider_receipt": {"type": ["object", "null"], "description": "the hybrid router's metadata.receipt"},
            "finish_reason": {"type": ["string", "null"], "description": (
                "why the model stopped, as an OpenAI-compatible endpoint said (stop, length, …)")},
            "truncated": {"type": "boolean", "description": "finish_reason is length: the answer was cut at max_tokens"},
            "usage": {"type": ["object", "null"], "description": "the endpoint's token counts for this answer",
                      "properties": {"prompt_tokens": {"type": ["integer", "null"]},
                                     "completion_tokens": {"type": ["integer", "null"]}}},
            "history": {"type": "array", "items": {"type": "object"}, "description": (
                "present after a manual retry: the row as each earlier generation left it")},
        },
    },
    "BiasScore": {
        "type": "object",
        "description": "The keyword-heuristic bias score of one answer (docs/analysis.md), computed when recorded.",
        "properties": {
            "method": {"const": "keyword_heuristic_v1"},
            **{k: {"type": "number", "minimum": 0, "maximum": 1} for k in (
                "bias_score", "political_sensitivity", "censorship_score", "cultural_bias", "factual_accuracy",
                "sentiment_score")},
            "censorship_detected": {"type": "boolean"},
            "keyword_flags": {"type": "array", "items": {"type": "string"}},
            "response_length": {"type": "integer"},
        },
    },
    "SignedRetry": {
        "type": "object",
        "description": "Only without an operator token: signed by the job's key like a JobSpec.",
        "required": ["action", "job_id", "nonce", "timestamp", "public_key", "signature"],
        "properties": {
            "action": {"const": "retry"}, "job_id": {"type": "string"}, "execution_id": {"type": "integer"},
            "nonce": {"type": "string", "maxLength": 512}, "timestamp": {"type": "string", "format": "date-time"},
            "reason": {"type": "string"}, "public_key": {"type": "string"}, "signature": {"type": "string"},
        },
    },
    "RetryStarted": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"}, "execution_id": {"type": ["integer", "null"]},
            "status": {"const": "retrying"}, "job_status": {"const": "running"},
            "previous_status": {"enum": ["completed", "failed"]}, "generation": {"type": "integer"},
            "execution_ids": {"type": "array", "items": {"type": "integer"}}, "units": {"type": "integer"},
            "published": {"type": "integer", "description": "messages sent now; the outbox relay sends the rest"},
            "deadline_at": {"type": "string", "format": "date-time"},
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


RATE_LIMIT_HEADERS: dict[str, Any] = {
    "Retry-After": {"description": "seconds until the client may try again", "schema": {"type": "integer"}},
    "X-RateLimit-Limit": {"description": "requests a client may make in the window", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "requests left in the window", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time at which the window has room again", "schema": {"type": "integer"}},
}
RATE_LIMIT_EXCEEDED = "over RATE_LIMIT_DEFAULT (per client, whole API); wait Retry-After seconds"
RATE_LIMITED = {
    "description": f"error envelope, error_code rate_limit_exceeded: {RATE_LIMIT_EXCEEDED}",
    "headers": RATE_LIMIT_HEADERS,
    "content": {"application/json": {"schema": ERROR}},
}


def with_rate_limit(paths: dict[str, Any], exempt: frozenset[str]) -> dict[str, Any]:
    """``paths`` with the API rate limit's 429 on every operation it counts (all but ``exempt`` paths).

    An operation that documents a 429 of its own (ingest's signature-failure limit) keeps its
    description, extended, and gains the headers.
    """
    paths = copy.deepcopy(paths)
    for path, operations in paths.items():
        if path in exempt:
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            own = responses.get("429")
            if own is None:
                responses["429"] = copy.deepcopy(RATE_LIMITED)
            else:
                own["description"] = (f"{own['description']}, error_code rate_limit_exceeded: this operation's "
                                      f"own limit, or {RATE_LIMIT_EXCEEDED}")
                own["headers"] = copy.deepcopy(RATE_LIMIT_HEADERS)
    return paths


SECURITY_SCHEMES: dict[str, Any] = {
    "roleToken": {
        "type": "http", "scheme": "bearer",
        "description": "A role token (viewer < operator < admin): VIEWER_TOKENS, OPERATOR_TOKENS, ADMIN_TOKENS. "
                       "Each /admin operation names the least role it needs.",
    },
}
#: Operations a caller may authorise either with a role token or otherwise (the cancel route also
#: takes a body signed with the job's own key), so the token is optional there.
TOKEN_OR_SIGNED_BODY = frozenset({"/api/v1/jobs/{job_id}/cancel"})


def with_secured(paths: dict[str, Any]) -> dict[str, Any]:
    """Every /admin operation requires a role token; the cancel route accepts one. The rest are public
    (submissions are authorised by their signature, not by the transport)."""
    for path, operations in paths.items():
        for operation in operations.values():
            if path.startswith("/admin/"):
                operation["security"] = [{"roleToken": []}]
            elif path in TOKEN_OR_SIGNED_BODY:
                operation["security"] = [{"roleToken": []}, {}]
    return paths


OPENAPI = {
    "/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": json_response({"type": "object"}, "OpenAPI 3.1")}},
    },
}


def document() -> dict[str, Any]:
    """Every registered blueprint module's ``OPENAPI`` paths (Flask's <name> written {name})."""
    from app import BLUEPRINT_MODULES
    from app.ratelimit import EXEMPT_RULES

    paths: dict[str, Any] = {}
    for module in BLUEPRINT_MODULES:
        paths.update(module.OPENAPI)
    paths = with_secured(with_rate_limit(paths, EXEMPT_RULES))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Beacon Runner API", "version": __version__},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
