"""Metrics and health against real services: Postgres, Redis (the shared one, and one the test
starts and stops), ``beacon api`` under gunicorn with several workers, a real Celery worker."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app import create_app
from beacon.db import database_for
from beacon.messaging.celery_app import make_celery
from beacon.messaging.outbox import enqueue
from beacon.models import OutboxMessage
from beacon.settings import Settings
from beacon.timeutil import utcnow
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.factories import body, make_spec
from tests.stack import purge
from tests.support import (
    ApiProcess,
    OwnRedis,
    WorkerProcess,
    run_together,
    serve_wsgi,
    spare_port,
    wait_fast_path,
    wait_for,
)


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(text: str, name: str, **labels: str) -> float | None:
    return metric_samples(text).get((name, frozenset(labels.items())))


def submit(base: str, keypair, **overrides) -> str:
    spec = make_spec(keypair, **overrides)
    answer = requests.post(f"{base}/api/v1/jobs", data=body(spec), headers={"Content-Type": "application/json"},
                           timeout=10)
    assert answer.status_code == 202, answer.text
    return spec["id"]


class Processes:
    """``beacon api`` with two gunicorn workers and a Celery worker serving /metrics, started together."""

    def __init__(self, tmp: Path, pg_url: str):
        self.metrics_dir = tmp / "prometheus"
        self.metrics_port = spare_port()
        self.env = {"BEACON_DATA_DIR": str(tmp / "data"), "DATABASE_URL": pg_url, "TRUST_ENFORCE": "false",
                    "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", "SIMULATOR_LATENCY_MS": "1"}
        self.api = ApiProcess({**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}, tmp / "api.log",
                              workers=2)
        self.worker = WorkerProcess({**self.env, "METRICS_PORT": str(self.metrics_port)}, tmp / "worker.log",
                                    "metrics")

    def start(self) -> None:
        purge(self.env["CELERY_BROKER_URL"])  # messages an earlier module left must not reach this worker
        run_together(self.api.start, lambda: self.worker.start(make_celery(Settings.from_env(self.env))))

    def stop(self) -> None:
        run_together(self.api.stop, self.worker.stop)


@pytest.fixture(scope="module")
def processes(tmp_path_factory, pg_url):
    found = Processes(tmp_path_factory.mktemp("metrics"), pg_url)
    try:
        found.start()
        yield found
    finally:
        found.stop()


def test_http_metrics_add_up_across_gunicorn_workers(processes):
    api = processes.api
    missing = [f"job-{uuid.uuid4()}" for _ in range(40)]
    for job_id in missing:  # a new connection each time, so both workers take some
        assert requests.get(f"{api.url}/api/v1/jobs/{job_id}", headers={"Connection": "close"},
                            timeout=10).status_code == 404
    for _ in range(4):  # whichever worker answers the scrape, it counts every worker's requests
        text = requests.get(f"{api.metrics_url}/metrics", headers={"Connection": "close"}, timeout=10).text
        assert sample(text, "beacon_http_requests_total", method="GET", route="/api/v1/jobs/<job_id>",
                      status="404") == 40
        assert sample(text, "beacon_http_request_duration_seconds_count", method="GET",
                      route="/api/v1/jobs/<job_id>") == 40
        assert not [job_id for job_id in missing if job_id in text], "a job id became a label"
    public = requests.get(f"{api.url}/metrics", timeout=10)
    assert public.status_code == 404 and public.json()["error_code"] == "not_found", "no metrics on the public port"
    assert requests.get(f"{api.metrics_url}/api/v1/jobs", timeout=10).status_code == 404, "only metrics there"
    assert list(processes.metrics_dir.glob("*.db")), "gunicorn workers write their samples to the multiproc dir"
    lines = api.log_path.read_text().splitlines()
    assert all(line.startswith("{") for line in lines if line.strip()), "every line of the API is JSON"
    access = [entry for entry in api.log_lines() if entry.get("logger") == "beacon.access"
              and entry.get("path") == f"/api/v1/jobs/{missing[0]}"]
    assert access and access[0]["status"] == 404 and access[0]["method"] == "GET", access
    assert access[0]["client_address"] == "127.0.0.1" and access[0]["request_id"] and access[0]["duration_ms"] >= 0
    disabled = [line for line in api.log_path.read_text().splitlines() if "Sentry disabled" in line]
    assert len(disabled) == 2, "one line per gunicorn worker"
    assert disabled[0].startswith('{"level":"info","message":"Sentry disabled (no SENTRY_DSN)",')


def test_scrape_time_jobs_outbox_and_queue_depth(make_settings, clean_db, redis_urls, trusted_keys_file, keypair,
                                                 tmp_path):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=own.url,
                                 RATE_LIMIT_REDIS_URL=redis_urls["limits"], TRUSTED_KEYS_FILE=trusted_keys_file)
        with serve_wsgi(create_app(settings)) as base:
            jobs = [submit(base, keypair) for _ in range(2)]  # no worker here: run_job waits in the queue
            wait_fast_path(clean_db)
            with database_for(clean_db).session() as session:
                stuck = enqueue(session, "beacon.run_job", "jobs", [jobs[0]])
                session.execute(update(OutboxMessage).where(OutboxMessage.id == stuck.id)
                                .values(created_at=utcnow() - timedelta(seconds=90)))
            text = requests.get(f"{base}/metrics", timeout=10).text
            assert sample(text, "beacon_database_up") == 1 and sample(text, "beacon_broker_up") == 1
            assert sample(text, "beacon_jobs", status="queued") == 2
            assert sample(text, "beacon_jobs", status="completed") == 0
            assert sample(text, "beacon_outbox_unpublished") == 1
            assert sample(text, "beacon_outbox_oldest_age_seconds") >= 90
            assert sample(text, "beacon_queue_depth", queue="jobs") == 2
            assert sample(text, "beacon_queue_depth", queue="region.US") == 0
            assert not [job_id for job_id in jobs if job_id in text]

            own.stop()  # the broker is down: the depths are skipped, the rest of the scrape stays
            down = requests.get(f"{base}/metrics", timeout=10)
            assert down.status_code == 200
            assert sample(down.text, "beacon_broker_up") == 0
            assert "beacon_queue_depth" not in down.text
            assert sample(down.text, "beacon_jobs", status="queued") == 2
    finally:
        own.stop()


def test_worker_serves_unit_and_provider_metrics_and_logs_json_with_context(processes, make_settings, clean_db,
                                                                         trusted_keys_file, keypair):
    settings = make_settings(**{**processes.env, "TRUSTED_KEYS_FILE": trusted_keys_file, "TRUST_ENFORCE": "true"})
    with serve_wsgi(create_app(settings)) as base:
        job_id = submit(base, keypair)
        wait_for(lambda: requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()["status"] == "completed",
                 what="the job to complete")
    text = requests.get(f"http://127.0.0.1:{processes.metrics_port}/metrics", timeout=10).text
    for region in ("US", "EU", "APAC"):
        assert sample(text, "beacon_units_total", region=region, provider="simulator", status="completed") == 1
        assert sample(text, "beacon_provider_latency_seconds_count", region=region, provider="simulator") == 1
    assert job_id not in text
    raw = [line for line in processes.worker.log_path.read_text().splitlines() if line.strip()]
    assert all(line.startswith("{") for line in raw), [line for line in raw if not line.startswith("{")][:5]
    lines = [json.loads(line) for line in raw]
    [banner] = [line for line in lines if line["message"] == "celery worker starting"]
    assert banner["queues"] == ["jobs", "region.APAC", "region.EU", "region.US"] and "beacon.execute_unit" in banner["tasks"]
    finalised = [line for line in lines if line["message"] == "job finalised" and line.get("job_id") == job_id]
    assert finalised, "no JSON log line for the finalisation"
    assert finalised[0]["level"] == "info" and finalised[0]["logger"] == "beacon.execution.finalisation" and "time" in finalised[0]
    assert finalised[0]["task_id"] and finalised[0]["region"] in ("US", "EU", "APAC")


def test_redis_outage_degrades_health_but_not_readiness(make_settings, clean_db, trusted_keys_file, keypair, tmp_path):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=own.url, RATE_LIMIT_REDIS_URL=own.url,
                                 TRUSTED_KEYS_FILE=trusted_keys_file)
        with serve_wsgi(create_app(settings)) as base:
            healthy = requests.get(f"{base}/health", timeout=10)
            assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
            assert {c["status"] for c in healthy.json()["checks"].values()} == {"ok"}
            own.stop()
            for prefix in ("", "/api/v1"):
                health = requests.get(f"{base}{prefix}/health", timeout=10)
                assert health.status_code == 200, health.text
                report = health.json()
                assert report["status"] == "degraded"
                assert report["checks"]["redis"]["status"] == "down"
                assert report["checks"]["broker"]["status"] == "down"
                assert report["checks"]["database"]["status"] == "ok"
                assert requests.get(f"{base}{prefix}/health/ready", timeout=10).status_code == 200
                assert requests.get(f"{base}{prefix}/health/live", timeout=10).status_code == 200
            submit(base, keypair)  # ingest keeps working: the outbox relay publishes later
    finally:
        own.stop()


def test_unreachable_database_fails_readiness(make_settings, tmp_path):
    settings = make_settings(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{spare_port()}/nothing",
                             TRUST_ENFORCE="false")
    with serve_wsgi(create_app(settings)) as base:
        for prefix in ("", "/api/v1"):
            ready = requests.get(f"{base}{prefix}/health/ready", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["error_code"] == "service_unavailable"
            assert ready.json()["details"]["checks"]["database"]["status"] == "down"
            health = requests.get(f"{base}{prefix}/health", timeout=10)
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            assert requests.get(f"{base}{prefix}/health/live", timeout=10).status_code == 200
        scrape = requests.get(f"{base}/metrics", timeout=10)
        assert scrape.status_code == 200 and sample(scrape.text, "beacon_database_up") == 0
