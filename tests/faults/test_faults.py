"""Fault injection against the real system: each case takes something away mid-run and checks
that every accepted job still ends, once, with its evidence (``tests/faults/cases.py`` lists the
cases, ``tests/faults/invariants.py`` the checks). Small scale here (the CI tier);
``scripts/faults --full`` runs them bigger (``BEACON_FAULTS_SCALE=full``).

Bounds are generous: they prove "recovered, not hung", they are not performance targets. Each
case appends its results to ``$BEACON_REPORT_DIR/faults.jsonl`` when that is set.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from beacon.migrate import upgrade
from tests.faults.cases import CASES
from tests.faults.harness import _TREE, FULL, FaultStack, S, peak_rss_mib
from tests.faults.invariants import Check
from tests.faults.services import throwaway_postgres
from tests.support import wait_for

pytestmark = pytest.mark.timeout(300)

QUESTIONS = ["math_basic", "geography_basic"] + (["greatest_invention", "taiwan_status"] if FULL else [])


def test_every_case_has_a_test():
    defined = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(CASES) <= defined, sorted(set(CASES) - defined)


def test_worker_sigkill(tmp_path, redis_server, scratch_pg):
    """Units in flight on a worker that is SIGKILLed, and the messages it had received, are run
    again by the next worker, once. The timers are the defaults' (a 30 s lease margin, 60 s before a
    pending unit counts as lost) with a 30 s provider timeout, so only the heartbeats can make the
    recovery quick: the dead worker's units are handed over after three missed heartbeats.

    The kill comes in the middle of the calls, not within the milliseconds between a message's
    arrival and its claim (or the heartbeat naming it): a unit lost in that window waits for the
    PENDING_REDISPATCH_SECONDS timer (docs/operations.md)."""
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url,
                       env={"UNIT_LEASE_MARGIN_SECONDS": "30", "PENDING_REDISPATCH_SECONDS": "60",
                            "SWEEP_INTERVAL_SECONDS": "2", "WORKER_HEARTBEAT_SECONDS": "2"})
    try:
        stack.start_beat()
        threads = "16" if FULL else "8"  # 16: WORKER_CONCURRENCY's default
        first = stack.start_worker("first", "-c", threads)
        stack.control(latency_ms=1500)
        stack.submit_many(20 if FULL else 8, QUESTIONS, provider_timeout=30 * S, timeout=300 * S)
        wait_for(lambda: stack.unit_counts().get("completed", 0) >= 4 and stack.calls_in_flight(min_age_s=0.5) >= 2,
                 timeout=60, what="units done and calls half-way")
        first.kill()
        restarted = time.monotonic()
        stack.start_worker("second", "-c", threads)
        terminal = stack.wait_all_terminal(150)
        stack.verify("worker_sigkill", terminal, time.monotonic() - restarted, 150,
                     lease_margin_s=30, pending_redispatch_s=60, heartbeat_s=2, provider_timeout_s=30)
    finally:
        stack.close()


def test_worker_warm_shutdown(tmp_path, redis_server, scratch_pg):
    """SIGTERM with a call hanging: after WORKER_SHUTDOWN_GRACE_SECONDS the call is aborted, the unit
    handed back (its claim refunded) and the worker exits; the next worker runs the unit."""
    grace = 2
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url, env={"WORKER_SHUTDOWN_GRACE_SECONDS": str(grace)})
    try:
        first = stack.start_worker("first")
        stack.control(hang_next=1)
        job_id = stack.submit_job(["math_basic"], regions=("EU",), provider_timeout=120 * S, timeout=300 * S)
        wait_for(lambda: any(c["finished"] is None for c in stack.served()), timeout=30, what="the call to hang")
        stopped = time.monotonic()
        first.process.terminate()
        try:
            exited = first.process.wait(timeout=grace + 150) == 0
        except subprocess.TimeoutExpired:
            exited = False
        shutdown_s = time.monotonic() - stopped
        unit = stack.reader.rows("SELECT status, attempts FROM executions WHERE job_id = :j", j=job_id)[0]
        restarted = time.monotonic()
        stack.start_worker("second")
        terminal = stack.wait_all_terminal(60)
        recovery = time.monotonic() - restarted
        eu = stack.units_of(job_id).get("EU", {})
        prompt = Check("stopped_within_grace", exited and shutdown_s < grace + 15,
                       f"exited {'cleanly' if exited else 'with an error'} {shutdown_s:.1f}s after SIGTERM "
                       f"(grace {grace}s, provider timeout 120s)")
        handed_back = Check("unit_handed_back", unit.status == "pending" and unit.attempts == 0
                            and eu.get("status") == "completed" and eu.get("attempts") == 1,
                            f"after the stop: {unit.status}, {unit.attempts} claims; then {eu.get('status')} "
                            f"with {eu.get('attempts')} claim(s)")
        stack.verify("worker_warm_shutdown", terminal, recovery, 60, extra=[prompt, handed_back],
                     warm_shutdown_s=round(shutdown_s, 1), grace_s=grace)
    finally:
        stack.close()


def test_redis_restart_empty(tmp_path, redis_server, scratch_pg):
    """The broker loses everything; ingest keeps accepting, the relay and the sweeper recover."""
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url)
    try:
        stack.start_beat()
        stack.start_worker("worker", "-c", "8")
        stack.control(latency_ms=300)
        stack.submit_many(12 if FULL else 6, QUESTIONS, provider_timeout=10 * S, timeout=120 * S)
        wait_for(lambda: stack.unit_counts().get("completed", 0) >= 3, timeout=60, what="units done")
        redis_server.stop()
        stack.submit_many(2, QUESTIONS, provider_timeout=10 * S, timeout=120 * S)  # accepted while Redis is down
        wait_for(lambda: stack.unit_counts().get("running", 0) == 0, timeout=60, what="calls in flight to end")
        redis_server.start()
        restarted = time.monotonic()
        terminal = stack.wait_all_terminal(120)
        stack.verify("redis_restart_empty", terminal, time.monotonic() - restarted, 120)
    finally:
        stack.close()


def test_database_outage(tmp_path, redis_server):
    """Deliveries that cannot reach the database are retried through the broker, answers in hand
    recorded once it is back; no sweeper runs, so nothing waits for its timers."""
    with throwaway_postgres() as pg:
        upgrade(pg.url)
        stack = FaultStack(tmp_path, pg.url, redis_server.url)
        try:
            stack.start_worker("worker", "-c", "8")
            stack.control(latency_ms=1500)
            stack.submit_many(10 if FULL else 5, QUESTIONS, provider_timeout=20 * S, timeout=120 * S)
            wait_for(lambda: stack.unit_counts().get("running", 0) >= 3, timeout=60, what="units in flight")
            stack.reader.engine.dispose()
            pg.stop("fast")
            wait_for(lambda: "OperationalError" in stack.log_text("worker"),
                     timeout=60, what="a delivery to meet the outage")
            if not _TREE:  # (an older worker has no held answers to wait for)
                wait_for(lambda: '"resume":"record"' in stack.log_text("worker"), timeout=30,
                         what="an answer received during the outage to wait for the database")
            pg.start()
            restarted = time.monotonic()
            terminal = stack.wait_all_terminal(90)
            recovery = time.monotonic() - restarted
            log = stack.log_text("worker")
            calls, units = len(stack.served()), sum(stack.jobs.values())
            once = Check("one_provider_call_per_unit", calls == units,
                         f"{calls} provider calls for {units} units: answers received during the outage were "
                         "recorded, not asked for again")
            stack.verify("database_outage", terminal, recovery, 90, extra=[once], provider_calls=calls,
                         deliveries_retried=log.count("database unavailable: delivery retried"),
                         answers_held_through_outage=log.count('"resume":"record"'))
        finally:
            stack.close()


def test_provider_slow_drip(tmp_path, redis_server, scratch_pg):
    """An answer trickled a byte at a time is cut at the call's deadline, not held for its length."""
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url)
    try:
        stack.start_worker("worker")
        stack.control(drip_next=[{"region": "EU", "interval_ms": 1000}])
        started = time.monotonic()
        job_id = stack.submit_job(["math_basic"], provider_timeout=3 * S, timeout=60 * S)
        terminal = stack.wait_all_terminal(45)
        elapsed = time.monotonic() - started
        eu = stack.units_of(job_id).get("EU", {})
        cut = Check("drip_cut_at_the_call_deadline", eu.get("status") == "completed" and eu.get("attempts") == 2,
                    f"EU unit {eu.get('status')} after {eu.get('attempts')} claims")
        stack.verify("provider_slow_drip", terminal, elapsed, 45, extra=[cut])
    finally:
        stack.close()


