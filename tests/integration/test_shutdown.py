"""Graceful shutdown of the real roles: SIGTERM to a Celery worker in the middle of a slow unit
(real Postgres, Redis and a loopback simulator, as in test_engine's Stack) and to the API under
gunicorn with a request in flight. SIGKILL stands in for the platform's kill after its timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select, text

from beacon.crypto.signing import KeyPair
from beacon.models import Execution, Job
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB, REDIS_IDLE_DB
from tests.factories import body, make_spec
from tests.stack import Stack, constraints
from tests.support import WorkerProcess, spare_port, wait_for

S = 10**9


@pytest.fixture
def stack(tmp_path, pg_url, clean_db):
    stack = Stack(tmp_path, pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", KeyPair.generate())
    yield stack
    stack.close()


def start_worker(stack: Stack, name: str, *args: str) -> WorkerProcess:
    worker = WorkerProcess(stack.env, stack.tmp / f"{name}.log", name, args).start(stack.celery)
    stack.workers.append(worker)
    return worker


def in_flight(stack: Stack, region: str) -> bool:
    return any(c["region"] == region and c["finished"] is None for c in stack.served())


def completed_units(stack: Stack, job_id: str) -> int:
    with stack.db.session() as session:
        return len(list(session.scalars(
            select(Execution.id).where(Execution.job_id == job_id, Execution.status == "completed"))))


def test_sigterm_lets_the_worker_finish_the_units_in_hand(stack):
    stack.control(region_latency_ms={"EU": 2500})
    job_id = stack.submit(questions=["math_basic", "geography_basic"])  # 6 units, 2 of them slow (EU)
    first = start_worker(stack, "first", "-c", "2")
    wait_for(lambda: in_flight(stack, "EU"), what="an EU unit in flight")
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=60) == 0, (stack.tmp / "first.log").read_text()[-3000:]

    calls = stack.served()
    assert calls and all(call["finished"] is not None for call in calls), "a call was abandoned"
    assert completed_units(stack, job_id) == len(calls), "every unit the worker had begun was recorded"

    start_worker(stack, "second")
    view = stack.wait_terminal(job_id)
    assert view["status"] == "completed", view["status_reason"]
    assert len(view["executions"]) == 6
    assert all(u["status"] == "completed" and u["attempts"] == 1 for u in view["executions"])
    calls = stack.served()
    assert len(calls) == 6, "each unit called its provider exactly once"
    assert sorted(c["region"] for c in calls) == ["APAC", "APAC", "EU", "EU", "US", "US"]


def test_a_unit_outliving_the_stop_timeout_is_run_again_and_recorded_once(stack):
    stack.control(hang_next=1)
    job_id = stack.submit(constraints=constraints(regions=["EU"], provider_timeout=5 * S))
    first = start_worker(stack, "first")
    wait_for(lambda: in_flight(stack, "EU"), what="the EU unit in flight")
    first.process.send_signal(signal.SIGTERM)
    assert first.process.poll() is None, "a warm shutdown waits for the unit in hand"
    first.kill()  # the platform's kill_timeout ran out

    start_worker(stack, "second")
    view = stack.wait_terminal(job_id, sweep=True)  # the sweeper re-dispatches once the lease expires
    assert view["status"] == "completed", view["status_reason"]
    [unit] = view["executions"]
    assert unit["status"] == "completed" and unit["attempts"] == 2 and unit["output"]
    eu_calls = [c for c in stack.served() if c["region"] == "EU"]
    assert len(eu_calls) == 2 and eu_calls[0]["finished"] is None and eu_calls[1]["finished"] is not None


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def waiting_on_a_lock(db) -> bool:  # noqa: ANN001
    with db.connect() as conn:  # a transaction of its own: pg_stat_activity is a snapshot per transaction
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs%'"
        )).scalar())


def test_sigterm_lets_gunicorn_finish_the_request_in_flight(tmp_path: Path, clean_db, redis_urls, trusted_keys_file,
                                                           keypair):
    """The request is held in flight by a row lock the test takes in Postgres."""
    port = spare_port()
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": clean_db,
           "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}", "RATE_LIMIT_REDIS_URL": redis_urls["limits"],
           "TRUSTED_KEYS_FILE": str(trusted_keys_file), "ADMIN_TOKENS": "admin-secret", "LOG_LEVEL": "WARNING",
           "METRICS_PORT": str(spare_port())}
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen([sys.executable, "-m", "beacon", "api", "--host", "127.0.0.1", "--port", str(port),
                            "--workers", "1"], env={**os.environ, **env}, stdout=log,
                           stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    locker = create_engine(clean_db)
    try:
        wait_for(lambda: listening(port), timeout=60, what="the API to listen")
        spec = make_spec(keypair)
        assert requests.post(f"{base}/api/v1/jobs", data=body(spec), headers={"Content-Type": "application/json"},
                             timeout=10).status_code == 202
        with locker.connect() as conn, conn.begin() as lock:
            conn.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": spec["id"]})
            answers: list[requests.Response] = []
            request = threading.Thread(target=lambda: answers.append(requests.post(
                f"{base}/admin/jobs/{spec['id']}/emergency-stop", json={"reason": "drill"},
                headers={"Authorization": "Bearer admin-secret"}, timeout=60)))
            request.start()
            wait_for(lambda: waiting_on_a_lock(locker), what="the request to wait on the row lock")
            api.send_signal(signal.SIGTERM)
            wait_for(lambda: "Handling signal: term" in (tmp_path / "api.log").read_text(),
                     what="gunicorn to take the SIGTERM")
            assert api.poll() is None and not answers, "the request in flight is still being served"
            lock.commit()
        request.join(timeout=30)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert api.wait(timeout=30) == 0
        with locker.connect() as conn:
            assert conn.execute(select(Job.status).where(Job.id == spec["id"])).scalar() == "failed"
    finally:
        if api.poll() is None:
            api.kill()
        locker.dispose()
        log.close()
