"""The execution engine end to end: real API, real Postgres, a real Celery worker on Redis (and
RabbitMQ), providers reached over HTTP on a real simulator server on loopback."""

from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import select, update

from app import create_app
from beacon.crypto.signing import KeyPair, sign_document
from beacon.db import database_for
from beacon.execution import engine
from beacon.models import Execution, Job
from beacon.timeutil import isoformat, utcnow
from tests.conftest import RABBITMQ_URL, REDIS_BASE_URL, REDIS_IDLE_DB
from tests.factories import body, make_spec, seed_answered_job
from tests.faults.services import throwaway_redis
from tests.stack import Stack, constraints
from tests.support import WorkerProcess, serve_wsgi, wait_for

S = 10**9
QUESTIONS = ["math_basic", "tiananmen_neutral", "greatest_invention"]
MODELS = ["llama3.2-1b", "mistral-7b"]


def test_three_regions_two_models_three_questions(fresh):
    job_id = fresh.submit(questions=QUESTIONS, models=MODELS)
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "completed", view["status_reason"]
    units = view["executions"]
    assert len(units) == 18
    assert {(u["region"], u["model_id"], u["question_id"]) for u in units} == {
        (r, m, q) for r in ("US", "EU", "APAC") for m in MODELS for q in QUESTIONS
    }
    for unit in units:
        assert unit["status"] == "completed" and unit["attempts"] == 1
        assert unit["served_region"] == unit["region"]
        assert unit["started_at"] <= unit["completed_at"]
        assert unit["output"] and len(unit["output_sha256"]) == 64
        assert unit["provider"] in ("simulator", "openai")  # the router's provider_used, else the client
    refusals = {(u["region"], u["question_id"]) for u in units if u["classification"] == "content_refusal"}
    assert refusals == {("APAC", "tiananmen_neutral")}
    assert view["counts"] == {"units": 18, "completed": 18, "failed": 0, "timeout": 0}
    assert len(fresh.served()) == 18, "each unit called its provider exactly once"


def test_finished_at_is_stamped_after_sealing(fresh):
    """finished_at is the finalising commit's time: not before the bundle and the log entry were made."""
    from beacon.models import Bundle, TransparencyEntry

    job_id = fresh.submit()
    assert fresh.wait_terminal(job_id)["status"] == "completed"
    with fresh.db.session() as session:
        job = session.get(Job, job_id)
        bundle = session.scalars(select(Bundle).where(Bundle.job_id == job_id)).one()
        entry = session.scalars(select(TransparencyEntry).where(TransparencyEntry.job_id == job_id)).one()
        assert job.finished_at >= entry.created_at >= bundle.created_at
        assert job.finished_at >= job.finalizing_at


def overlap(calls) -> bool:  # noqa: ANN001
    """Whether the simulator's calls were all in flight at one moment (the last began before the first ended)."""
    return max(call["started"] for call in calls) < min(call["finished"] for call in calls)


def test_units_of_different_regions_run_concurrently(fresh):
    fresh.control(latency_ms=400)
    job_id = fresh.submit()
    assert fresh.wait_terminal(job_id)["status"] == "completed"
    calls = {call["region"]: call for call in fresh.served()}
    assert set(calls) == {"US", "EU", "APAC"}
    assert overlap(calls.values()), f"the three region calls did not overlap: {calls}"


def test_the_units_of_one_region_run_side_by_side(fresh):
    """The job starts one lane for the region; a lane forks while its unit waits on the provider,
    so four slow units still overlap (a lane alone would run them one after another)."""
    fresh.control(latency_ms=1500)
    job_id = fresh.submit(questions=["math_basic", "geography_basic"], models=MODELS,
                          constraints=constraints(regions=["EU"]))
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "completed" and view["counts"]["completed"] == 4
    calls = fresh.served()
    assert len(calls) == 4, "each unit called its provider exactly once"
    assert overlap(calls), f"the region's four calls did not overlap: {calls}"


