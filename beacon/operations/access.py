"""Role tokens (viewer < operator < admin), compared in constant time."""

from __future__ import annotations

import hmac

from beacon.errors import Forbidden, Unauthorized
from beacon.settings import Settings

ROLES = ("viewer", "operator", "admin")


def role_for_token(settings: Settings, token: str | None) -> str | None:
    """The highest role the token grants, or None. Every configured token is compared."""
    if not token:
        return None
    found = None
    for role, tokens in (("viewer", settings.viewer_tokens), ("operator", settings.operator_tokens),
                         ("admin", settings.admin_tokens)):
        for candidate in tokens:
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = role
    return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_role(settings: Settings, authorization: str | None, minimum: str) -> str:
    """The caller's role when it is at least ``minimum``; 401 without a valid token, 403 below it."""
    role = role_for_token(settings, bearer_token(authorization))
    if role is None:
        raise Unauthorized("unauthorized", "a valid Bearer token is required")
    if ROLES.index(role) < ROLES.index(minimum):
        raise Forbidden("forbidden", f"this action needs the {minimum} role; the token grants {role}")
    return role
