"""Operations: request ids and HTTP metrics for every request, ``/metrics``, ``/admin/test-sentry``."""

from __future__ import annotations

import re
import time
import uuid

import sentry_sdk
from flask import Blueprint, Response, g, request
from flask.typing import ResponseReturnValue

from app.errors import ApiError
from app.openapi import error_responses
from app.services import services
from beacon.logs import bind, log_context
from beacon.observability import metrics
from beacon.observability.collectors import BrokerCollector, DatabaseCollector
from beacon.observability.sentry import capture_test_exception
from beacon.operations import admin

bp = Blueprint("ops", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

METRICS = {
    "get": {
        "summary": "Prometheus metrics of the API processes, the outbox, the jobs and the queues",
        "description": "Served by `beacon api` on its metrics listener (METRICS_PORT, 9091), never on the "
                       "public port, which answers 404 here.",
        "responses": {"200": {"description": "text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
}

OPENAPI = {
    "/metrics": METRICS,
    "/api/v1/metrics": {"get": {**METRICS["get"], "summary": "The same as /metrics (the Go runner's alias)"}},
    "/admin/test-sentry": {
        "post": {
            "summary": "Raise a test exception and report it to Sentry",
            "description": "Needs `Authorization: Bearer <admin token>`. Answers 500 with the Sentry event id in "
                           "`details.event_id` (null when SENTRY_DSN is not set).",
            "responses": {**error_responses(401, 403, 500)},
        },
    },
}


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@bp.before_app_request
def _start_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id(request.headers.get(REQUEST_ID_HEADER))
    g.log_token = bind(request_id=g.request_id)
    sentry_sdk.set_tag("request_id", g.request_id)


@bp.after_app_request
def _finish_request(response: Response) -> Response:
    if "request_id" in g:
        response.headers[REQUEST_ID_HEADER] = g.request_id
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.observe_http(request.method, route, response.status_code, time.perf_counter() - g.request_started)
    return response


@bp.teardown_app_request
def _end_request(_error: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        log_context.reset(token)


@bp.get("/metrics")
@bp.get("/api/v1/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    found = services()
    body = metrics.exposition([DatabaseCollector(found.settings), BrokerCollector(found.settings, found.celery)])
    return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE})


@bp.post("/admin/test-sentry")
def test_sentry() -> ResponseReturnValue:
    actor = admin.authorize(services().settings, request.headers.get("Authorization"), "admin", "test-sentry")
    event_id = capture_test_exception("POST /admin/test-sentry")
    actor.log("test-sentry", outcome="sent" if event_id else "sentry_disabled", event_id=event_id)
    message = "test exception reported to Sentry" if event_id else "test exception raised; Sentry is disabled"
    raise ApiError(500, "sentry_test", message, {"event_id": event_id})
