"""Every error answers with the envelope ``{"error", "error_code", "details"?}``, no stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from beacon.errors import ApiError

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def envelope(error: ApiError):
    return jsonify(error.to_dict()), error.status


def register(flask_app: Flask) -> None:
    @flask_app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return envelope(error)

    @flask_app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge):
        limit = flask_app.config["MAX_CONTENT_LENGTH"]
        return envelope(ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes"))

    @flask_app.errorhandler(DBAPIError)
    def _database(error: DBAPIError):
        if not error.connection_invalidated and not _is_unreachable(error):
            raise error
        log.error("database unreachable", extra={"error": str(error.orig)})
        return envelope(ApiError(503, "service_unavailable", "the database is unreachable; try again later"))

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
