"""Dependency probes with short timeouts, for the health endpoints and the scrape-time metrics.

``/health/ready`` depends on the database only: ingest works without Redis, so a Redis or
broker outage reports ``degraded`` but never takes the API out of the load balancer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from beacon.db import database_for
from beacon.redis_clients import redis_client
from beacon.settings import Settings

log = logging.getLogger(__name__)

DATABASE_TIMEOUT_SECONDS = 2
BROKER_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    status: str  # ok | down | not_configured
    latency_ms: float | None = None
    error: str | None = None  # the exception type only: health answers are public

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        body: dict = {"status": self.status, "latency_ms": self.latency_ms}
        if self.error:
            body["error"] = self.error
        return body


@lru_cache(maxsize=8)
def probe_engine(url: str) -> Engine:
    """A small pool with short connect and statement timeouts, apart from the app's pool."""
    if url.startswith("sqlite"):
        return database_for(url).engine
    timeout_ms = DATABASE_TIMEOUT_SECONDS * 1000
    return create_engine(
        url, pool_size=1, max_overflow=2, pool_timeout=DATABASE_TIMEOUT_SECONDS, pool_pre_ping=False,
        connect_args={"connect_timeout": DATABASE_TIMEOUT_SECONDS, "options": f"-c statement_timeout={timeout_ms}"},
    )


def timed(name: str, probe: Callable[[], object]) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure means the dependency is not usable
        log.warning("dependency check failed", extra={"dependency": name, "error": f"{type(exc).__name__}: {exc}"})
        return Check("down", round((time.perf_counter() - started) * 1000, 1), type(exc).__name__)
    return Check("ok", round((time.perf_counter() - started) * 1000, 1))


def check_database(url: str) -> Check:
    def select_one() -> None:
        with probe_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))

    return timed("database", select_one)


def check_redis(url: str | None, name: str = "redis") -> Check:
    if not url:
        return Check("not_configured")
    return timed(name, lambda: redis_client(url).ping())


def check_broker(url: str) -> Check:
    scheme = url.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        return check_redis(url, "broker")
    if scheme == "filesystem":
        return Check("ok", 0.0)  # local folders of the embedded default

    def connect() -> None:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.connect()

    return timed("broker", connect)


def check_ipfs(url: str | None) -> Check:
    """The IPFS node pinning uses; never part of the overall status (pins are retried later)."""
    if not url:
        return Check("not_configured")
    from beacon.evidence.ipfs_rpc import IpfsRpc

    return timed("ipfs", lambda: IpfsRpc(url, BROKER_TIMEOUT_SECONDS * 2).version())


#: A check's status in the Go runner's words, for ``services``.
SERVICE_STATUS = {"ok": "healthy", "down": "unhealthy", "not_configured": "not_configured"}


def services(checks: dict[str, Check]) -> list[dict]:
    """The Go runner's ``services: [{name, status}]`` (healthy | unhealthy | not_configured)."""
    return [{"name": name, "status": SERVICE_STATUS[check.status], "latency_ms": check.latency_ms}
            for name, check in checks.items()]


def report(settings: Settings) -> tuple[str, dict[str, Check]]:
    """Overall status (ok | degraded | unavailable) and each dependency's check."""
    checks = {
        "database": check_database(settings.database_url),
        "redis": check_redis(settings.rate_limit_redis_url),
        "broker": check_broker(settings.broker_url),
    }
    if not checks["database"].ok:
        return "unavailable", checks
    if any(check.status == "down" for check in checks.values()):
        return "degraded", checks
    return "ok", checks
