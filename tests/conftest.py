"""Fixtures: a fresh Postgres database per test session, settings per test, a keypair."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from beacon.crypto.signing import KeyPair
from beacon.settings import Settings
from tests.support import scratch_database

REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Separate Redis databases per concern, away from db 0, so a test's flush never wipes a real queue.
# (Override the numbers with TEST_REDIS_DB_BASE to run two suites side by side.)
REDIS_BROKER_DB = int(os.environ.get("TEST_REDIS_DB_BASE", "11"))
REDIS_LIMITS_DB = REDIS_BROKER_DB + 1
REDIS_IDLE_DB = REDIS_BROKER_DB + 2  # a broker database no test worker consumes


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A new Postgres database migrated to head, dropped at the end of the session."""
    with scratch_database("beacon_test") as url:
        yield url


@pytest.fixture
def clean_db(pg_url: str) -> str:
    """The session database with every table emptied before the test."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from beacon.db import database_for
    from beacon.models import Base

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    for attempt in range(5):
        try:
            with database_for(pg_url).engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return pg_url
        except OperationalError as exc:
            # A module's worker (heartbeats, a late unit) may hold one table while TRUNCATE holds
            # another: Postgres breaks the deadlock by failing one side; emptying again is safe.
            if "deadlock detected" not in str(exc) or attempt == 4:
                raise
    return pg_url


@pytest.fixture
def redis_urls() -> Iterator[dict[str, str]]:
    import redis

    urls = {"broker": f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", "limits": f"{REDIS_BASE_URL}/{REDIS_LIMITS_DB}"}
    for url in urls.values():
        redis.Redis.from_url(url).flushdb()
    yield urls


@pytest.fixture
def keypair() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def trusted_keys_file(tmp_path: Path, keypair: KeyPair) -> Path:
    import json

    path = tmp_path / "trusted-keys.json"
    path.write_text(json.dumps([{"kid": "test-key", "public_key": keypair.public_key_b64, "status": "active"}]))
    return path


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an environment dict; BEACON_DATA_DIR defaults to the test's tmp dir, and the API
    rate limit is off (RATE_LIMIT_DEFAULT=off) unless a test of the limit itself sets it."""

    def build(**env: Any) -> Settings:
        values = {"BEACON_DATA_DIR": str(tmp_path / "data"), "RATE_LIMIT_DEFAULT": "off"}
        values.update({k: str(v) for k, v in env.items() if v is not None})
        return Settings.from_env(values)

    return build


@pytest.fixture
def pg_settings(make_settings, clean_db, redis_urls, trusted_keys_file) -> Settings:
    """Postgres + Redis settings with the test key trusted."""
    return make_settings(
        DATABASE_URL=clean_db,
        CELERY_BROKER_URL=redis_urls["broker"],
        RATE_LIMIT_REDIS_URL=redis_urls["limits"],
        TRUSTED_KEYS_FILE=trusted_keys_file,
    )
