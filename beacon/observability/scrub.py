"""Secret and PII scrubbing for Sentry events, applied after sentry's own EventScrubber.

Keys that name a secret lose their value wherever they appear (headers, request body, frame
local variables, breadcrumb data, extra); configured secret values, bearer/basic credentials and
URL passwords are cut out of every string, so a secret that sits under an innocent name (a
local ``candidate`` in a token comparison, a log message) does not leave either.
"""

from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import urlsplit

FILTERED = "[Filtered]"

# Substrings of key names (lower case, "-" read as "_") whose values are secrets.
SECRET_KEY_PARTS = (
    "authorization", "cookie", "token", "secret", "password", "passwd", "api_key", "apikey",
    "private_key", "signing_key", "credential", "basic_auth", "dsn",
)
# sentry's EventScrubber matches whole keys only; these extend its default denylist.
DENYLIST_EXTRA = ["http_authorization", "http_cookie", "x_api_key", "x-api-key", "api-key", "admin_tokens",
                  "operator_tokens", "viewer_tokens", "tokens", "flower_basic_auth", "sentry_dsn", "database_url"]

# Request headers that identify the client; sent only when SENTRY_SEND_PII is true.
PII_HEADERS = frozenset({"user-agent", "x-forwarded-for", "x-real-ip", "fly-client-ip", "forwarded"})
PII_ENV = frozenset({"REMOTE_ADDR"})

_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{4,}")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")


def key_is_secret(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def url_password(url: str | None) -> str | None:
    if not url or "@" not in url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Scrubber:
    """Replaces secrets in a (serialized, JSON-like) event; ``secrets`` are exact values to cut out."""

    def __init__(self, secrets: Iterable[str | None]):
        # Longest first, so a secret that contains another is cut whole; very short values are
        # left alone (they would shred ordinary text and are not credentials anyone should use).
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        value = _CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}{FILTERED}", value)
        return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{FILTERED}@", value)

    def scrub(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {key: FILTERED if isinstance(key, str) and key_is_secret(key) and node[key] not in (None, "")
                    else self.scrub(node[key]) for key in node}
        if isinstance(node, list):
            return [self.scrub(item) for item in node]
        if isinstance(node, str):
            return self.text(node)
        return node


def strip_pii(event: dict[str, Any]) -> dict[str, Any]:
    """Remove the client's IP address and user agent from an event."""
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() not in PII_HEADERS}
        env = request.get("env")
        if isinstance(env, dict):
            request["env"] = {k: v for k, v in env.items() if k not in PII_ENV}
    user = event.get("user")
    if isinstance(user, dict):
        user.pop("ip_address", None)
        if not user:
            event.pop("user")
    return event
