"""Sentry end to end with a real sentry-sdk: the API as ``beacon api`` (gunicorn) and real Celery
workers, in their own processes, report to a Sentry-compatible envelope sink on 127.0.0.1
(tests/sentry_sink.py). The sink is the one fake: sentry.io cannot run here. Postgres, the Redis
broker, the workers and the loopback provider simulator are real.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sentry_sdk
from kombu import Connection, Queue
from sqlalchemy import select, update

from app import create_app
from app.services import Services
from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.execution import engine
from beacon.execution.providers import serve_simulator
from beacon.messaging.celery_app import EXECUTE_UNIT, JOBS_QUEUE, RELAY_OUTBOX, RUN_JOB, make_celery
from beacon.messaging.dispatch import dispatch_unit
from beacon.messaging.outbox import enqueue
from beacon.models import Job, OutboxMessage
from beacon.observability.sentry import NEVER_TRACED
from beacon.settings import Settings
from beacon.timeutil import utcnow
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB, REDIS_IDLE_DB, REDIS_LIMITS_DB
from tests.factories import body, make_spec
from tests.sentry_sink import SentrySink
from tests.support import ApiProcess, WorkerProcess, run_together, serve_wsgi, spare_port, wait_for

SECRET = f"admin-{uuid.uuid4().hex}"
RELEASE = "beacon-runner@sentry-test"
QUEUES = [JOBS_QUEUE, "region.US", "region.EU", "region.APAC"]


def purge(broker_url: str) -> None:
    with Connection(broker_url) as conn:
        for name in QUEUES:
            Queue(name, channel=conn.default_channel).declare()
            Queue(name, channel=conn.default_channel).purge()


class SentryStack:
    """API (with Sentry, default sampling) + simulator + two workers, started together:

    ``worker`` reports to the module's sink; ``quiet`` reports to a sink of its own, uses a broker
    database no other worker consumes and only the region queues (its test starts jobs itself).
    """

    def __init__(self, tmp: Path, pg_url: str, sink: SentrySink):
        self.tmp, self.keypair = tmp, KeyPair.generate()
        self.simulator = serve_simulator(latency_ms=5)
        providers = tmp / "providers.toml"
        providers.write_text("".join(
            f'[regions.{region}]\nprovider = "hybrid_router"\nbase_url = "{self.simulator.url}"\n\n'
            for region in ("US", "EU", "APAC")
        ))
        keys = tmp / "trusted.json"
        keys.write_text(json.dumps([{"kid": "t", "public_key": self.keypair.public_key_b64, "status": "active"}]))
        self.broker_url = f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"
        self.env = {
            "BEACON_DATA_DIR": str(tmp / "data"),
            "DATABASE_URL": pg_url,
            "CELERY_BROKER_URL": self.broker_url,
            "RATE_LIMIT_REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_LIMITS_DB}",
            "PROVIDERS_FILE": str(providers),
            "TRUSTED_KEYS_FILE": str(keys),
            "ADMIN_TOKEN": SECRET,
            "SENTRY_DSN": sink.dsn,
            "SENTRY_ENVIRONMENT": "test",
            "SENTRY_RELEASE": RELEASE,
            "FLY_REGION": "ams",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
        }
        self.settings = Settings.from_env(self.env)
        self.db = database_for(pg_url)
        self.celery = make_celery(self.settings)
        self.quiet_sink = SentrySink()
        quiet_env = {**self.env, "SENTRY_DSN": self.quiet_sink.dsn, "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}"}
        self.quiet_settings = Settings.from_env(quiet_env)
        for url in (self.broker_url, self.quiet_settings.broker_url):
            purge(url)
        self.api = ApiProcess({**self.env, "METRICS_PORT": str(spare_port())}, tmp / "api.log")
        self.worker = WorkerProcess(self.env, tmp / "worker.log", "sentry")
        self.quiet = WorkerProcess(quiet_env, tmp / "quiet.log", "quiet", ("--no-orchestration",))

    def start(self) -> None:
        run_together(self.api.start, lambda: self.worker.start(self.celery),
                       lambda: self.quiet.start(make_celery(self.quiet_settings)))

    def control(self, **payload) -> None:
        requests.post(f"{self.simulator.url}/_control", json=payload, timeout=5).raise_for_status()

    def reset(self) -> None:
        requests.post(f"{self.simulator.url}/_reset", timeout=5).raise_for_status()

    def served(self) -> list[dict]:
        return requests.get(f"{self.simulator.url}/_requests", timeout=5).json()

    def submit(self, headers: dict | None = None, **overrides) -> str:
        spec = make_spec(self.keypair, **overrides)
        response = requests.post(f"{self.api.url}/api/v1/jobs", data=body(spec),
                                 headers={"Content-Type": "application/json", **(headers or {})}, timeout=10)
        assert response.status_code == 202, response.text
        return spec["id"]

    def wait_terminal(self, job_id: str) -> dict:
        def done():
            view = requests.get(f"{self.api.url}/api/v1/jobs/{job_id}", timeout=10).json()
            return view if view["status"] in ("completed", "failed", "cancelled") else None

        return wait_for(done, timeout=60, interval=0.1, what=f"job {job_id} to end")

    def close(self) -> None:
        run_together(self.api.stop, self.worker.stop, self.quiet.stop)
        purge(self.quiet_settings.broker_url)
        self.quiet_sink.close()
        self.simulator.close()


@pytest.fixture(scope="module")
def sink():
    found = SentrySink()
    yield found
    found.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url, sink):
    found = SentryStack(tmp_path_factory.mktemp("sentry"), pg_url, sink)
    try:
        found.start()
        yield found
    finally:
        found.close()


@pytest.fixture
def fresh(stack, clean_db):
    stack.reset()
    purge(stack.broker_url)
    return stack


def tagged(events: list[dict], **tags: str) -> list[dict]:
    return [e for e in events if all(e.get("tags", {}).get(k) == v for k, v in tags.items())]


def test_api_logs_sentry_startup_line(stack):
    lines = [line for line in stack.api.log_path.read_text().splitlines() if '"message":"Sentry initialized"' in line]
    assert lines, "no startup line"
    assert lines[0].startswith('{"level":"info","message":"Sentry initialized","environment":"test",')
    entry = json.loads(lines[0])
    assert entry["release"] == RELEASE and entry["role"] == "api" and entry["traces_sample_rate"] == 0.2
    worker_lines = [json.loads(line) for line in stack.worker.log_path.read_text().splitlines()
                    if '"message":"Sentry initialized"' in line]
    assert [line["role"] for line in worker_lines] == ["worker"], "one init in the worker's one process"


def test_beat_initialises_sentry_at_start(stack, tmp_path):
    log = tmp_path / "beat.log"
    env = {**os.environ, **stack.env, "BEACON_DATA_DIR": str(tmp_path / "data"),
           "CELERY_BROKER_URL": stack.quiet_settings.broker_url}  # its relay and sweep messages go nowhere
    with log.open("ab") as out:
        beat = subprocess.Popen([sys.executable, "-m", "beacon", "beat"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def started() -> str | None:
            assert beat.poll() is None, log.read_text()[-3000:]
            return next((line for line in log.read_text().splitlines() if '"message":"Sentry initialized"' in line), None)

        line = wait_for(started, timeout=60, what="beat's Sentry startup line")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert json.loads(line)["role"] == "beat"


def test_admin_test_sentry_needs_the_admin_token_and_reports(stack, sink):
    url = f"{stack.api.url}/admin/test-sentry"
    refused = [
        requests.post(url, headers={"X-Request-ID": "refused-0"}, timeout=10),
        requests.post(url, headers={"X-Request-ID": "refused-1", "Authorization": "Bearer not-the-token"}, timeout=10),
    ]
    assert [r.status_code for r in refused] == [401, 401]
    assert [r.json()["error_code"] for r in refused] == ["unauthorized", "unauthorized"]
    assert refused[0].headers["X-Request-ID"] == "refused-0"

    answer = requests.post(url, json={"note": "hello", "api_token": SECRET}, timeout=10, headers={
        "Authorization": f"Bearer {SECRET}", "X-Request-ID": "allowed-1", "User-Agent": "beacon-test-agent/1.0",
        "Cookie": f"session={SECRET}"})
    assert answer.status_code == 500
    assert answer.json()["error_code"] == "sentry_test"
    event_id = answer.json()["details"]["event_id"]
    assert event_id and answer.headers["X-Request-ID"] == "allowed-1"

    event = sink.wait_for_event(lambda e: e["event_id"] == event_id, "the test event")
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "SentryTestError"
    assert exception["stacktrace"]["frames"], "no stack trace"
    request = event["request"]
    assert request["method"] == "POST" and request["url"].endswith("/admin/test-sentry")
    assert request["headers"]["Authorization"] == "[Filtered]"
    assert request["data"]["note"] == "hello" and request["data"]["api_token"] == "[Filtered]"
    assert "User-Agent" not in request["headers"], "the user agent is PII, off by default"
    assert event["tags"]["fly_region"] == "ams" and event["tags"]["request_id"] == "allowed-1"
    assert event["environment"] == "test" and event["release"] == RELEASE
    # Events leave in order, so anything the refused requests had captured would be here by now.
    assert not [e for e in sink.events() if e.get("tags", {}).get("request_id", "").startswith("refused-")]
    raw = sink.all_bytes()
    assert SECRET.encode() not in raw
    assert b"beacon-test-agent" not in raw


@contextmanager
def sentry_in_this_process():
    """Sentry is process-global: close the client and detach it so later tests see no Sentry."""
    try:
        yield
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def test_unhandled_error_arrives_with_request_and_no_secret(sink, make_settings, clean_db):
    settings = make_settings(DATABASE_URL=clean_db, SENTRY_DSN=sink.dsn, ADMIN_TOKEN=SECRET, FLY_REGION="fra",
                             SENTRY_RELEASE=RELEASE, TRUST_ENFORCE="false")
    with sentry_in_this_process():
        flask_app = create_app(settings)

        @flask_app.get("/_crash")
        def crash():
            candidate = settings.admin_tokens[0]  # a secret under an innocent local name
            raise RuntimeError(f"crashed after reading {len(candidate)} characters")

        with serve_wsgi(flask_app) as base:
            answer = requests.get(f"{base}/_crash", params={"token": SECRET}, timeout=10,
                                  headers={"Authorization": f"Bearer {SECRET}", "X-Request-ID": "crash-1"})
        assert answer.status_code == 500 and answer.json()["error_code"] == "internal_error"
        assert "Traceback" not in answer.text
        sentry_sdk.flush(timeout=10)
        event = sink.wait_for_event(lambda e: e.get("tags", {}).get("request_id") == "crash-1", "the crash event")
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    frames = exception["stacktrace"]["frames"]
    crash_frame = next(f for f in frames if f["function"] == "crash")
    assert crash_frame["vars"]["candidate"] == "'[Filtered]'"
    assert event["request"]["method"] == "GET" and event["request"]["url"].endswith("/_crash")
    assert event["request"]["headers"]["Authorization"] == "[Filtered]"
    assert event["tags"]["fly_region"] == "fra" and event["release"] == RELEASE
    assert SECRET.encode() not in sink.all_bytes()


def test_failed_units_are_reported_with_job_context_and_one_fingerprint(fresh, sink):
    fresh.control(fail_next=[{"status": 400, "region": "US"}, {"status": 400, "region": "US"}])
    job_id = fresh.submit(questions=["math_basic", "geography_basic"],
                          constraints={"regions": ["US", "EU", "APAC"], "min_regions": 1, "min_success_rate": 0.5})
    assert fresh.wait_terminal(job_id)["counts"]["failed"] == 2

    def two_events():
        found = tagged(sink.events(), job_id=job_id)
        return found if len(found) >= 2 else None

    events = wait_for(two_events, what="two provider failure events")
    assert len(tagged(sink.events(), job_id=job_id)) == 2
    assert {e["tags"]["question_id"] for e in events} == {"math_basic", "geography_basic"}
    for event in events:
        assert event["tags"]["region"] == "US" and event["tags"]["model_id"] == "llama3.2-1b"
        assert event["tags"]["provider"] == "hybrid_router" and event["tags"]["role"] == "worker"
        assert event["fingerprint"] == ["provider-failure", "US", "hybrid_router", "http_400"]
        assert event["exception"]["values"][-1]["type"] == "ProviderError"
        crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]
        for step in ("unit received", "provider call: http_400", "unit failed"):
            assert step in crumbs, f"breadcrumb {step!r} missing from {crumbs}"
        assert event["environment"] == "test" and event["release"] == RELEASE


def in_trace(sink: SentrySink, trace_id: str) -> list[str]:
    return sorted(t["transaction"] for t in sink.transactions() if t["contexts"]["trace"]["trace_id"] == trace_id)


def traceparent(trace_id: str) -> str:
    return f"{trace_id}-{uuid.uuid4().hex[:16]}-1"  # sampled: every process keeps the decision


def test_one_trace_from_the_request_through_run_job_to_each_unit_and_through_the_relay(fresh, sink):
    trace_id = uuid.uuid4().hex
    job_id = fresh.submit(headers={"sentry-trace": traceparent(trace_id)})
    assert fresh.wait_terminal(job_id)["status"] == "completed"
    with fresh.db.session() as session:
        stored = session.scalar(select(OutboxMessage.headers).where(OutboxMessage.args == [job_id]))
    assert stored["sentry-trace"].startswith(f"{trace_id}-"), "ingest keeps the request's trace with the row"
    expected = sorted(["/api/v1/jobs", f"publish {RUN_JOB}", RUN_JOB, EXECUTE_UNIT, EXECUTE_UNIT, EXECUTE_UNIT])
    wait_for(lambda: in_trace(sink, trace_id) == expected, what=f"the job's transactions in trace {trace_id}")

    # A row the relay publishes later continues the trace stored with it, not the relay task's.
    stored_trace = uuid.uuid4().hex
    with fresh.db.session() as session:
        row = enqueue(session, RUN_JOB, JOBS_QUEUE, [job_id], {"sentry-trace": traceparent(stored_trace)})
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)  # due now, as after a failed
                        .values(next_attempt_at=utcnow()))                       # fast path
    fresh.celery.send_task(RELAY_OUTBOX, queue=JOBS_QUEUE)
    wait_for(lambda: in_trace(sink, stored_trace) == sorted([f"relay {RUN_JOB}", RUN_JOB]),
             what="the relay's publish and run_job in the stored trace")


def test_cancellations_and_deadline_cuts_are_not_reported(fresh):
    """The worker captures both as typed exceptions and before_send drops them; the SDK counts the
    drops in the client report it sends when the worker exits: the drops are seen, the events never.
    """
    quiet, settings = fresh.quiet, fresh.quiet_settings
    ingest, celery = Services.build(settings).ingestor, make_celery(settings)

    def start(**overrides) -> tuple[str, list[tuple[int, str]]]:
        spec = make_spec(fresh.keypair, **overrides)
        assert ingest.submit(body(spec), "127.0.0.1", None).created
        units: list[tuple[int, str]] = []
        assert engine.start_job(fresh.db, settings, spec["id"], lambda _job, heads: units.extend(heads))
        return spec["id"], units

    def dispatch(units: list[tuple[int, str]]) -> None:
        for execution_id, region in units:
            dispatch_unit(execution_id, region, app=celery)

    try:
        # A unit cut by the job deadline: its call hangs until the deadline, 1.5 seconds away.
        late, units = start(constraints={"regions": ["US"], "min_regions": 1})
        with fresh.db.session() as session:
            session.execute(update(Job).where(Job.id == late).values(deadline_at=utcnow() + timedelta(seconds=1.5)))
        fresh.control(hang_next=1)
        dispatch(units)
        assert fresh.wait_terminal(late)["counts"]["timeout"] == 1
        fresh.reset()

        # A job cancelled while its three units are in flight.
        cancelled, units = start()
        fresh.control(hang_next=3)
        dispatch(units)
        wait_for(lambda: len([c for c in fresh.served() if c["finished"] is None]) == 3, what="three calls in flight")
        engine.end_job(fresh.db, fresh.settings, cancelled, status="cancelled", reason="changed my mind", action="cancel")
        fresh.reset()  # release the calls: their answers arrive for a cancelled job
        inspect = celery.control.inspect(destination=[quiet.name], timeout=1)
        wait_for(lambda: inspect.active() == {quiet.name: []}, what="the worker to finish the cancelled units")
    finally:
        quiet.stop()  # flushes the worker's Sentry queue and client report
    assert fresh.quiet_sink.discarded("before_send", "error") == 4  # 1 deadline cut + 3 cancelled units
    assert not [e for e in fresh.quiet_sink.events() if e.get("tags", {}).get("job_id") in (late, cancelled)]


def test_traces_sampled_near_twenty_percent_and_health_never(stack, sink):
    def traced_requests(count: int) -> list[int]:
        with requests.Session() as session:
            return [session.get(f"{stack.api.url}/api/v1/questions", timeout=10).status_code for _ in range(count)]

    with ThreadPoolExecutor(4) as pool:  # four clients at once
        assert [code for codes in pool.map(traced_requests, [125] * 4) for code in codes] == [200] * 500
    with requests.Session() as session:
        for path in sorted(NEVER_TRACED):
            base = stack.api.metrics_url if path == "/metrics" else stack.api.url  # metrics have a port of their own
            for _ in range(10):
                assert session.get(f"{base}{path}", timeout=10).status_code in (200, 503)
        # One request forced into the sample: the API sends transactions in order, so once this
        # one has arrived, every earlier one that was sampled has too.
        marker = uuid.uuid4().hex
        session.get(f"{stack.api.url}/api/v1/questions", headers={"sentry-trace": traceparent(marker)}, timeout=10)
    wait_for(lambda: in_trace(sink, marker), what="the marker transaction")
    names = [t["transaction"] for t in sink.transactions() if t["contexts"]["trace"]["trace_id"] != marker]
    traced = names.count("/api/v1/questions")
    mean, sigma = 500 * 0.2, math.sqrt(500 * 0.2 * 0.8)
    assert abs(traced - mean) <= 5 * sigma, f"{traced} of 500 requests traced"
    assert not set(names) & NEVER_TRACED, names


def test_cli_sentry_test(sink, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")},
           "BEACON_DATA_DIR": str(tmp_path / "data"), "SENTRY_DSN": sink.dsn}
    sent = subprocess.run([sys.executable, "-m", "beacon", "sentry-test"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith('{"level":"info","message":"Sentry initialized","environment":"development",')
    assert json.loads(sent.stdout.splitlines()[0])["release"] == "beacon-runner@0.1.0"  # no commit known here
    event_id = json.loads(sent.stdout.strip().splitlines()[-1])["event_id"]
    event = sink.wait_for_event(lambda e: e["event_id"] == event_id, "the CLI test event")
    assert event["exception"]["values"][-1]["type"] == "SentryTestError" and event["tags"]["role"] == "cli"


def test_a_websockets_normal_close_is_never_reported(stack, sink):
    """flask-sock ends each /ws by raising StopIteration through the WSGI stack under gunicorn; that is a
    close, not an error (here the client closes a socket that was streaming the embedded default's events)."""
    import simple_websocket

    ws = simple_websocket.Client.connect(stack.api.url.replace("http", "ws") + "/ws")
    ws.close()
    wait_for(lambda: not ws.connected, what="the socket to close")
    answer = requests.post(f"{stack.api.url}/admin/test-sentry", timeout=10,
                           headers={"Authorization": f"Bearer {SECRET}", "X-Request-ID": "after-ws-close"})
    event_id = answer.json()["details"]["event_id"]
    sink.wait_for_event(lambda e: e["event_id"] == event_id, "the event sent after the close")
    # The API process has one worker: had the close been captured, its event would have left first.
    kinds = {value.get("type") for event in sink.events() for value in event.get("exception", {}).get("values", [])}
    assert not kinds & {"StopIteration", "ConnectionError"}, kinds
