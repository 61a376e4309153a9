"""The stack most integration tests run against: the API on a loopback port, real Celery
workers in their own processes, real Postgres and a broker, and the model simulator served over
HTTP on loopback (US and APAC through the hybrid-router protocol, EU through the OpenAI one)."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from kombu import Connection, Queue

from app import create_app
from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.execution import engine
from beacon.execution.providers import serve_simulator
from beacon.messaging.celery_app import make_celery
from beacon.messaging.dispatch import dispatch_unit, publish_run_job
from beacon.settings import Settings
from tests.factories import body, make_spec
from tests.support import WorkerProcess, serve_wsgi, wait_for

QUEUES = ["jobs", "region.US", "region.EU", "region.APAC"]


def providers_file(tmp: Path, simulator_url: str) -> Path:
    """A PROVIDERS_FILE sending US, EU and APAC to the simulator at ``simulator_url``."""
    path = tmp / "providers.toml"
    path.write_text("".join(
        f'[regions.{region}]\nprovider = "{kind}"\nbase_url = "{simulator_url}"\nmax_in_flight = 16\n\n'
        for region, kind in (("US", "hybrid_router"), ("EU", "openai"), ("APAC", "hybrid_router"))
    ))
    return path


def constraints(**values) -> dict:
    return {"regions": ["US", "EU", "APAC"], "min_regions": 1, **values}


def trusted_keys_file(tmp: Path, keypair: KeyPair) -> Path:
    path = tmp / "trusted.json"
    path.write_text(json.dumps([{"kid": "t", "public_key": keypair.public_key_b64, "status": "active"}]))
    return path


def purge(broker_url: str) -> None:
    with Connection(broker_url) as conn:
        channel = conn.default_channel
        for name in QUEUES:
            Queue(name, channel=channel).declare()
            Queue(name, channel=channel).purge()


class Stack:
    """API + worker + simulator sharing one configuration."""

    def __init__(self, tmp: Path, pg_url: str, broker_url: str, keypair: KeyPair,
                 extra_env: dict[str, str] | None = None):
        self.tmp, self.keypair, self.broker_url = tmp, keypair, broker_url
        self.simulator = serve_simulator(latency_ms=5)
        providers = providers_file(tmp, self.simulator.url)
        keys = trusted_keys_file(tmp, keypair)
        self.env = {
            "BEACON_DATA_DIR": str(tmp / "data"),
            "DATABASE_URL": pg_url,
            "CELERY_BROKER_URL": broker_url,
            "PROVIDERS_FILE": str(providers),
            "TRUSTED_KEYS_FILE": str(keys),
            "UNIT_RETRY_BASE_SECONDS": "0.05",
            "UNIT_RETRY_MAX_SECONDS": "0.2",
            "UNIT_LEASE_MARGIN_SECONDS": "1",
            "PENDING_REDISPATCH_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DEFAULT": "off",  # the API rate limit has its own tests
            **(extra_env or {}),
        }
        self.settings = Settings.from_env(self.env)
        self.db = database_for(pg_url)
        self.celery = make_celery(self.settings)
        purge(broker_url)
        self.workers: list[WorkerProcess] = []
        self._api = serve_wsgi(create_app(self.settings))
        self.api = self._api.__enter__()

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.tmp / "worker.log", "engine").start(self.celery)
        self.workers.append(worker)
        return worker

    def reset(self) -> None:
        requests.post(f"{self.simulator.url}/_reset", timeout=5).raise_for_status()

    def control(self, **payload) -> None:
        requests.post(f"{self.simulator.url}/_control", json=payload, timeout=5).raise_for_status()

    def served(self) -> list[dict]:
        return requests.get(f"{self.simulator.url}/_requests", timeout=5).json()

    def submit(self, **overrides) -> str:
        spec = make_spec(self.keypair, **overrides)
        response = requests.post(f"{self.api}/api/v1/jobs", data=body(spec),
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 202, response.text
        return spec["id"]

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.api}/api/v1/jobs/{job_id}", params={"include": "executions"}, timeout=10).json()

    def wait_terminal(self, job_id: str, timeout: float = 60, sweep: bool = False) -> dict:
        def done():
            if sweep:
                engine.sweep(self.db, self.settings, self.dispatch, self.republish)
            view = self.job(job_id)
            return view if view["status"] in ("completed", "failed", "cancelled") else None

        return wait_for(done, timeout=timeout, interval=0.1, what=f"job {job_id} to end")

    def dispatch(self, execution_id: int, region: str, countdown: float) -> None:
        dispatch_unit(execution_id, region, countdown, app=self.celery)

    def republish(self, job_id: str) -> None:
        publish_run_job(job_id, app=self.celery)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self._api.__exit__(None, None, None)
        self.simulator.close()
