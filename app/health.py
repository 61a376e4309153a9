"""Health: liveness, readiness (the database only) and per-dependency status, also under /api/v1.

``/health/ready`` answers 503 only when the database is unreachable: ingest works without
Redis, so a Redis or broker outage shows as ``degraded`` in ``/health`` (still 200) and never
takes the API out of the load balancer.
"""

from flask import Blueprint, jsonify

from app.openapi import error_responses, json_response
from app.services import services
from beacon import __version__
from beacon.errors import Unavailable
from beacon.observability import health

bp = Blueprint("health", __name__)

CHECK = {"type": "object", "properties": {
    "status": {"enum": ["ok", "down", "not_configured"]},
    "latency_ms": {"type": ["number", "null"]},
    "error": {"type": "string", "description": "exception type of a failed check"},
}}
HEALTH = {"type": "object", "properties": {
    "status": {"enum": ["ok", "degraded", "unavailable"]},
    "version": {"type": "string"},
    "checks": {"type": "object", "properties": {name: CHECK for name in ("database", "redis", "broker")}},
    "services": {"type": "array", "description": (
        "the Go runner's shape, which the portal reads: database, redis, broker and ipfs (the IPFS node "
        "never changes the overall status: pins are retried)"),
        "items": {"type": "object", "properties": {
            "name": {"enum": ["database", "redis", "broker", "ipfs"]},
            "status": {"enum": ["healthy", "unhealthy", "not_configured"]},
            "latency_ms": {"type": ["number", "null"]}}}},
}}
LIVE = {"get": {"summary": "The process is up", "responses": {"200": json_response({"type": "object"}, "alive")}}}
READY = {"get": {
    "summary": "Ready for traffic: 503 only when the database is unreachable",
    "responses": {
        "200": json_response({"type": "object", "properties": {"status": {"const": "ready"}, "checks": {
            "type": "object", "properties": {"database": CHECK}}}}, "the database answers"),
        **error_responses(503),
    },
}}
FULL = {"get": {
    "summary": "Each dependency's status and latency; degraded (200) when Redis or the broker is down",
    "responses": {"200": json_response(HEALTH, "ok or degraded"), "503": json_response(HEALTH, "database down")},
}}

OPENAPI = {
    "/health/live": LIVE, "/api/v1/health/live": LIVE,
    "/health/ready": READY, "/api/v1/health/ready": READY,
    "/health": FULL, "/api/v1/health": FULL,
}


@bp.get("/health/live")
@bp.get("/api/v1/health/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
@bp.get("/api/v1/health/ready")
def ready():
    check = health.check_database(services().settings.database_url)
    if not check.ok:
        raise Unavailable("service_unavailable", "the database is unreachable", {"checks": {"database": check.to_dict()}})
    return jsonify({"status": "ready", "checks": {"database": check.to_dict()}})


@bp.get("/health")
@bp.get("/api/v1/health")
def full():
    settings = services().settings
    status, checks = health.report(settings)
    body = {"status": status, "version": __version__, "checks": {name: c.to_dict() for name, c in checks.items()},
            "services": health.services({**checks, "ipfs": health.check_ipfs(settings.ipfs_api_url)})}
    return jsonify(body), 503 if status == "unavailable" else 200
