"""Every error answers with the envelope ``{"error", "error_code", "details"?}``, no stack trace.

The core raises domain errors (``beacon.errors``); this module alone knows their HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from beacon import errors

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}

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
        if not error.connection_invalidated and not _is_unreachable(error):
            raise error
        log.error("database unreachable", extra={"error": str(error.orig)})
        return envelope(errors.Unavailable("service_unavailable", "the database is unreachable; try again later"))

    @flask_app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        code = HTTP_CODES.get(error.code or 500, "http_error")
        return envelope(ApiError(error.code or 500, code, error.description or error.name))

    @flask_app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return envelope(ApiError(500, "internal_error", "internal server error"))


def _is_unreachable(error: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(error, (OperationalError, InterfaceError))
