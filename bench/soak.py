"""Soak: a steady stream of jobs for a while, with faults injected on a schedule, then every
invariant of the fault suite checked over the whole run.

    python -m bench.soak [--duration 180] [--rate 0.5] [--questions 2]

Three workers (threads, ``-c 4``) and beat run in their own processes against a scratch
PostgreSQL database and a private Redis; the model simulator answers over HTTP. While jobs
arrive (``--rate`` per second, each 3 regions x ``--questions``), at fixed fractions of the run:
a 5 s provider outage (503), trickled answers, 50 MiB answers, hung calls, a warm shutdown of
one worker with a call hanging (``WORKER_SHUTDOWN_GRACE_SECONDS`` 5), and a SIGKILL of another;
both are replaced at once. The third worker runs throughout, so its memory over the run shows
whether anything accumulates.

Writes ``$BEACON_REPORT_DIR/soak.jsonl`` (default ``beacon-data/reports``): one line per
invariant ``{case: "soak", invariant, result, recovery_s, detail}`` (``recovery_s``: the time to
drain after the last submission) and one ``summary`` line with the measurements. Run by
``scripts/faults --full``; ``docs/RELIABILITY.md`` shows the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.faults import report
from tests.faults.harness import FaultStack, S, rss_mib
from tests.faults.invariants import Check, check_all
from tests.faults.services import throwaway_redis
from tests.support import scratch_database

QUESTIONS = ["math_basic", "geography_basic", "greatest_invention", "taiwan_status", "identity_basic"]
ENV = {
    "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
    "UNIT_LEASE_MARGIN_SECONDS": "10",
    "PENDING_REDISPATCH_SECONDS": "30",
    "SWEEP_INTERVAL_SECONDS": "2",
    "WORKER_HEARTBEAT_SECONDS": "2",
    "UNIT_RETRY_BASE_SECONDS": "0.5",
    "UNIT_RETRY_MAX_SECONDS": "4",
}


def job_latencies(stack: FaultStack) -> list[float]:
    rows = stack.reader.rows(
        "SELECT extract(epoch FROM finished_at - created_at) AS s FROM jobs WHERE id = ANY(:ids) AND finished_at IS NOT NULL",
        ids=list(stack.jobs))
    return [float(row.s) for row in rows]


def run(duration: float, rate: float, questions: int, work: Path) -> bool:
    with throwaway_redis() as redis_server, scratch_database("beacon_soak") as pg_url:
        stack = FaultStack(work, pg_url, redis_server.url, env=ENV)
        try:
            stack.start_beat()
            steady = stack.start_worker("steady", "-c", "4")
            stopped = stack.start_worker("stopped", "-c", "4")
            killed = stack.start_worker("killed", "-c", "4")
            stack.control(latency_ms=200)
            rss = [rss_mib(steady.process.pid)]
            faults = [
                (0.10, "provider outage 5 s", lambda: stack.control(outage_s=5)),
                (0.25, "trickled answers", lambda: stack.control(drip_next=[{"interval_ms": 500, "repeat": 3}])),
                (0.40, "50 MiB answers", lambda: stack.control(huge_next=[{"bytes": 50 * 2**20, "repeat": 2}])),
                (0.50, "warm shutdown of a worker (one more call hangs)", lambda: warm_stop(stack, stopped)),
                (0.65, "hung calls", lambda: stack.control(hang_next=3)),
                (0.75, "worker SIGKILL", lambda: kill(stack, killed)),
            ]
            done_faults: list[str] = []
            started = time.monotonic()
            submitted, next_sample = 0, started + 10
            chosen = QUESTIONS[:questions]
            while (now := time.monotonic()) < started + duration:
                while faults and now >= started + faults[0][0] * duration:
                    _, name, inject = faults.pop(0)
                    inject()
                    done_faults.append(name)
                if submitted < (now - started) * rate:
                    stack.submit_job(chosen, provider_timeout=5 * S, timeout=120 * S, min_success_rate=0.5)
                    submitted += 1
                if now >= next_sample:
                    rss.append(rss_mib(steady.process.pid))
                    next_sample += 10
                time.sleep(0.05)  # pacing the submissions, not synchronisation
            last_submission = time.monotonic()
            ok, _, detail = stack.wait_all_terminal(240)
            drain = time.monotonic() - last_submission
            rss.append(rss_mib(steady.process.pid))
            stack.wait_outbox_drained()
            checks = [Check("terminal_within_bound", ok, detail or "bound 240s after the last submission"),
                      *check_all(stack.reader, stack.jobs)]
            statuses = stack.reader.statuses(list(stack.jobs))
            latencies = job_latencies(stack)
            summary = {
                "duration_s": round(duration), "jobs": len(stack.jobs), "units": sum(stack.jobs.values()),
                "jobs_completed": sum(1 for s in statuses.values() if s == "completed"),
                "jobs_failed": sum(1 for s in statuses.values() if s == "failed"),
                "job_latency_p50_s": round(statistics.median(latencies), 2) if latencies else None,
                "job_latency_max_s": round(max(latencies), 2) if latencies else None,
                "drain_s": round(drain, 1), "faults": "; ".join(done_faults),
                "steady_worker_rss_first_mib": round(rss[0], 1), "steady_worker_rss_last_mib": round(rss[-1], 1),
                "steady_worker_rss_max_mib": round(max(rss), 1), **MEASURED,
            }
            for check in checks:
                report.append("soak.jsonl", {"case": "soak", "invariant": check.invariant,
                                             "result": "pass" if check.ok else "fail",
                                             "recovery_s": round(drain, 2), "detail": check.detail})
            passed = all(check.ok for check in checks)
            report.append("soak.jsonl", {"case": "soak", "invariant": "summary", "result": "pass" if passed else "fail",
                                         **summary})
            for key, value in summary.items():
                print(f"{key}: {value}")
            for check in checks:
                print(f"{check.invariant}: {'pass' if check.ok else 'FAIL'} {check.detail}")
            return passed
        finally:
            stack.close()


MEASURED: dict[str, float] = {}


def warm_stop(stack: FaultStack, worker) -> None:  # noqa: ANN001
    """SIGTERM with a call hanging: it must stop within its grace period; a new worker replaces it."""
    stack.control(hang_next=1)
    stopping = time.monotonic()
    worker.process.terminate()
    worker.process.wait(timeout=120)
    MEASURED["warm_shutdown_s"] = round(time.monotonic() - stopping, 1)
    stack.start_worker("stopped-again", "-c", "4")


def kill(stack: FaultStack, worker) -> None:  # noqa: ANN001
    worker.kill()
    stack.start_worker("killed-again", "-c", "4")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Soak the runner with faults injected on a schedule.")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of submissions")
    parser.add_argument("--rate", type=float, default=0.5, help="jobs submitted per second")
    parser.add_argument("--questions", type=int, default=2, choices=range(1, len(QUESTIONS) + 1))
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's request lines
    os.environ.setdefault("BEACON_REPORT_DIR", str(Path("beacon-data/reports").resolve()))
    with tempfile.TemporaryDirectory(prefix="beacon-soak-") as work:
        ok = run(args.duration, args.rate, args.questions, Path(work))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