def test_transient_5xx_is_retried_and_recorded_once(fresh):
    fresh.control(fail_next=[{"status": 503, "region": "EU"}, {"status": 502, "region": "EU"}])
    job_id = fresh.submit()
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "completed"
    eu = [u for u in view["executions"] if u["region"] == "EU"]
    assert len(eu) == 1 and eu[0]["status"] == "completed" and eu[0]["attempts"] == 3
    assert "failure" not in eu[0]


def test_4xx_fails_at_once_with_taxonomy(fresh):
    fresh.control(fail_next=[{"status": 400, "region": "US"}])
    job_id = fresh.submit(constraints=constraints(min_success_rate=0.5))
    view = fresh.wait_terminal(job_id)
    us = [u for u in view["executions"] if u["region"] == "US"][0]
    assert us["status"] == "failed" and us["attempts"] == 1
    assert us["classification"] == "technical_failure"
    failure = us["failure"]
    assert failure["code"] == "http_400" and failure["transient"] is False
    assert failure["region"] == "US" and failure["model"] == "llama3.2-1b" and failure["stage"] == "response"
    assert view["status"] == "completed"  # 2/3 ≥ 0.5
    assert view["counts"]["failed"] == 1


def test_min_success_rate_not_met_fails_the_job(fresh):
    fresh.control(fail_next=[{"status": 404, "region": "US"}])
    job_id = fresh.submit(constraints=constraints(min_success_rate=1.0))
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "failed"
    assert "2/3 units succeeded" in view["status_reason"]


def test_min_regions_not_met_fails_the_job(fresh):
    fresh.control(fail_next=[{"status": 400, "region": "US"}, {"status": 400, "region": "EU"}])
    job_id = fresh.submit(constraints=constraints(min_success_rate=0, min_regions=2))
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "failed"
    assert "1 regions with a success (needed 2)" in view["status_reason"]


def test_same_job_delivered_twice_gives_one_execution_set(fresh):
    fresh.control(latency_ms=100)
    job_id = fresh.submit(questions=["math_basic", "geography_basic"])
    for _ in range(3):
        fresh.republish(job_id)
    view = fresh.wait_terminal(job_id)
    assert view["status"] == "completed"
    assert len(view["executions"]) == 6
    with fresh.db.session() as session:
        ids = list(session.scalars(select(Execution.id).where(Execution.job_id == job_id)))
    for execution_id in ids:  # duplicate unit messages are no-ops too
        fresh.dispatch(execution_id, "US", 0)
    wait_for(lambda: len(fresh.served()) == 6, what="six provider calls")
    assert all(u["attempts"] == 1 for u in fresh.job(job_id)["executions"])


def test_cancel_mid_job(fresh, keys):
    fresh.control(latency_ms=3000)
    job_id = fresh.submit(questions=QUESTIONS)
    wait_for(lambda: fresh.job(job_id)["status"] == "running", what="job running")
    unauthorised = requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", timeout=10)
    assert unauthorised.status_code == 401
    other = KeyPair.generate()
    forged = sign_document({"action": "cancel", "job_id": job_id, "nonce": uuid.uuid4().hex,
                            "timestamp": isoformat(utcnow())}, other.signing_key)
    assert requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", json=forged, timeout=10).status_code == 403
    unsigned_nonce = sign_document({"action": "cancel", "job_id": job_id, "timestamp": isoformat(utcnow())},
                                   keys.signing_key)
    refused = requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", json=unsigned_nonce, timeout=10)
    assert refused.status_code == 400 and refused.json()["error_code"] == "missing_field:nonce"
    signed = sign_document({"action": "cancel", "job_id": job_id, "nonce": uuid.uuid4().hex,
                            "timestamp": isoformat(utcnow()), "reason": "wrong model"}, keys.signing_key)
    response = requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", json=signed, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["units_cancelled"] == 9
    view = fresh.job(job_id)
    assert view["status"] == "cancelled" and view["status_reason"] == "wrong model"
    assert {u["status"] for u in view["executions"]} == {"cancelled"}
    replayed = requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", json=signed, timeout=10)
    assert replayed.status_code == 400 and replayed.json()["error_code"] == "replay_detected"
    fresh_nonce = sign_document({"action": "cancel", "job_id": job_id, "nonce": uuid.uuid4().hex,
                                 "timestamp": isoformat(utcnow())}, keys.signing_key)
    again = requests.post(f"{fresh.api}/api/v1/jobs/{job_id}/cancel", json=fresh_nonce, timeout=10)
    assert again.status_code == 409 and again.json()["error_code"] == "invalid_state"
    assert again.json()["details"]["status"] == "cancelled"
    fresh.reset()  # release the slow calls; their answers must not be recorded
    wait_for(lambda: all(c["finished"] for c in fresh.served()), what="slow calls to end")
    assert {u["status"] for u in fresh.job(job_id)["executions"]} == {"cancelled"}


