"""The integration tier's shared stack: API, a real worker and the HTTP simulator (``tests.stack``).

A module that needs its own key or settings overrides ``keys`` or ``stack_env``.
"""

import pytest

from beacon.crypto.signing import KeyPair
from beacon.db import Database
from beacon.migrate import upgrade
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.stack import Stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    """The key the stack trusts and the module signs with."""
    return KeyPair.generate()


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra settings for the module's stack (API and worker alike)."""
    return {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url, keys, stack_env):
    stack = Stack(tmp_path_factory.mktemp("stack"), pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", keys,
                  extra_env=stack_env)
    stack.start_worker()
    yield stack
    stack.close()


@pytest.fixture
def fresh(stack, clean_db):
    """The module's stack with an empty database and a reset simulator."""
    stack.reset()
    return stack


@pytest.fixture(params=["postgres", "sqlite"])
def either_db(request, clean_db, tmp_path) -> Database:
    """A migrated, empty database of each kind in turn: the scratch Postgres one, then a SQLite file."""
    if request.param == "postgres":
        return Database(clean_db)
    url = f"sqlite:///{tmp_path / 'beacon.db'}"
    upgrade(url)
    return Database(url)
