"""The outbox: Redis down never blocks ingest nor loses a job; relays never publish a row twice."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import redis
import requests
from sqlalchemy import func, select, update

from app import create_app
from beacon.db import database_for
from beacon.messaging.celery_app import make_celery
from beacon.messaging.outbox import FastPath, celery_publisher, enqueue, relay
from beacon.models import OutboxMessage
from beacon.timeutil import utcnow
from tests.factories import body, make_spec
from tests.support import OwnRedis, serve_wsgi, wait_fast_path, wait_for

JSON = {"Content-Type": "application/json"}


def queued_job_ids(redis_url: str) -> list[str]:
    messages = redis.Redis.from_url(redis_url).lrange("jobs", 0, -1)
    return [json.loads(json.loads(m)["headers"]["argsrepr"].replace("'", '"'))[0] for m in messages]


def unpublished(url: str) -> int:
    with database_for(url).session() as session:
        return session.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None)))


def make_due(url: str) -> None:
    """Skip the backoff wait of every row."""
    with database_for(url).session() as session:
        session.execute(update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_redis_down_ingest_still_accepts_and_relay_publishes_each_once(
    tmp_path, make_settings, clean_db, trusted_keys_file, keypair
):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        settings = make_settings(
            DATABASE_URL=clean_db, REDIS_URL=own.url, TRUSTED_KEYS_FILE=trusted_keys_file,
        )
        flask_app = create_app(settings)
        with serve_wsgi(flask_app) as api:
            own.stop()
            ids = []
            for _ in range(5):
                spec = make_spec(keypair)
                response = requests.post(f"{api}/api/v1/jobs", data=body(spec), headers=JSON, timeout=30)
                assert response.status_code == 202, response.text
                ids.append(spec["id"])
            wait_fast_path(clean_db)
            assert unpublished(clean_db) == 5, "outbox rows wait while Redis is down"

            # The relay while Redis is still down: nothing published, rows back off, none lost.
            with database_for(clean_db).session() as session:
                rows = session.scalars(select(OutboxMessage)).all()
                assert all(r.attempts == 1 and r.next_attempt_at is not None and r.last_error for r in rows), \
                    "each failed fast-path publish backs its row off"
            celery = make_celery(settings)
            make_due(clean_db)
            down = relay(database_for(clean_db), celery_publisher(celery))
            assert (down.published, down.failed) == (0, 1)
            assert unpublished(clean_db) == 5

            own.start()
            make_due(clean_db)
            up = relay(database_for(clean_db), celery_publisher(celery))
            assert (up.published, up.failed) == (5, 0)
            again = relay(database_for(clean_db), celery_publisher(celery))
            assert (again.published, again.failed) == (0, 0)
            assert unpublished(clean_db) == 0
            assert sorted(queued_job_ids(own.url)) == sorted(ids), "every job published exactly once"
    finally:
        own.stop()


def test_concurrent_relays_never_publish_twice(pg_settings, redis_urls):
    db = database_for(pg_settings.database_url)
    with db.session() as session:
        for index in range(300):
            enqueue(session, "beacon.run_job", "jobs", [f"job-{index}"])
        # older than the fast path's grace period, so they are the relay's to publish
        session.execute(update(OutboxMessage).values(created_at=utcnow() - timedelta(minutes=1)))
    published: list[str] = []
    lock = threading.Lock()

    def publish(message: OutboxMessage) -> None:
        with lock:
            published.append(message.args[0])

    def run() -> None:
        while relay(db, publish, batch=7).published:
            pass

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(published) == sorted(f"job-{i}" for i in range(300))
    assert unpublished(pg_settings.database_url) == 0


def _rows(db, count: int) -> list[OutboxMessage]:  # noqa: ANN001
    with db.session() as session:
        return [enqueue(session, "beacon.run_job", "jobs", [f"job-{index}"]) for index in range(count)]


def test_fast_path_publishes_what_arrives_meanwhile_in_one_batch_and_marks_it(pg_settings):
    """A publisher that holds its first batch until released: rows added meanwhile go out together."""
    db = database_for(pg_settings.database_url)
    first, *rest = _rows(db, 5)
    batches: list[list[str]] = []
    holding, release = threading.Event(), threading.Event()

    def publish(messages: list[OutboxMessage]) -> None:
        batches.append([m.args[0] for m in messages])
        holding.set()
        assert release.wait(30)

    fast_path = FastPath(db, publish)
    fast_path.add(first, [])
    assert holding.wait(30)
    for message in rest:
        fast_path.add(message, [])
    release.set()
    wait_for(lambda: unpublished(pg_settings.database_url) == 0, what="every row marked published")
    assert batches == [["job-0"], ["job-1", "job-2", "job-3", "job-4"]]


def test_fast_path_leaves_rows_to_the_relay_after_a_broker_failure(pg_settings):
    db = database_for(pg_settings.database_url)
    calls: list[int] = []

    def publish(messages: list[OutboxMessage]) -> None:
        calls.append(len(messages))
        raise ConnectionError("broker down")

    fast_path = FastPath(db, publish, pause=60)
    for _ in range(3):
        fast_path.add(*_rows(db, 1), [])
        wait_fast_path(pg_settings.database_url)  # one batch per row
    with db.session() as session:
        stored = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert calls == [1], "after the failure the fast path pauses: the next rows are not tried"
    assert [(r.published_at, r.attempts) for r in stored] == [(None, 1)] * 3
    assert [r.last_error for r in stored] == ["ConnectionError: broker down"] + [
        "ConnectionError: the broker failed a moment ago; the outbox relay will publish these rows"] * 2