def test_cancel_with_operator_token(make_settings, clean_db, trusted_keys_file, keypair):
    """No worker consumes this broker database, so the job is still queued when cancelled."""
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}",
                             TRUSTED_KEYS_FILE=trusted_keys_file, OPERATOR_TOKENS="op-secret",
                             VIEWER_TOKENS="view-secret")
    with serve_wsgi(create_app(settings)) as api:
        spec = make_spec(keypair)
        assert requests.post(f"{api}/api/v1/jobs", data=body(spec), headers={"Content-Type": "application/json"},
                             timeout=10).status_code == 202
        url = f"{api}/api/v1/jobs/{spec['id']}/cancel"
        assert requests.post(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert requests.post(url, headers={"Authorization": "Bearer view-secret"}, timeout=10).status_code == 403
        ok = requests.post(url, headers={"Authorization": "Bearer op-secret"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["previous_status"] == "queued"
        assert requests.get(f"{api}/api/v1/jobs/{spec['id']}", timeout=10).json()["status"] == "cancelled"


def test_provider_hang_times_out_units_and_finalises_by_the_deadline(fresh):
    fresh.control(hang_next=100)
    job_id = fresh.submit(constraints={"regions": ["US"], "min_regions": 1, "timeout": 30 * S,
                                       "provider_timeout": 10 * S})
    view = fresh.wait_terminal(job_id, timeout=60)
    assert view["status"] == "failed"
    [unit] = view["executions"]
    assert unit["status"] == "timeout"
    # No sweeper runs here: only the deadline cutting the hung call can have finalised the job.
    with fresh.db.session() as session:
        job = session.get(Job, job_id)
        assert job.finished_at >= job.deadline_at


def test_worker_killed_mid_unit_recovers(fresh):
    fresh.control(region_latency_ms={"EU": 4000})
    job_id = fresh.submit(constraints=constraints(provider_timeout=3 * S))
    wait_for(lambda: any(c["region"] == "EU" and c["finished"] is None for c in fresh.served()),
             what="the EU unit in flight")
    killed = fresh.workers[-1]
    killed.kill()
    fresh.control(region_latency_ms={"EU": 5})
    fresh.start_worker()
    view = fresh.wait_terminal(job_id, timeout=60, sweep=True)
    assert view["status"] == "completed"
    assert len(view["executions"]) == 3
    eu = [u for u in view["executions"] if u["region"] == "EU"][0]
    assert eu["status"] == "completed" and eu["attempts"] == 2


def test_poison_unit_is_dead_lettered(fresh):
    job_id = fresh.submit(constraints={"regions": ["US"], "min_regions": 1})
    view = fresh.wait_terminal(job_id)
    # Replay a unit whose every claim "crashed": attempts exhausted and the lease expired.
    with fresh.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="running", finalizing_at=None,
                                                                      deadline_at=utcnow().replace(year=2100)))
        session.execute(update(Execution).where(Execution.job_id == job_id).values(
            status="running", attempts=fresh.settings.max_unit_attempts, lease_expires_at=utcnow().replace(year=2000)))
    view = fresh.wait_terminal(job_id, sweep=True)
    [unit] = view["executions"]
    assert unit["status"] == "failed" and unit["failure"]["code"] == "poison"
    assert unit["failure"]["dead_letter"] is True
    assert unit["attempts"] == fresh.settings.max_unit_attempts


def test_job_on_rabbitmq(tmp_path, pg_url, clean_db, keys):
    stack = Stack(tmp_path, pg_url, RABBITMQ_URL, keys)
    try:
        stack.start_worker()
        job_id = stack.submit(questions=QUESTIONS, models=MODELS)
        view = stack.wait_terminal(job_id)
        assert view["status"] == "completed"
        assert len(view["executions"]) == 18
        assert len(stack.served()) == 18
    finally:
        stack.close()


@pytest.fixture
def own_broker():
    """A private Redis, so no other test's worker (the module's stack) takes these messages."""
    with throwaway_redis() as server:
        yield server.url


def test_cancel_aborts_the_call_in_flight(tmp_path, pg_url, clean_db, keys, own_broker):
    """A worker with one thread whose call hangs: cancelling the job aborts the call (the worker
    watches the jobs of its calls), so the thread is free for the next job long before the
    provider timeout (60 s) would have freed it."""
    stack = Stack(tmp_path, pg_url, own_broker, keys, extra_env={"JOB_END_POLL_SECONDS": "0.2"})
    try:
        stack.workers.append(WorkerProcess(stack.env, tmp_path / "one.log", "one", ("-c", "1")).start(stack.celery))
        stack.control(hang_next=1)
        hung = stack.submit(constraints={"regions": ["US"], "min_regions": 1, "provider_timeout": 60 * S})
        wait_for(lambda: any(c["finished"] is None for c in stack.served()), what="the call to hang")
        signed = sign_document({"action": "cancel", "job_id": hung, "nonce": uuid.uuid4().hex,
                                "timestamp": isoformat(utcnow())}, keys.signing_key)
        assert requests.post(f"{stack.api}/api/v1/jobs/{hung}/cancel", json=signed, timeout=10).status_code == 200
        after = stack.submit(constraints={"regions": ["US"], "min_regions": 1})
        assert stack.wait_terminal(after, timeout=30)["status"] == "completed"
        [unit] = stack.job(hung)["executions"]
        assert unit["status"] == "cancelled" and unit.get("output") is None
    finally:
        stack.close()


def test_cancel_frees_the_threads_of_slow_calls_with_the_default_settings(tmp_path, pg_url, clean_db, keys,
                                                                          own_broker):
    """Default JOB_END_POLL_SECONDS, a provider answering in 100 s and a worker of two threads both
    in such calls: after the cancel both threads serve the next job (which answers at once) long
    before the slow answers would have come, and the cancelled units record ``cancelled``."""
    stack = Stack(tmp_path, pg_url, own_broker, keys)
    try:
        stack.workers.append(WorkerProcess(stack.env, tmp_path / "two.log", "two", ("-c", "2")).start(stack.celery))
        stack.control(latency_ms=100_000)
        slow = stack.submit(questions=QUESTIONS[:2], constraints={"regions": ["US"], "min_regions": 1,
                                                                  "provider_timeout": 300 * S})
        wait_for(lambda: len(stack.served()) == 2, what="both slow calls in flight")
        stack.control(latency_ms=5)  # the calls in flight keep their 100 s; later ones answer at once
        signed = sign_document({"action": "cancel", "job_id": slow, "nonce": uuid.uuid4().hex,
                                "timestamp": isoformat(utcnow())}, keys.signing_key)
        assert requests.post(f"{stack.api}/api/v1/jobs/{slow}/cancel", json=signed, timeout=10).status_code == 200
        after = stack.submit(questions=QUESTIONS[:2], constraints={"regions": ["US"], "min_regions": 1})
        assert stack.wait_terminal(after, timeout=60)["status"] == "completed"
        assert {u["status"] for u in stack.job(slow)["executions"]} == {"cancelled"}
        assert all(u.get("output") is None for u in stack.job(slow)["executions"])
    finally:
        stack.close()


def test_a_slow_region_does_not_delay_another_regions_units(tmp_path, pg_url, clean_db, keys, own_broker):
    """One worker of 3 threads serving 3 regions, no max_in_flight in the providers file: each region's
    share is 1 slot. APAC answers in 60 s; its other units go back to their queue instead of holding
    threads (not counted as attempts), so a US + EU job completes while APAC's first call is in flight."""
    stack = Stack(tmp_path, pg_url, own_broker, keys)
    try:
        providers = tmp_path / "providers.toml"
        providers.write_text(providers.read_text().replace("max_in_flight = 16\n", ""))
        stack.workers.append(WorkerProcess(stack.env, tmp_path / "fair.log", "fair", ("-c", "3")).start(stack.celery))
        stack.control(region_latency_ms={"APAC": 60000})
        slow = stack.submit(questions=QUESTIONS, models=MODELS, constraints={"regions": ["APAC"], "min_regions": 1})
        wait_for(lambda: any(c["region"] == "APAC" for c in stack.served()), what="an APAC call")
        fast = stack.submit(questions=QUESTIONS, models=MODELS, constraints={"regions": ["US", "EU"], "min_regions": 1})
        view = stack.wait_terminal(fast, timeout=40)
        assert view["status"] == "completed" and view["counts"]["completed"] == 12
        apac = [c for c in stack.served() if c["region"] == "APAC"]
        assert len(apac) == 1 and apac[0]["finished"] is None  # the slow region's one slot, still busy
        waiting = [u for u in stack.job(slow)["executions"] if u["status"] == "pending"]
        assert len(waiting) == 5 and {u["attempts"] for u in waiting} == {0}  # put back, never claimed
    finally:
        stack.close()


def test_a_unit_of_a_region_the_worker_does_not_serve_is_rerouted_not_run(tmp_path, pg_url, clean_db, keys,
                                                                         own_broker):
    """A US-only worker handed an EU unit (a message on the wrong queue) sends it to region.EU
    without claiming or calling; the EU worker then runs it once."""
    import redis

    from beacon.messaging.celery_app import EXECUTE_UNIT

    stack = Stack(tmp_path, pg_url, own_broker, keys)
    try:
        stack.workers.append(WorkerProcess(stack.env, tmp_path / "us.log", "us", ("--regions", "US")).start(stack.celery))
        job_id = stack.submit(constraints={"regions": ["EU"], "min_regions": 1})
        broker = redis.Redis.from_url(own_broker)
        wait_for(lambda: broker.llen("region.EU") == 1, what="the EU unit queued")
        [unit] = stack.job(job_id)["executions"]
        stack.celery.send_task(EXECUTE_UNIT, args=[unit["id"]], kwargs={"region": "EU"}, queue="region.US")
        wait_for(lambda: broker.llen("region.EU") == 2, what="the unit re-routed to region.EU")
        [unit] = stack.job(job_id)["executions"]
        assert unit["status"] == "pending" and unit["attempts"] == 0 and stack.served() == []
        stack.workers.append(WorkerProcess(stack.env, tmp_path / "eu.log", "eu",
                                           ("--regions", "EU", "--no-orchestration")).start(stack.celery))
        assert stack.wait_terminal(job_id)["status"] == "completed"
        assert [c["region"] for c in stack.served()] == ["EU"]
    finally:
        stack.close()


def test_retries_do_not_count_as_lost_claims_and_stop_at_max_provider_calls(tmp_path, pg_url, clean_db, keys,
                                                                           own_broker):
    """Transient failures retry past MAX_UNIT_ATTEMPTS (they are not lost claims) up to
    MAX_PROVIDER_CALLS calls; the unit then fails with its last error code, not poison."""
    stack = Stack(tmp_path, pg_url, own_broker, keys, extra_env={"MAX_UNIT_ATTEMPTS": "2", "MAX_PROVIDER_CALLS": "4"})
    try:
        stack.start_worker()
        stack.control(fail_next=[{"status": 503, "region": "US"}] * 3 + [{"status": 502, "region": "EU"}] * 4)
        job_id = stack.submit(constraints=constraints(regions=["US", "EU"], min_success_rate=0.5))
        view = stack.wait_terminal(job_id)
        units = {u["region"]: u for u in view["executions"]}
        assert units["US"]["status"] == "completed" and units["US"]["attempts"] == 4  # 3 retries > MAX_UNIT_ATTEMPTS
        eu = units["EU"]
        assert eu["status"] == "failed" and eu["attempts"] == 4
        assert eu["failure"]["code"] == "http_502" and eu["failure"]["retries_ended"] == "max_provider_calls"
        assert eu["failure"]["provider_calls"] == 4
        assert len([c for c in stack.served() if c["region"] == "EU"]) == 4
    finally:
        stack.close()


def test_no_retry_the_deadline_leaves_no_time_for(tmp_path, pg_url, clean_db, keys, own_broker):
    """A transient failure whose backoff would end too close to the job's deadline fails the unit
    with that error at once (retries_ended: deadline), rather than waiting to be timed out."""
    stack = Stack(tmp_path, pg_url, own_broker, keys,
                  extra_env={"UNIT_RETRY_BASE_SECONDS": "60", "UNIT_RETRY_MAX_SECONDS": "60"})
    try:
        stack.start_worker()
        stack.control(fail_next=[{"status": 503, "region": "US"}])
        job_id = stack.submit(constraints={"regions": ["US"], "min_regions": 1, "timeout": 30 * S,
                                           "provider_timeout": 10 * S})
        view = stack.wait_terminal(job_id, timeout=20)
        [unit] = view["executions"]
        assert unit["status"] == "failed" and unit["failure"]["code"] == "http_503"
        assert unit["failure"]["retries_ended"] == "deadline"
    finally:
        stack.close()


# ----------------------------------------------------------------- finalisation after the last units, directly


@pytest.fixture
def two_open_units(make_settings, clean_db, keypair, tmp_path):
    """A running job of two units (US and EU), each claimed (``engine.claim_unit``), not yet recorded."""


    KeyPair.generate().save(tmp_path / "runner.key")
    settings = make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=tmp_path / "runner.key", LOG_LEVEL="WARNING")
    db = database_for(clean_db)
    job_id = seed_answered_job(db, settings, keypair, ["math_basic"], regions=("US", "EU"))
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(provider_timeout_ms=30_000))
        session.execute(update(Execution).where(Execution.job_id == job_id).values(
            status="pending", attempts=0, output=None, classification=None, completed_at=None))
        ids = sorted(session.scalars(select(Execution.id).where(Execution.job_id == job_id)))
    claims = [engine.claim_unit(db, settings, execution_id) for execution_id in ids]
    assert all(claims)
    return db, settings, job_id, claims


