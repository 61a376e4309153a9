"""Alembic migrations upgrade and downgrade on real Postgres (and on the embedded SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from beacon.migrate import downgrade, upgrade
from beacon.models import Base
from tests.support import scratch_database


@pytest.fixture
def scratch_pg():
    with scratch_database("beacon_mig", migrate=False) as url:
        yield url


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_upgrade_downgrade_upgrade(backend, scratch_pg, tmp_path):
    url = scratch_pg if backend == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    expected = {table.name for table in Base.metadata.sorted_tables}
    assert expected <= set(inspect(engine).get_table_names())
    downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert expected <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_status_check_constraint(scratch_pg):
    from sqlalchemy.exc import IntegrityError

    upgrade(scratch_pg)
    engine = create_engine(scratch_pg)
    with pytest.raises(IntegrityError, match="ck_jobs_status"):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO jobs (id, status, raw_body, spec, public_key, created_at, updated_at) "
                "VALUES ('j', 'exploded', '{}', '{}', 'k', now(), now())"
            ))
    engine.dispose()
