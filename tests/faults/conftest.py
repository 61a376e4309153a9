"""Fixtures of the fault suite: a private Redis per test, a scratch (or private) PostgreSQL."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.faults.services import RedisHandle, throwaway_redis
from tests.support import scratch_database


def pytest_collection_modifyitems(items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def redis_server() -> Iterator[RedisHandle]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def scratch_pg() -> Iterator[str]:
    with scratch_database("beacon_fault") as url:
        yield url
