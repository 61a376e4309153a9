"""A rate limit per client on the whole API (Flask-Limiter), counted in Redis, failing open.

``RATE_LIMIT_DEFAULT`` (``600/minute``; ``off`` disables it) is one moving window per client
(:func:`app.client.client_address`) shared by every route. Health, ``/metrics``, the ``/ws``
handshake and CORS preflights are never counted. The counters live in the Redis of
``RATE_LIMIT_REDIS_URL`` (in memory, per process, on the embedded default).

Redis down or hung never stops a request: the client connects and reads with
:data:`~beacon.redis_clients.REQUEST_PATH_TIMEOUT_SECONDS` timeouts and no retry, the first
failure switches the limiter to in-memory counters (per process, same limit), and it probes
Redis again only with an exponential backoff (1, 2, 4 … 32 s), so a hung Redis costs one request
at most a timeout now and then instead of every request; errors are swallowed either way.

A 429 is the error envelope (``rate_limit_exceeded``) with ``Retry-After`` and the
``X-RateLimit-*`` headers, which every counted response carries.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.browser import is_preflight
from app.client import client_address
from app.errors import envelope
from beacon.errors import RateLimited
from beacon.redis_clients import REQUEST_PATH_TIMEOUT_SECONDS
from beacon.settings import Settings

STRATEGY = "moving-window"
KEY_PREFIX = "beacon:ratelimit"
EXTENSION = "beacon.limiter"
#: Routes never counted (Flask rules): health for the load balancer, metrics for the scraper,
#: the WebSocket handshake (one long-lived connection, not a request rate).
EXEMPT_RULES = frozenset({
    "/health", "/health/live", "/health/ready",
    "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready",
    "/metrics", "/api/v1/metrics", "/ws",
})


def storage(settings: Settings) -> tuple[str, dict]:
    """(storage URI, storage options) for Flask-Limiter: Redis with short timeouts, else memory."""
    if not settings.rate_limit_redis_url:
        return "memory://", {}
    return settings.rate_limit_redis_url, {
        "socket_connect_timeout": REQUEST_PATH_TIMEOUT_SECONDS,
        "socket_timeout": REQUEST_PATH_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),  # redis-py retries 3 times by default: 4 timeouts, not one
        "key_prefix": KEY_PREFIX,
    }


def exempt() -> bool:
    rule = request.url_rule
    return is_preflight() or (rule is not None and rule.rule in EXEMPT_RULES)


def init_app(flask_app: Flask, settings: Settings) -> Limiter | None:
    """Install the limiter (None when RATE_LIMIT_DEFAULT is off). Call after the blueprints, so the
    request id is set before a 429 is answered."""
    flask_app.register_error_handler(RateLimitExceeded, _rate_limited)
    flask_app.after_request(_retry_after_only_when_limited)
    if settings.rate_limit_default is None:
        return None
    uri, options = storage(settings)
    limiter = Limiter(
        client_address,
        app=flask_app,
        application_limits=[settings.rate_limit_default],
        storage_uri=uri,
        storage_options=options,
        strategy=STRATEGY,
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        retry_after="delta-seconds",
    )
    limiter.request_filter(exempt)
    flask_app.extensions[EXTENSION] = limiter
    return limiter


def _rate_limited(error: RateLimitExceeded):
    details = {"limit": str(error.limit.limit)}
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    current = limiter.current_limit if limiter is not None else None
    retry_after = None
    if current is not None:
        try:
            retry_after = max(1, int(current.reset_at - time.time()))  # as Flask-Limiter's header
        except Exception:  # the storage went away since the hit: still a 429, without the hint
            retry_after = None
    if retry_after is not None:
        details["retry_after_seconds"] = retry_after
    response, status = envelope(RateLimited("rate_limit_exceeded", "too many requests; slow down", details))
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response, status


def _retry_after_only_when_limited(response: Response) -> Response:
    """Flask-Limiter writes Retry-After on every counted response; it means something only on a 429 (or 503).
    It also rounds down, so a window about to reset would say 0: a 429 asks for at least a second."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    elif response.status_code == 429 and response.headers.get("Retry-After", "").isdigit():
        response.headers["Retry-After"] = str(max(1, int(response.headers["Retry-After"])))
    return response