def test_provider_huge_answer(tmp_path, redis_server, scratch_pg):
    """A 50 MiB answer fails its unit at MAX_ANSWER_BYTES, keeping its head, with the worker's memory bounded."""
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url)
    try:
        worker = stack.start_worker("worker")
        baseline = peak_rss_mib(worker.process.pid)
        stack.control(huge_next=[{"region": "EU", "bytes": 50 * 1024 * 1024}])
        started = time.monotonic()
        job_id = stack.submit_job(["math_basic"], provider_timeout=30 * S, timeout=60 * S, min_success_rate=0.5)
        terminal = stack.wait_all_terminal(60)
        elapsed = time.monotonic() - started
        growth = peak_rss_mib(worker.process.pid) if worker.process.poll() is None else float("nan")
        growth -= baseline
        eu = stack.units_of(job_id).get("EU", {})
        failure = eu.get("failure") or {}
        refused = Check("answer_too_large_recorded",
                        eu.get("status") == "failed" and failure.get("code") == "answer_too_large"
                        and failure.get("transient") is False and eu.get("attempts") == 1
                        and str(failure.get("answer_head", "")).startswith('{"success": true, "response": "xxxx'),
                        f"EU unit {eu.get('status')}, failure {failure.get('code')}, {eu.get('attempts')} claims")
        bounded = Check("worker_memory_bounded", growth < 40, f"peak RSS grew {growth:.1f} MiB for a 50 MiB answer")
        stack.verify("provider_huge_answer", terminal, elapsed, 60, extra=[refused, bounded],
                     worker_peak_rss_growth_mib=round(growth, 1), answer_bytes=50 * 1024 * 1024)
    finally:
        stack.close()


def test_provider_outage_20s(tmp_path, redis_server, scratch_pg):
    """A provider outage shorter than the deadline costs time, not results: every job completes."""
    stack = FaultStack(tmp_path, scratch_pg, redis_server.url,
                       env={"UNIT_RETRY_BASE_SECONDS": "1", "UNIT_RETRY_MAX_SECONDS": "8"})
    try:
        stack.start_worker("worker", "-c", "8")
        stack.control(outage_s=20)
        outage_ends = time.monotonic() + 20
        stack.submit_many(10 if FULL else 5, QUESTIONS, provider_timeout=10 * S, timeout=60 * S, min_success_rate=1.0)
        terminal = stack.wait_all_terminal(90)
        recovery = time.monotonic() - outage_ends
        statuses = stack.reader.statuses(list(stack.jobs))
        done = sum(1 for s in statuses.values() if s == "completed")
        every = Check("every_job_completed", done == len(stack.jobs), f"{done}/{len(stack.jobs)} jobs completed")
        stack.verify("provider_outage_20s", terminal, recovery, 90, extra=[every])
    finally:
        stack.close()
