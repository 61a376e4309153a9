"""Signature-failure rate limit: counters in Redis, failing open when Redis is unreachable.

Fixed one-minute windows per client IP and per public key. While Redis is down the limiter
lets requests through (ingest must keep working) and does not retry Redis for a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from beacon.redis_clients import redis_client

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
RETRY_AFTER_OUTAGE_SECONDS = 5.0


class SignatureFailureLimiter:
    def __init__(self, redis_url: str | None, per_ip: int, per_key: int):
        self.per_ip = per_ip
        self.per_key = per_key
        self._client = redis_client(redis_url) if redis_url else None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _keys(self, ip: str, public_key: str) -> tuple[str, str]:
        window = int(time.time() // WINDOW_SECONDS)
        return f"beacon:sigfail:ip:{ip}:{window}", f"beacon:sigfail:key:{public_key}:{window}"

    def _available(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _outage(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE_SECONDS
        log.warning("rate limit counters unavailable, failing open: %s", exc)

    def blocked(self, ip: str, public_key: str) -> str | None:
        """Which limit (``ip`` or ``key``) this client is over, or None."""
        if not self._available():
            return None
        ip_key, pk_key = self._keys(ip, public_key)
        try:
            ip_count, key_count = self._client.mget(ip_key, pk_key)
        except redis.RedisError as exc:
            self._outage(exc)
            return None
        if ip_count is not None and int(ip_count) >= self.per_ip:
            return "ip"
        if key_count is not None and int(key_count) >= self.per_key:
            return "key"
        return None

    def record_failure(self, ip: str, public_key: str) -> None:
        if not self._available():
            return
        try:
            pipe = self._client.pipeline()
            for key in self._keys(ip, public_key):
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS * 2)
            pipe.execute()
        except redis.RedisError as exc:
            self._outage(exc)
