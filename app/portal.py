"""Result reads the Go runner served to the portal: the v2 bias analysis, per-region results, the
cross-region view of one model and question, recent multi-region jobs, and ``/auth/whoami``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from app.openapi import error_responses, json_response, path_param, query_param
from app.services import services
from beacon.operations.access import bearer_token, role_for_token
from beacon.resources import analysis, jobs

bp = Blueprint("portal", __name__)


@bp.get("/api/v2/jobs/<job_id>/bias-analysis")
def bias_analysis(job_id: str):
    svc = services()
    with svc.db.session() as session:
        return jsonify(analysis.bias_analysis(session, svc.settings, job_id))


@bp.get("/api/v1/executions/<job_id>/regions")
def region_results(job_id: str):
    with services().db.session() as session:
        return jsonify(analysis.region_results(session, job_id))


@bp.get("/api/v1/executions/<execution_id>/cross-region")
def cross_region(execution_id: str):
    svc = services()
    with svc.db.session() as session:
        return jsonify(analysis.cross_region(session, svc.settings, execution_id, request.args.get("model_id") or None,
                                             request.args.get("question_id") or None))


@bp.get("/api/v1/diffs")
def recent_diffs():
    limit = jobs.page_limit(request.args.get("limit"), default=20)
    with services().db.session() as session:
        return jsonify(analysis.recent_diffs(session, limit))


@bp.get("/auth/whoami")
def whoami():
    role = role_for_token(services().settings, bearer_token(request.headers.get("Authorization")))
    return jsonify({"role": role or "anonymous"})


# --------------------------------------------------------------------------- OpenAPI

_NUMBER = {"type": ["number", "null"]}
_REGION_SCORE = {"type": "object", "properties": {
    "region": {"type": "string"}, "bias_score": _NUMBER, "censorship_detected": {"type": "boolean"},
    "censorship_rate": _NUMBER, "political_sensitivity": _NUMBER, "factual_accuracy": _NUMBER,
    "cultural_bias": _NUMBER, "sentiment_score": _NUMBER, "keyword_flags": {"type": "array", "items": {"type": "string"}},
    "answers": {"type": "integer"}, "units": {"type": "integer"}, "providers": {"type": "array", "items": {"type": "string"}}}}
_V2_ANALYSIS = {"type": "object", "description": "docs/analysis.md, 'The v2 bias analysis'", "properties": {
    "bias_variance": {"type": "number"}, "censorship_rate": {"type": "number"},
    "factual_consistency": {"type": "number"}, "narrative_divergence": {"type": "number"},
    "summary": {"type": "string"}, "recommendation": {"enum": ["LOW RISK", "MEDIUM RISK", "HIGH RISK", "CRITICAL RISK"]},
    "key_differences": {"type": "array", "items": {"type": "object", "properties": {
        "dimension": {"type": "string"}, "variations": {"type": "object"}, "severity": {"type": "string"},
        "description": {"type": "string"}, "question_id": {"type": "string"}, "model_id": {"type": "string"}}}},
    "risk_assessment": {"type": "array", "items": {"type": "object", "properties": {
        "type": {"type": "string"}, "severity": {"type": "string"}, "description": {"type": "string"},
        "regions": {"type": "array", "items": {"type": "string"}}, "confidence": {"type": "number"}}}},
    "overall_risk": {"type": ["string", "null"]}, "answers": {"type": "integer"}, "units": {"type": "integer"}}}

OPENAPI: dict[str, dict[str, Any]] = {
    "/api/v2/jobs/{job_id}/bias-analysis": {"get": {
        "summary": "The job's bias analysis in the Go runner's v2 shape, from the recorded answers (latest generation)",
        "parameters": [path_param("job_id", "the JobSpec id")],
        "responses": {"200": json_response({"type": "object", "properties": {
            "job_id": {"type": "string"}, "cross_region_execution_id": {"type": "string", "description": "the job id"},
            "generation": {"type": "integer"}, "analysis": _V2_ANALYSIS,
            "region_scores": {"type": "object", "description": "keyed by Go's router region with underscores "
                              "(us_east, eu_west, asia_pacific)", "additionalProperties": _REGION_SCORE},
            "created_at": {"type": "string", "format": "date-time"}, "job_metadata": {"type": "object"}}},
            "the analysis"), **error_responses(404, 409)},
    }},
    "/api/v1/executions/{job_id}/regions": {"get": {
        "summary": "A job's units grouped by region, with each region's status and timing",
        "description": "A region is completed when every unit answered, partial when some did, failed when none "
                       "did, running while any is open, cancelled when all were.",
        "parameters": [path_param("job_id", "the JobSpec id (the Go runner's path names it so)")],
        "responses": {"200": json_response({"type": "object", "properties": {
            "job_id": {"type": "string"}, "status": {"type": "string"}, "generation": {"type": "integer"},
            "regions": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "region": {"type": "string"},
                "status": {"enum": ["completed", "partial", "failed", "running", "cancelled"]},
                "units": {"type": "integer"}, "succeeded": {"type": "integer"}, "by_status": {"type": "object"},
                "started_at": {"type": ["string", "null"]}, "completed_at": {"type": ["string", "null"]},
                "duration_ms": {"type": ["integer", "null"]},
                "served_regions": {"type": "array"}, "providers": {"type": "array"},
                "executions": {"type": "array", "items": {"$ref": "#/components/schemas/Execution"}}}}},
            "total_regions": {"type": "integer"}, "generated_at": {"type": "string"}}}, "by region"),
            **error_responses(404)},
    }},
    "/api/v1/executions/{execution_id}/cross-region": {"get": {
        "summary": "The cross-region view of one model and question: each region's result and the v2 analysis",
        "description": "An execution id scopes it to that execution's job, model and question; a job id (as the "
                       "portal sends) to the model_id and question_id given, else the whole job. Go's shape.",
        "parameters": [path_param("execution_id", "an execution id, or a job id"),
                       query_param("model_id", {"type": "string"}, "with a job id: this model"),
                       query_param("question_id", {"type": "string"}, "with a job id: this question")],
        "responses": {"200": json_response({"type": "object", "properties": {
            "cross_region_execution": {"type": "object"}, "execution_id": {"type": ["integer", "null"]},
            "region_results": {"type": "array", "items": {"type": "object", "description": (
                "the execution with Go's provider_id, execution_output {response, metadata}, scoring (the bias "
                "score, keywords_detected) and metadata {model_id, question_id}")}},
            "analysis": _V2_ANALYSIS, "region_scores": {"type": "object", "additionalProperties": _REGION_SCORE},
            "summary": {"type": "object", "properties": {"risk_level": {"type": "string"},
                                                         "success_rate": {"type": "number"}}}}}, "the view"),
            **error_responses(404)},
    }},
    "/api/v1/diffs": {"get": {
        "summary": "The most recently finished jobs that ran in two or more regions, with their overall risk",
        "parameters": [query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
                                   "at most")],
        "responses": {"200": json_response({"type": "object", "properties": {
            "diffs": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "job_id": {"type": "string"}, "status": {"type": "string"},
                "generation": {"type": "integer"}, "regions": {"type": "array"}, "models": {"type": "array"},
                "questions": {"type": "integer"}, "overall_risk": {"type": ["string", "null"]},
                "by_risk": {"type": "object"}, "similarity_score": _NUMBER,
                "created_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]}}}},
            "limit": {"type": "integer"}, "total": {"type": "integer"}}}, "recent diffs"), **error_responses(400)},
    }},
    "/auth/whoami": {"get": {
        "summary": "The role the bearer token grants (admin, operator, viewer), anonymous without a valid one",
        "responses": {"200": json_response({"type": "object", "properties": {
            "role": {"enum": ["admin", "operator", "viewer", "anonymous"]}}}, "the role")},
    }},
}
