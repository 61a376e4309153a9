"""Shared pieces of the benchmarks: a scratch Postgres database, Redis databases, processes."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import redis
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh, migrated Postgres database, dropped afterwards."""
    from beacon.migrate import upgrade

    name = f"beacon_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_db(number: int) -> str:
    url = f"{REDIS_URL}/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.01, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def start(argv: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(latencies_ms: list[float]) -> str:
    return (f"p50 {percentile(latencies_ms, 0.5):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms, "
            f"mean {statistics.fmean(latencies_ms):.1f} ms")


PYTHON = sys.executable