class Finalised:
    """A unit observer noting the job's finalisation (its status) by the delivery."""

    status: str | None = None

    def claimed(self, claim) -> None: ...  # noqa: ANN001
    def outcome(self, outcome) -> None: ...  # noqa: ANN001

    def finalised(self, status: str | None) -> None:
        self.status = status


def record_then_finalize(db, settings, claim):  # noqa: ANN001, ANN201
    """The rest of a unit's delivery after its provider call answered (``step_unit`` taking up a
    delivery with the answer to record): record it, then finalise the job if no unit is left open.
    Returns the outcome and the job's status when this delivery finalised it."""
    answer = {"kind": "answer", "output": "Four.", "provider": "simulator", "served_region": claim.region}
    finalised = Finalised()
    outcome = engine.step_unit(db, settings, None, claim.execution_id, None, observer=finalised,
                               resume={"claim": claim.to_resume(), "record": answer})
    assert outcome.status == "completed"
    return outcome, finalised.status


def finalised_once(db, job_id: str) -> None:  # noqa: ANN001
    from beacon.models import Bundle, Event, TransparencyEntry

    with db.session() as session:
        assert session.get(Job, job_id).status == "completed"
        assert len(session.scalars(select(Bundle).where(Bundle.job_id == job_id)).all()) == 1
        assert len(session.scalars(select(TransparencyEntry).where(TransparencyEntry.job_id == job_id)).all()) == 1
        events = session.scalars(select(Event).where(Event.job_id == job_id).order_by(Event.seq)).all()
    types = [e.type for e in events]
    assert types.count("job.completed") == 1 and types.count("unit.completed") == 2
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_the_last_unit_recorded_finalises_the_job_and_the_one_before_does_not(two_open_units):
    db, settings, job_id, (first, last) = two_open_units
    outcome, status = record_then_finalize(db, settings, first)
    assert (outcome.last, status) == (False, None)  # the recording saw the other unit open, nothing in between
    outcome, status = record_then_finalize(db, settings, last)
    assert (outcome.last, status) == (True, "completed")
    assert engine.finalize_if_complete(db, settings, job_id) is None  # a second delivery: already final
    finalised_once(db, job_id)


