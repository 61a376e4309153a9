"""Every error answers with the envelope ``{"error", "error_code", "details"?}``, no stack trace.

The core raises domain errors (``beacon.errors``); this module alone knows their HTTP status.
A fault of the server (an unexpected exception, a database error other than "unreachable", a
5xx werkzeug raises) answers 500 ``internal_error`` whose only detail is the request id, so the
caller can quote it and operators find the logged traceback (and the Sentry event) by it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from beacon import errors

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limit_exceeded",
}
# Headers of a werkzeug HTTPException the envelope keeps (405's Allow, 429's Retry-After, ...).
_BODY_HEADERS = {"content-type", "content-length"}

#: Most specific first: the first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.Invalid, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.TooLarge, 413),
    (errors.UnsupportedMedia, 415),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
    (errors.Corrupt, 500),
)


class RequestBodyTimeout(TimeoutError):
    """The request body did not arrive within API_BODY_TIMEOUT_SECONDS (raised by app.serving's reader)."""

    def __init__(self, seconds: float):
        super().__init__(f"the request body did not arrive within {seconds:g} s")
        self.seconds = seconds


class ApiError(errors.DomainError):
    """An error raised by a view itself, with its HTTP status (the core never raises these)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(code, message, details)
        self.status = status


def status_of(error: errors.DomainError) -> int:
    if isinstance(error, ApiError):
        return error.status
    return next((status for cls, status in STATUS if isinstance(error, cls)), 500)


def envelope(error: errors.DomainError):
    return jsonify(error.to_dict()), status_of(error)


def internal_error():
    """500 ``internal_error`` with the request id and nothing else."""
    request_id = g.get("request_id")
    return envelope(ApiError(500, "internal_error", "internal server error",
                             {"request_id": request_id} if request_id else None))


def register(flask_app: Flask) -> None:
    @flask_app.errorhandler(errors.DomainError)
    def _domain_error(error: errors.DomainError):
        return envelope(error)

    @flask_app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge):
        limit = flask_app.config["MAX_CONTENT_LENGTH"]
        return envelope(errors.TooLarge("payload_too_large", f"request body exceeds {limit} bytes"))

    @flask_app.errorhandler(DBAPIError)
    def _database(error: DBAPIError):
        if error.connection_invalidated or _is_unreachable(error):
            log.error("database unreachable", extra={"error": str(error.orig)})
            return envelope(errors.Unavailable("service_unavailable", "the database is unreachable; try again later"))
        log.exception("database error")
        return internal_error()

    @flask_app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        cause = error.__cause__ or error.__context__  # werkzeug raises it while handling the reader's error
        if isinstance(error, ClientDisconnected) and isinstance(cause, RequestBodyTimeout):
            return envelope(ApiError(408, "request_timeout", str(cause)))
        status = error.code or 500
        if status >= 500:
            if status == 503:
                return envelope(errors.Unavailable("service_unavailable", "the service is unavailable; try again later"))
            # Flask wraps an exception that escaped every handler in InternalServerError.
            original = getattr(error, "original_exception", None)
            log.error("unhandled error", exc_info=original or error)
            return internal_error()
        response, _ = envelope(ApiError(status, HTTP_CODES.get(status, "http_error"), error.description or error.name))
        for name, value in error.get_headers():
            if name.lower() not in _BODY_HEADERS:
                response.headers[name] = value
        return response, status

    @flask_app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return internal_error()


def _is_unreachable(error: DBAPIError) -> bool:
    return isinstance(error, (OperationalError, InterfaceError))
