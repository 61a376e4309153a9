"""The admin API over real HTTP on loopback, with real Postgres and Redis, and ``beacon admin``.

No worker consumes this broker database, so every message the API publishes stays where
``/admin/queues`` counts it. Where a job must be running, the test calls the engine's own
``start_job`` (what a worker's run_job does) with a dispatcher that publishes to that broker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from datetime import timedelta

import pytest
import redis
import requests
from click.testing import CliRunner
from sqlalchemy import select, update

from app import create_app
from beacon.cli import main
from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.execution import engine
from beacon.messaging.celery_app import region_queue
from beacon.messaging.dispatch import dispatch_lanes
from beacon.messaging.outbox import enqueue
from beacon.models import Execution, Job, OutboxMessage
from beacon.timeutil import utcnow
from tests.conftest import REDIS_BASE_URL, REDIS_IDLE_DB
from tests.factories import body, make_spec
from tests.support import serve_wsgi, spare_port, wait_fast_path

TOKENS = {"viewer": "view-secret", "operator": "op-secret", "admin": "admin-secret"}
ROUTES = [  # method, path, minimum role
    ("GET", "/admin/queues", "viewer"),
    ("GET", "/admin/jobs/stuck", "viewer"),
    ("POST", "/admin/jobs/job-x/republish", "operator"),
    ("POST", "/admin/jobs/job-x/emergency-stop", "admin"),
    ("POST", "/admin/trusted-keys/reload", "admin"),
]
ROLES = ("viewer", "operator", "admin")
REGIONS = ("US", "EU", "APAC")


class Api:
    def __init__(self, base: str, settings, keypair: KeyPair):
        self.base, self.settings, self.keypair = base, settings, keypair
        self.db = database_for(settings.database_url)
        self.broker = redis.Redis.from_url(settings.broker_url)
        self.celery = None

    def call(self, method: str, path: str, role: str | None = None, token: str | None = None, **kwargs):
        token = token or (TOKENS[role] if role else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=15, **kwargs)

    def submit(self, keypair: KeyPair | None = None) -> requests.Response:
        spec = make_spec(keypair or self.keypair)
        return requests.post(f"{self.base}/api/v1/jobs", data=body(spec),
                             headers={"Content-Type": "application/json"}, timeout=15)

    def queued_job(self) -> str:
        response = self.submit()
        assert response.status_code == 202, response.text
        wait_fast_path(self.db.url)  # its run_job is on the jobs queue
        return response.json()["id"]

    def running_job(self) -> str:
        """A job moved to running by the engine, its three units dispatched to their region queues."""
        from beacon.messaging.celery_app import make_celery

        job_id = self.queued_job()
        self.celery = self.celery or make_celery(self.settings)

        dispatch = functools.partial(dispatch_lanes, app=self.celery)
        assert engine.start_job(self.db, self.settings, job_id, dispatch) == 3
        return job_id

    def depth(self, queue: str) -> int:
        return self.broker.llen(queue)

    def units(self, job_id: str) -> dict[str, Execution]:
        with self.db.session() as session:
            return {u.region: u for u in session.scalars(select(Execution).where(Execution.job_id == job_id))}


@pytest.fixture
def admin_env(clean_db, redis_urls, trusted_keys_file) -> dict[str, str]:
    broker = f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}"
    redis.Redis.from_url(broker).flushdb()
    return {
        "DATABASE_URL": clean_db, "CELERY_BROKER_URL": broker, "RATE_LIMIT_REDIS_URL": redis_urls["limits"],
        "TRUSTED_KEYS_FILE": str(trusted_keys_file), "VIEWER_TOKENS": TOKENS["viewer"],
        "OPERATOR_TOKENS": TOKENS["operator"], "ADMIN_TOKENS": TOKENS["admin"],
    }


@pytest.fixture
def api(make_settings, admin_env, keypair):
    settings = make_settings(**admin_env)
    with serve_wsgi(create_app(settings)) as base:
        yield Api(base, settings, keypair)


@pytest.fixture
def admin_log():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("beacon.operations")  # access (who did it) and admin (refusals)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize("method,path,minimum", ROUTES)
def test_every_route_needs_a_token_of_its_role(api, method, path, minimum):
    for token in (None, "not-a-token"):
        response = api.call(method, path, token=token)
        assert response.status_code == 401, (token, response.text)
        assert response.json()["error_code"] == "unauthorized"
    for role in ROLES[:ROLES.index(minimum)]:
        response = api.call(method, path, role=role)
        assert response.status_code == 403, (role, response.text)
        assert response.json()["error_code"] == "forbidden"
    for role in ROLES[ROLES.index(minimum):]:
        assert api.call(method, path, role=role).status_code not in (401, 403)


def test_queues_reports_depths_outbox_and_dead_letters(api):
    api.queued_job()
    running = api.running_job()
    with api.db.session() as session:
        enqueue(session, "beacon.run_job", "jobs", ["not-yet-published"])
        session.execute(update(Execution).where(Execution.job_id == running, Execution.region == "US").values(
            status="failed", failure={"code": "poison", "dead_letter": True}))
        session.execute(update(Execution).where(Execution.job_id == running, Execution.region == "EU").values(
            status="failed", failure={"code": "http_400"}))
    response = api.call("GET", "/admin/queues", role="viewer")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["queues"] == {"jobs": 2, "region.US": 1, "region.EU": 1, "region.APAC": 1}
    assert view["broker_reachable"] is True
    assert view["outbox"]["unpublished"] == 1 and view["outbox"]["oldest_age_seconds"] >= 0
    assert view["dead_letters"] == 1


def test_queues_with_the_broker_down_reports_null_depths(make_settings, admin_env, keypair):
    down = make_settings(**{**admin_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{spare_port()}/0"})
    with serve_wsgi(create_app(down)) as base:
        response = Api(base, down, keypair).call("GET", "/admin/queues", role="viewer")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["queues"] == {"jobs": None, "region.US": None, "region.EU": None, "region.APAC": None}
    assert view["broker_reachable"] is False
    assert view["outbox"] == {"unpublished": 0, "oldest_age_seconds": None}


def test_stuck_lists_long_queued_and_running_jobs(api):
    old_queued, old_running, fresh = api.queued_job(), api.running_job(), api.queued_job()
    now = utcnow()
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == old_queued).values(created_at=now - timedelta(minutes=50)))
        session.execute(update(Job).where(Job.id == old_running).values(started_at=now - timedelta(minutes=45)))
    view = api.call("GET", "/admin/jobs/stuck", role="viewer").json()
    assert view["minutes"] == 30
    assert [(j["id"], j["status"]) for j in view["jobs"]] == [(old_queued, "queued"), (old_running, "running")]
    assert view["jobs"][1]["counts"]["units"] == 3
    assert view["jobs"][0]["stuck_seconds"] >= 50 * 60
    assert fresh not in {j["id"] for j in view["jobs"]}
    assert [j["id"] for j in api.call("GET", "/admin/jobs/stuck?minutes=48", role="viewer").json()["jobs"]] == [
        old_queued]
    for bad in ("abc", "0", "-5", "1.5", "999999"):
        response = api.call("GET", f"/admin/jobs/stuck?minutes={bad}", role="viewer")
        assert response.status_code == 400, bad
        assert response.json()["error_code"] == "validation_error"
        assert response.json()["details"] == {"field": "minutes"}


def test_republish_a_queued_job_sends_run_job_through_the_outbox(api):
    job_id = api.queued_job()
    assert api.depth("jobs") == 1
    response = api.call("POST", f"/admin/jobs/{job_id}/republish", role="operator")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": job_id, "status": "queued", "messages": 1, "published": 1, "units": 0}
    assert api.depth("jobs") == 2
    with api.db.session() as session:
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.args[0].as_string() == job_id)))
    assert len(rows) == 2 and all(row.published_at for row in rows)


def test_republish_a_running_job_resends_pending_and_expired_units(api):
    job_id = api.running_job()
    now = utcnow()
    with api.db.session() as session:
        unit = Execution.job_id == job_id
        session.execute(update(Execution).where(unit, Execution.region == "US").values(status="completed"))
        session.execute(update(Execution).where(unit, Execution.region == "EU").values(
            status="running", claimed_at=now, lease_expires_at=now - timedelta(seconds=5)))
        session.execute(update(Execution).where(unit, Execution.region == "APAC").values(
            status="running", claimed_at=now, lease_expires_at=now + timedelta(minutes=5)))
    response = api.call("POST", f"/admin/jobs/{job_id}/republish", role="admin")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": job_id, "status": "running", "messages": 1, "published": 1, "units": 1}
    assert {r: api.depth(region_queue(r)) for r in REGIONS} == {"US": 1, "EU": 2, "APAC": 1}


def test_republish_refuses_terminal_and_unknown_jobs(api):
    job_id = api.queued_job()
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="completed"))
    response = api.call("POST", f"/admin/jobs/{job_id}/republish", role="operator")
    assert response.status_code == 409
    assert response.json()["error_code"] == "invalid_state" and response.json()["details"] == {"status": "completed"}
    missing = api.call("POST", "/admin/jobs/no-such-job/republish", role="operator")
    assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"
    assert api.depth("jobs") == 1


def test_emergency_stop_fails_the_job_and_its_open_units_at_once(api):
    job_id = api.running_job()
    with api.db.session() as session:
        session.execute(update(Execution).where(Execution.job_id == job_id, Execution.region == "US").values(
            status="completed", classification="substantive", output="4"))
        session.execute(update(Execution).where(Execution.job_id == job_id, Execution.region == "EU").values(
            status="running", claimed_at=utcnow(), lease_expires_at=utcnow() + timedelta(minutes=5)))
    response = api.call("POST", f"/admin/jobs/{job_id}/emergency-stop", role="admin",
                        json={"reason": "provider leaking prompts"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "failed" and result["previous_status"] == "running" and result["units_failed"] == 2
    job = requests.get(f"{api.base}/api/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "failed" and job["finished_at"]
    assert job["status_reason"] == "emergency stop by admin: provider leaking prompts"
    units = api.units(job_id)
    assert units["US"].status == "completed"
    for region in ("EU", "APAC"):
        assert units[region].status == "failed" and units[region].lease_expires_at is None
        assert units[region].failure["code"] == "emergency_stop"
        assert units[region].failure["message"] == job["status_reason"]
    again = api.call("POST", f"/admin/jobs/{job_id}/emergency-stop", role="admin", json={"reason": "again"})
    assert again.status_code == 409 and again.json()["details"] == {"status": "failed"}
    assert api.units(job_id)["EU"].failure["message"] == job["status_reason"]


def test_emergency_stop_of_a_queued_job_and_its_reason_rules(api):
    job_id = api.queued_job()
    url = f"/admin/jobs/{job_id}/emergency-stop"
    for payload, code in ((None, "missing_field:reason"), ({}, "missing_field:reason"),
                          ({"reason": "  "}, "validation_error"), ({"reason": 7}, "validation_error"),
                          ({"reason": "x" * 1001}, "validation_error")):
        response = api.call("POST", url, role="admin", json=payload)
        assert response.status_code == 400 and response.json()["error_code"] == code, payload
    assert api.call("POST", url, role="admin", data=b"{not json").json()["error_code"] == "invalid_json"
    assert api.call("POST", url, role="operator", json={"reason": "r"}).status_code == 403
    response = api.call("POST", url, role="admin", json={"reason": "wrong benchmark"})
    assert response.status_code == 200, response.text
    assert response.json()["previous_status"] == "queued" and response.json()["units_failed"] == 0
    assert api.call("POST", "/admin/jobs/nope/emergency-stop", role="admin", json={"reason": "r"}).status_code == 404


def test_reload_trusted_keys(api, trusted_keys_file, keypair):
    second = KeyPair.generate()
    entries = json.loads(trusted_keys_file.read_text())
    trusted_keys_file.write_text(json.dumps(entries + [{"kid": "second", "public_key": second.public_key_b64,
                                                        "status": "active"}]))
    response = api.call("POST", "/admin/trusted-keys/reload", role="admin")
    assert response.status_code == 200, response.text
    assert response.json() == {"path": str(trusted_keys_file), "keys": 2}
    assert api.submit(second).status_code == 202

    trusted_keys_file.write_text('[{"kid": "broken"}]')
    response = api.call("POST", "/admin/trusted-keys/reload", role="admin")
    assert response.status_code == 500
    error = response.json()
    assert error["error_code"] == "trust_file_invalid"
    assert "entry 0 (broken): public_key must be a base64 string" in error["error"]
    assert "Traceback" not in response.text
    assert api.submit(keypair).status_code == 202, "the previous keys stay in force"


def test_reload_without_a_trusted_keys_file(make_settings, admin_env, keypair):
    settings = make_settings(**{**admin_env, "TRUSTED_KEYS_FILE": None, "TRUST_ENFORCE": "false"})
    with serve_wsgi(create_app(settings)) as base:
        response = Api(base, settings, keypair).call("POST", "/admin/trusted-keys/reload", role="admin")
    assert response.status_code == 409 and "TRUSTED_KEYS_FILE is not set" in response.json()["error"]


def test_admin_actions_are_logged_with_who_did_them(api, admin_log):
    job_id = api.queued_job()
    assert api.call("POST", f"/admin/jobs/{job_id}/emergency-stop", role="admin", json={"reason": "r1"}).ok
    assert api.call("POST", f"/admin/jobs/{job_id}/emergency-stop", role="admin", json={"reason": "r2"}).status_code \
        == 409
    assert api.call("POST", f"/admin/jobs/{job_id}/republish", token="guess").status_code == 401
    done, refused_state, refused_token = admin_log
    fingerprint = hashlib.sha256(TOKENS["admin"].encode()).hexdigest()[:12]
    assert (done.action, done.role, done.token_fingerprint, done.outcome, done.job_id, done.reason) == (
        "emergency_stop", "admin", fingerprint, "ok", job_id, "r1")
    assert (refused_state.action, refused_state.outcome, refused_state.token_fingerprint) == (
        "emergency_stop", "invalid_state", fingerprint)
    assert (refused_token.action, refused_token.error_code, refused_token.levelname) == (
        "republish", "unauthorized", "WARNING")
    assert refused_token.token_fingerprint == hashlib.sha256(b"guess").hexdigest()[:12]
    for record in admin_log:
        assert TOKENS["admin"] not in json.dumps(vars(record), default=str)
        assert "guess\"" not in json.dumps(vars(record), default=str)


def test_cli_calls_the_admin_api(api):
    job_id = api.queued_job()
    runner = CliRunner()
    base = ["admin", "--url", api.base]
    result = runner.invoke(main, [*base, "--token", TOKENS["viewer"], "queues"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["queues"]["jobs"] == 1
    result = runner.invoke(main, [*base, "stuck", "--minutes", "5"], env={"BEACON_TOKEN": TOKENS["viewer"]})
    assert result.exit_code == 0 and json.loads(result.output)["jobs"] == []
    result = runner.invoke(main, [*base, "--token", TOKENS["operator"], "republish", job_id])
    assert result.exit_code == 0 and json.loads(result.output)["published"] == 1
    result = runner.invoke(main, [*base, "--token", TOKENS["operator"], "emergency-stop", job_id, "--reason", "r"])
    assert result.exit_code == 1 and json.loads(result.output)["error_code"] == "forbidden"
    result = runner.invoke(main, [*base, "--token", TOKENS["admin"], "emergency-stop", job_id, "--reason", "r"])
    assert result.exit_code == 0 and json.loads(result.output)["status"] == "failed"
    result = runner.invoke(main, [*base, "--token", TOKENS["admin"], "reload-keys"])
    assert result.exit_code == 0 and json.loads(result.output)["keys"] == 1
    result = runner.invoke(main, [*base, "queues"], env={"BEACON_TOKEN": ""})
    assert result.exit_code == 2 and "BEACON_TOKEN" in result.output