def test_two_last_units_recorded_together_finalise_the_job_exactly_once(two_open_units):
    import threading

    db, settings, job_id, claims = two_open_units
    statuses: list[str | None] = []
    together = threading.Barrier(len(claims))

    def deliver(claim) -> None:  # noqa: ANN001
        together.wait()
        statuses.append(record_then_finalize(db, settings, claim)[1])

    threads = [threading.Thread(target=deliver, args=(claim,)) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 2 and statuses.count("completed") == 1 and statuses.count(None) == 1
    finalised_once(db, job_id)


def test_a_unit_ended_while_the_last_one_is_recorded_is_seen_and_the_job_finalised(two_open_units):
    """The race the recording statement must not lose: the other unit ends (its event bumping the job's
    event_seq) after the statement's snapshot, which still shows it open. The statement waits for the
    job row, sees the bump it did not expect, and leaves the question to a read after its commit."""
    import threading

    from beacon.execution.classify import classify
    from beacon.messaging.events import emit

    db, settings, job_id, (other, last) = two_open_units
    results = []
    with db.session() as session:  # the other unit ends; its transaction holds the job row until commit
        session.execute(update(Execution).where(Execution.id == other.execution_id).values(
            status="completed", output="Four.", classification=classify("Four.", failed=False)))
        emit(session, job_id, "unit.completed", {"execution_id": other.execution_id})
        delivery = threading.Thread(target=lambda: results.append(record_then_finalize(db, settings, last)))
        delivery.start()
        wait_for(lambda: waiting_on_a_lock(db) > 0, what="the recording statement waiting for the job row")
    delivery.join()
    [(outcome, status)] = results
    assert (outcome.last, status) == (None, "completed")
    with db.session() as session:
        assert session.get(Job, job_id).status == "completed"


def waiting_on_a_lock(db) -> int:  # noqa: ANN001
    from sqlalchemy import text

    with db.session() as session:
        return session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'"))


def test_a_resumed_claim_that_used_the_last_attempt_dead_letters_the_unit(two_open_units):
    """On Postgres the claim that uses a unit's last attempt commits before the unit is failed as
    poison; a delivery whose database went away in between takes the claim up again and fails it then."""
    db, settings, job_id, (unit, _) = two_open_units
    stamp = utcnow()
    with db.session() as session:  # the claim committed: its attempt counted, the dead-lettering did not
        session.execute(update(Execution).where(Execution.id == unit.execution_id).values(
            status="running", claimed_at=stamp, attempts=settings.max_unit_attempts + 1))
    claim = engine.claim_unit(db, settings, unit.execution_id, held_since=stamp)
    assert claim is not None and claim.dead_lettered
    with db.session() as session:
        failed = session.get(Execution, unit.execution_id)
        assert (failed.status, failed.failure["code"], failed.attempts) == ("failed", "poison",
                                                                             settings.max_unit_attempts)
