"""The one Redis client factory.

Request-path clients (rate limits, events published from a request or a task, health checks)
fail fast: connect and socket timeouts of :data:`REQUEST_PATH_TIMEOUT_SECONDS` and no retry,
so a hung Redis costs a request no more than a dead one. The API's broker publish and the API
rate limit use the same bound. It is 0.1 s, well under the 0.25 s any one call may take, because
one request can meet three clients probing a hung Redis at once (the rate limit, the
signature-failure counters, the publish), and a submission's p99 must stay under 0.5 s then.
A subscriber that waits for messages asks for ``timeout=None``.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REQUEST_PATH_TIMEOUT_SECONDS = 0.1


@lru_cache(maxsize=16)
def redis_client(url: str, timeout: float | None = REQUEST_PATH_TIMEOUT_SECONDS) -> redis.Redis:
    """A pooled client for ``url`` (one per URL and timeout in the process)."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout or None,
                                retry=Retry(NoBackoff(), 0))
