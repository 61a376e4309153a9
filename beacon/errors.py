"""The API error envelope: ``{"error", "error_code", "details"?}`` with its HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API answers with its envelope. Raised by services, rendered by the app."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "error_code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class ValidationError(ApiError):
    """A JobSpec (or other input) that does not match its schema."""

    def __init__(self, message: str, field: str | None = None, missing: bool = False):
        code = f"missing_field:{field}" if missing and field else "validation_error"
        super().__init__(400, code, message, {"field": field} if field else None)
        self.field = field


def not_found(what: str, ident: Any) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!s} not found")
