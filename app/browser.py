"""Browser access: CORS for the portal's origins (flask-cors) and security headers on every response.

``CORS_ALLOWED_ORIGINS`` entries reach flask-cors only as compiled, anchored patterns that we
build here: flask-cors reads a string holding ``*`` as an unanchored regular expression, so
``https://*.netlify.app`` given to it raw would also admit ``https://anetlify.app.evil.com``.
In our patterns ``*`` is one DNS label (``[a-z0-9-]+``, never a dot), and scheme and port are
exact. A preflight answers 204.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request
from flask_cors import CORS

from app.ops import REQUEST_ID_HEADER
from beacon.settings import Settings

LABEL = "[a-z0-9-]+"
ALLOWED_HEADERS = ("Content-Type", "Authorization", "Idempotency-Key", REQUEST_ID_HEADER)
EXPOSED_HEADERS = (REQUEST_ID_HEADER, "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                   "X-RateLimit-Reset")
METHODS = ("GET", "HEAD", "POST", "OPTIONS")
PREFLIGHT_MAX_AGE_SECONDS = 600

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'",
}
HSTS = "max-age=31536000; includeSubDomains"


def origin_pattern(origin: str) -> str:
    """The anchored regular expression of one normalised origin (``beacon.settings._origin``):
    ``https://*.netlify.app`` becomes ``^https://[a-z0-9-]+\\.netlify\\.app$``."""
    return "^" + LABEL.join(re.escape(part) for part in origin.split("*")) + "$"


def compiled_origins(origins: tuple[str, ...]) -> list[re.Pattern[str]]:
    """Every allowed origin as a compiled pattern: flask-cors never sees a string it would guess about."""
    return [re.compile(origin_pattern(origin), re.IGNORECASE) for origin in origins]


def is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def init_app(flask_app: Flask, settings: Settings) -> None:
    flask_app.after_request(_security_headers(settings.production))
    flask_app.after_request(_preflight_no_content)
    if settings.cors_allowed_origins:
        flask_app.after_request(_vary_on_origin)  # registered before CORS, so it runs after it
        CORS(
            flask_app,
            resources={r"/*": {}},
            origins=compiled_origins(settings.cors_allowed_origins),
            methods=list(METHODS),
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            supports_credentials=False,
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
            always_send=False,  # nothing for a request without Origin
            vary_header=True,
        )


def _preflight_no_content(response: Response) -> Response:
    """A preflight that Flask answered itself (200, empty) answers 204 No Content."""
    if is_preflight() and response.status_code == 200:
        response.status_code = 204
        response.set_data(b"")
        response.headers.pop("Content-Type", None)
    return response


def _vary_on_origin(response: Response) -> Response:
    """Every answer depends on Origin, also one without CORS headers (flask-cors marks only those it grants),
    so a cache never hands a refused origin's answer to the portal."""
    if "origin" not in ",".join(response.headers.getlist("Vary")).lower():
        response.headers.add("Vary", "Origin")
    return response


def _security_headers(production: bool):
    def add(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if production:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return add
