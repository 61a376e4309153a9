"""Signature-failure rate limit: counters in Redis, failing open when Redis is unreachable.

Fixed one-minute windows, two counters per failure:

* per client address (``RATE_LIMIT_IP_PER_MINUTE``): one address trying many keys;
* per (public key, client address) pair (``RATE_LIMIT_KEY_PER_MINUTE``): one address hammering
  one key. A key alone is never counted: public keys are public (``GET /api/v1/jobs`` shows every
  submitter's), so a per-key counter would let anyone lock a key's owner out from anywhere with a
  few forged requests. A failure counts only against the address it came from, which is the
  only failure that could have been the key holder's own.

The client address is :func:`app.client.client_address` (a trusted proxy's header, else the
peer). While Redis is down the limiter lets requests through (ingest must keep working) and does
not retry Redis for a few seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import redis

from beacon.redis_clients import redis_client

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
RETRY_AFTER_OUTAGE_SECONDS = 5.0


def _pair(public_key: str, ip: str) -> str:
    """A fixed-length name for a (key, address) pair (keys are attacker-chosen strings)."""
    return hashlib.sha256(f"{public_key}\n{ip}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SignatureFailureLimiter:
    def __init__(self, redis_url: str | None, per_ip: int, per_key: int):
        self.per_ip = per_ip
        self.per_key = per_key  # per (key, address) pair
        self._client = redis_client(redis_url) if redis_url else None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _keys(self, ip: str, public_key: str) -> tuple[str, str]:
        window = int(time.time() // WINDOW_SECONDS)
        return f"beacon:sigfail:ip:{ip}:{window}", f"beacon:sigfail:keyaddr:{_pair(public_key, ip)}:{window}"

    def _available(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _outage(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE_SECONDS
        log.warning("rate limit counters unavailable, failing open: %s", exc)

    def blocked(self, ip: str, public_key: str) -> str | None:
        """Which limit this client is over: ``ip`` (the address) or ``key`` (this key from this
        address), or None."""
        if not self._available():
            return None
        ip_key, pair_key = self._keys(ip, public_key)
        try:
            ip_count, pair_count = self._client.mget(ip_key, pair_key)
        except redis.RedisError as exc:
            self._outage(exc)
            return None
        if ip_count is not None and int(ip_count) >= self.per_ip:
            return "ip"
        if pair_count is not None and int(pair_count) >= self.per_key:
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
