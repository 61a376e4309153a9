"""Domain errors: what went wrong, in the core's words. No HTTP here.

Each error carries a stable ``code`` (the envelope's ``error_code``), a message and optional
details. ``app/errors.py`` maps each class to its HTTP status and renders the envelope
``{"error", "error_code", "details"?}``; workers and the CLI catch them by class.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a client can be told about."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "error_code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class Invalid(DomainError):
    """The input is wrong (schema, signature, timestamp, trust, replay, …)."""


class ValidationError(Invalid):
    """A JobSpec (or other input) that does not match its schema."""

    def __init__(self, message: str, field: str | None = None, missing: bool = False):
        code = f"missing_field:{field}" if missing and field else "validation_error"
        super().__init__(code, message, {"field": field} if field is not None else None)
        self.field = field


class Unauthorized(DomainError):
    """No usable credentials."""


class Forbidden(DomainError):
    """Credentials that do not allow this."""


class NotFound(DomainError):
    """No such thing."""


class Conflict(DomainError):
    """The request conflicts with what is stored (an id or key already taken)."""


class InvalidState(Conflict):
    """The thing exists but is not in a state that allows the action."""


class TooLarge(DomainError):
    """The input exceeds a size limit."""


class UnsupportedMedia(DomainError):
    """The input is not in a format we read."""


class RateLimited(DomainError):
    """Too many attempts; try again later."""


class Unavailable(DomainError):
    """A dependency we need is down; try again later."""


class Corrupt(DomainError):
    """Data we hold (evidence, a configuration file) failed its own check: our fault, never the client's."""


def not_found(what: str, ident: Any) -> NotFound:
    return NotFound("not_found", f"{what} {ident!s} not found")
