"""The one Redis client factory.

Request-path clients (rate limits, events published from a request or a task, health checks)
fail fast: connect and socket timeouts of :data:`REQUEST_PATH_TIMEOUT_SECONDS` and no retry,
so a hung Redis costs a request a quarter of a second, like a dead one. A subscriber that
waits for messages asks for ``timeout=None``.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REQUEST_PATH_TIMEOUT_SECONDS = 0.25


@lru_cache(maxsize=16)
def redis_client(url: str, timeout: float | None = REQUEST_PATH_TIMEOUT_SECONDS) -> redis.Redis:
    """A pooled client for ``url`` (one per URL and timeout in the process)."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout or None,
                                retry=Retry(NoBackoff(), 0))
