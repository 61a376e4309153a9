"""The executions endpoints over real HTTP, and the retention purge, on real Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from app import create_app
from beacon.db import database_for
from beacon.messaging.outbox import enqueue
from beacon.models import Execution, IdempotencyKey, Nonce, OutboxMessage
from beacon.operations.retention import purge
from beacon.timeutil import utcnow
from tests.factories import seed_answered_job
from tests.support import serve_wsgi

QUESTIONS = ["math_basic", "greatest_invention"]


@pytest.fixture
def seeded(pg_settings, keypair):
    db = database_for(pg_settings.database_url)
    job_id = seed_answered_job(db, pg_settings, keypair, QUESTIONS)
    with serve_wsgi(create_app(pg_settings)) as base:
        yield base, db, job_id


def test_job_executions_list_every_unit(seeded):
    base, _, job_id = seeded
    response = requests.get(f"{base}/api/v1/jobs/{job_id}/executions", timeout=10)
    assert response.status_code == 200
    rows = response.json()["executions"]
    assert len(rows) == 3 * len(QUESTIONS)
    assert {(r["region"], r["question_id"]) for r in rows} == {
        (region, q) for region in ("US", "EU", "APAC") for q in QUESTIONS}
    assert all(r["job_id"] == job_id and r["status"] == "completed" and r["output"] for r in rows)


def test_executions_pages_newest_first_and_cursor_ends(seeded):
    base, _, _ = seeded
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{base}/api/v1/executions", params=params, timeout=10).json()
        assert len(page["executions"]) <= 4
        seen += [row["id"] for row in page["executions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 3 * len(QUESTIONS)


def test_one_execution_and_not_found(seeded):
    base, db, job_id = seeded
    with db.session() as session:
        first = session.scalar(select(Execution.id).where(Execution.job_id == job_id).order_by(Execution.id))
    one = requests.get(f"{base}/api/v1/executions/{first}", timeout=10)
    assert one.status_code == 200 and one.json()["id"] == first
    for missing in ("999999999", "abc"):
        response = requests.get(f"{base}/api/v1/executions/{missing}", timeout=10)
        assert response.status_code == 404 and response.json()["error_code"] == "not_found"
    bad_cursor = requests.get(f"{base}/api/v1/executions", params={"cursor": "x1"}, timeout=10)
    assert bad_cursor.status_code == 400


def test_retention_purges_only_what_has_expired(pg_settings):
    db = database_for(pg_settings.database_url)
    now = utcnow()
    old = now - timedelta(hours=pg_settings.idempotency_ttl_hours + 1)
    with db.session() as session:
        session.add_all([
            Nonce(public_key="k", nonce="expired", job_id="j1", created_at=old, expires_at=now - timedelta(minutes=1)),
            Nonce(public_key="k", nonce="live", job_id="j2", created_at=now, expires_at=now + timedelta(minutes=30)),
            IdempotencyKey(key="old", identity="0" * 64, job_id="j1", created_at=old),
            IdempotencyKey(key="new", identity="0" * 64, job_id="j2", created_at=now),
        ])
        published_long_ago = enqueue(session, "beacon.run_job", "jobs", ["j1"], {})
        enqueue(session, "beacon.run_job", "jobs", ["j2"], {})  # unpublished: kept whatever its age
        published_just_now = enqueue(session, "beacon.run_job", "jobs", ["j3"], {})
        for row, when in ((published_long_ago, now - timedelta(days=pg_settings.outbox_retention_days + 1)),
                          (published_just_now, now)):
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(published_at=when))
    assert purge(db, pg_settings) == {"nonces": 1, "idempotency_keys": 1, "outbox": 1, "events": 0}
    with db.session() as session:
        assert set(session.scalars(select(Nonce.nonce))) == {"live"}
        assert set(session.scalars(select(IdempotencyKey.key))) == {"new"}
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2
    assert purge(db, pg_settings) == {"nonces": 0, "idempotency_keys": 0, "outbox": 0, "events": 0}
