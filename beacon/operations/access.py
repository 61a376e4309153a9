"""Who may act: role tokens (viewer < operator < admin), compared in constant time, and the
one "who did it" record (:class:`Actor`) that admin actions and signed requests share."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from beacon.errors import Forbidden, Unauthorized
from beacon.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a token or key, safe to log."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Actor:
    """Who did it: a role token (``kind="role"``, ``name`` the role) or the key that signed the
    request (``kind="key"``, ``name`` the public key). ``fingerprint`` names the credential in logs."""

    kind: str
    name: str
    fingerprint: str

    @classmethod
    def for_role(cls, role: str, token: str) -> "Actor":
        return cls("role", role, fingerprint(token))

    @classmethod
    def for_key(cls, public_key: str) -> "Actor":
        return cls("key", public_key, fingerprint(public_key))

    @property
    def role(self) -> str | None:
        return self.name if self.kind == "role" else None

    def log(self, action: str, **fields: Any) -> None:
        log.info("admin action", extra={"action": action, "actor": self.kind, "role": self.role,
                                        "token_fingerprint": self.fingerprint, **fields})


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
