"""The admin API under /admin: role tokens (viewer < operator < admin), every action logged."""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, jsonify, request

from app.openapi import error_responses, json_response, path_param, query_param
from app.services import services
from beacon.errors import DomainError, ValidationError
from beacon.ids import bigint
from beacon.ingest.rawjson import parse_optional_body
from beacon.messaging.outbox import celery_publisher
from beacon.operations import admin
from beacon.resources.jobs import page_limit

bp = Blueprint("admin", __name__, url_prefix="/admin")

def _doc(summary: str, role: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": f"Needs `Authorization: Bearer <token>` of the {role} role or above.",
            "responses": {"200": ok, **error_responses(401, 403, *errors)}, **extra}


OPENAPI: dict[str, dict[str, Any]] = {
    "/admin/queues": {"get": _doc(
        "Queue depths, outbox backlog and dead letters", "viewer",
        json_response({"type": "object", "properties": {
            "queues": {"type": "object", "additionalProperties": {"type": ["integer", "null"]},
                       "description": "messages waiting per queue; null when the broker is unreachable"},
            "broker_reachable": {"type": "boolean"},
            "outbox": {"type": "object", "properties": {"unpublished": {"type": "integer"},
                                                        "oldest_age_seconds": {"type": ["number", "null"]}}},
            "dead_letters": {"type": "integer", "description": "units failed with failure.code poison"},
        }}, "the overview"),
    )},
    "/admin/jobs/stuck": {"get": _doc(
        "Jobs queued or running for longer than N minutes, oldest first", "viewer",
        json_response({"type": "object", "properties": {"minutes": {"type": "integer"},
                                                        "jobs": {"type": "array", "items": {"type": "object"}}}},
                      "the stuck jobs"),
        400,
        parameters=[
            query_param("minutes", {"type": "integer", "minimum": 1, "maximum": admin.MAX_STUCK_MINUTES,
                                    "default": 30}, "how long counts as stuck"),
            query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "at most"),
        ],
    )},
    "/admin/jobs/{job_id}/republish": {"post": _doc(
        "Send run_job again (queued job) or its pending and lease-expired units (running job)", "operator",
        json_response({"type": "object", "properties": {
            "id": {"type": "string"}, "status": {"type": "string"}, "messages": {"type": "integer"},
            "published": {"type": "integer", "description": "sent now; the rest follow via the outbox relay"},
            "units": {"type": "integer"}}}, "republished"),
        404, 409,
        parameters=[path_param("job_id", "the JobSpec id")],
    )},
    "/admin/jobs/{job_id}/emergency-stop": {"post": _doc(
        "Fail a job that is not terminal, with its open units, in one transaction", "admin",
        json_response({"type": "object", "properties": {
            "id": {"type": "string"}, "status": {"const": "failed"}, "previous_status": {"type": "string"},
            "units_failed": {"type": "integer"}, "status_reason": {"type": "string"}}}, "stopped"),
        400, 404, 409,
        parameters=[path_param("job_id", "the JobSpec id")],
        requestBody={"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["reason"],
            "properties": {"reason": {"type": "string", "maxLength": admin.MAX_REASON_CHARS}}}}}},
    )},
    "/admin/trusted-keys/reload": {"post": _doc(
        "Re-read TRUSTED_KEYS_FILE in the API process that answers (each also reloads on file change)", "admin",
        json_response({"type": "object", "properties": {"path": {"type": "string"}, "keys": {"type": "integer"}}},
                      "reloaded"),
        409, 500,
    )},
}


def admin_action(minimum: str, name: str):
    """Authorise the caller (at least ``minimum``), run the view, log the outcome with who did it.

    The view gets the actor and returns (body, extra log fields).
    """

    def wrap(view):
        @functools.wraps(view)
        def run(**path: str):
            actor = admin.authorize(services().settings, request.headers.get("Authorization"), minimum, name)
            try:
                body, fields = view(actor, **path)
            except DomainError as error:
                actor.log(name, outcome=error.code, **path)
                raise
            actor.log(name, outcome="ok", **path, **fields)
            return jsonify(body)

        return run

    return wrap


def _minutes(raw: str | None) -> int:
    if raw is None:
        return 30
    minutes = bigint(raw)  # ASCII digits only: "²" passes str.isdigit but not int()
    if minutes is None or not 1 <= minutes <= admin.MAX_STUCK_MINUTES:
        raise ValidationError(f"minutes must be an integer from 1 to {admin.MAX_STUCK_MINUTES}", "minutes")
    return minutes


@bp.get("/queues")
@admin_action("viewer", "queues")
def queues(actor: admin.Actor):
    svc = services()
    return admin.overview(svc.db, svc.celery, svc.settings), {}


@bp.get("/jobs/stuck")
@admin_action("viewer", "stuck")
def stuck(actor: admin.Actor):
    minutes, limit = _minutes(request.args.get("minutes")), page_limit(request.args.get("limit"))
    result = admin.stuck_jobs(services().db, minutes, limit)
    return result, {"minutes": minutes, "jobs": len(result["jobs"])}


@bp.post("/jobs/<job_id>/republish")
@admin_action("operator", "republish")
def republish(actor: admin.Actor, job_id: str):
    svc = services()
    result = admin.republish(svc.db, celery_publisher(svc.celery), job_id)
    return result, {"job_status": result["status"], "messages": result["messages"]}


@bp.post("/jobs/<job_id>/emergency-stop")
@admin_action("admin", "emergency_stop")
def emergency_stop(actor: admin.Actor, job_id: str):
    # The body is read only now, after admin_action has authorised the caller.
    reason = admin.reason_from(parse_optional_body(request.get_data(cache=False)))
    svc = services()
    result = admin.emergency_stop(svc.db, svc.settings, job_id, reason, actor)
    return result, {"reason": reason, "previous_status": result["previous_status"],
                    "units_failed": result["units_failed"]}


@bp.post("/trusted-keys/reload")
@admin_action("admin", "reload_trusted_keys")
def reload_trusted_keys(actor: admin.Actor):
    result = admin.reload_trusted_keys(services().trust)
    return result, {"keys": result["keys"]}
