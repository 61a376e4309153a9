"""The system under fault: the API in this process, real Celery workers and beat in their own
processes, PostgreSQL and Redis (throwaway servers where a case takes them away), the model
simulator over HTTP on loopback (US and APAC through the hybrid-router protocol, EU through the
OpenAI one), and the checks every case ends with.

``BEACON_FAULTS_WORKER_TREE``, when set to another checkout of the project, runs the workers
and beat from that tree (the API, simulator and checks stay here): how the "before" figures of
``docs/RELIABILITY.md`` are measured against an older version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from beacon.crypto.signing import KeyPair
from tests.factories import body, make_spec
from tests.faults import report
from tests.faults.invariants import TERMINAL, Check, Reader, check_all
from tests.stack import Stack
from tests.support import WorkerProcess, wait_for

S = 10**9
SCALE = os.environ.get("BEACON_FAULTS_SCALE", "ci")  # "full": scripts/faults --full
FULL = SCALE == "full"

# Timers shortened so a case recovers in seconds; each case states the ones it relies on.
FAST = {
    "SWEEP_INTERVAL_SECONDS": "1",
    "OUTBOX_RELAY_INTERVAL_SECONDS": "1",
    "JOB_QUEUED_GRACE_SECONDS": "3",
    "PENDING_REDISPATCH_SECONDS": "3",
    "UNIT_LEASE_MARGIN_SECONDS": "2",
    "UNIT_RETRY_BASE_SECONDS": "0.2",
    "UNIT_RETRY_MAX_SECONDS": "2",
    "DB_RETRY_BASE_SECONDS": "0.2",
    "DB_RETRY_MAX_SECONDS": "2",
    "JOB_END_POLL_SECONDS": "0.5",
    "WORKER_HEARTBEAT_SECONDS": "1",
    "METRICS_PORT": "0",
    "LOG_LEVEL": "WARNING",
}


_TREE = os.environ.get("BEACON_FAULTS_WORKER_TREE", "").strip()
_PYTHON_FLAGS = ["-P"] if _TREE else []  # -P: the working directory's tree must not shadow PYTHONPATH's


def _worker_tree_env() -> dict[str, str]:
    return {"PYTHONPATH": _TREE} if _TREE else {}


class FaultStack(Stack):
    """The Stack of the integration tests, with its own Redis URL for everything, beat, and checks."""

    def __init__(self, tmp: Path, pg_url: str, redis_url: str, keypair: KeyPair | None = None,
                 env: dict[str, str] | None = None):
        extra = {"REDIS_URL": redis_url, "RATE_LIMIT_REDIS_URL": redis_url, **FAST, **(env or {})}
        super().__init__(tmp, pg_url, redis_url, keypair or KeyPair.generate(), extra_env=extra)
        self.env.update(_worker_tree_env())
        self.pg_url = pg_url
        self.reader = Reader(pg_url)
        self.beat: subprocess.Popen | None = None
        self.jobs: dict[str, int] = {}  # job id -> units expected

    # ------------------------------------------------------------------ processes

    def start_worker(self, name: str = "worker", *args: str) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.tmp / f"{name}.log", name, args)
        worker.argv[1:1] = _PYTHON_FLAGS
        worker.start(self.celery)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        log = (self.tmp / "beat.log").open("ab")
        self.beat = subprocess.Popen([sys.executable, *_PYTHON_FLAGS, "-m", "beacon", "beat"], env={**os.environ, **self.env},
                                     stdout=log, stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.beat is not None and self.beat.poll() is None:
            self.beat.terminate()
            try:
                self.beat.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.beat.kill()
        try:
            super().close()
        finally:
            self.reader.close()

    def log_text(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ jobs

    def submit_job(self, questions: list[str], regions=("US", "EU", "APAC"), **constraints) -> str:
        spec = make_spec(self.keypair, questions=questions,
                         constraints={"regions": list(regions), "min_regions": 1, **constraints})
        response = requests.post(f"{self.api}/api/v1/jobs", data=body(spec),
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 202, response.text
        self.jobs[spec["id"]] = len(questions) * len(regions)
        return spec["id"]

    def submit_many(self, count: int, questions: list[str], **constraints) -> list[str]:
        return [self.submit_job(questions, **constraints) for _ in range(count)]

    def units_of(self, job_id: str) -> dict[str, dict]:
        """Region -> the job's (first) execution as the API serves it ({} when unreadable)."""
        try:
            return {u["region"]: u for u in self.job(job_id).get("executions", [])}
        except Exception:
            return {}

    def unit_counts(self) -> dict[str, int]:
        """Execution rows by status, over the jobs submitted."""
        rows = self.reader.rows("SELECT status, count(*) AS n FROM executions WHERE job_id = ANY(:ids) GROUP BY status",
                                ids=list(self.jobs))
        return {row.status: row.n for row in rows}

    def calls_in_flight(self, min_age_s: float = 0.0) -> int:
        """Running units claimed at least ``min_age_s`` ago, and none claimed more recently (mid-call)."""
        rows = self.reader.rows(
            "SELECT count(*) AS n, min(extract(epoch FROM now() - claimed_at)) AS youngest FROM executions "
            "WHERE status = 'running' AND job_id = ANY(:ids)", ids=list(self.jobs))
        n, youngest = rows[0].n, rows[0].youngest
        return n if n and youngest is not None and youngest >= min_age_s else 0

    def terminal(self) -> dict[str, str]:
        try:
            return {j: s for j, s in self.reader.statuses(list(self.jobs)).items() if s in TERMINAL}
        except Exception:  # the database may be coming back
            return {}

    def wait_all_terminal(self, bound_s: float) -> tuple[bool, float, str]:
        """(all terminal, seconds waited, which were not) — polling the database, no sweep of our own."""
        started = time.monotonic()
        try:
            wait_for(lambda: len(self.terminal()) == len(self.jobs), timeout=bound_s, interval=0.2,
                     what="every job to end")
        except AssertionError:
            stuck = sorted(set(self.jobs) - set(self.terminal()))
            return False, time.monotonic() - started, f"{len(stuck)} not terminal: {stuck[:3]}"
        return True, time.monotonic() - started, ""

    def wait_outbox_drained(self, bound_s: float = 30) -> None:
        try:
            wait_for(lambda: self.reader.rows("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")[0].n == 0,
                     timeout=bound_s, interval=0.2, what="the outbox to drain")
        except AssertionError:
            pass  # reported by the invariant

    # ------------------------------------------------------------------ verdict

    def verify(self, case: str, terminal: tuple[bool, float, str], recovery_s: float | None, bound_s: float,
               extra: list[Check] = (), **measured) -> list[Check]:
        """Check every invariant (and the case's own ``extra`` checks), append each to faults.jsonl,
        and fail the test on any miss."""
        ok, _, detail = terminal
        self.wait_outbox_drained()
        checks = [Check("terminal_within_bound", ok, detail or f"bound {bound_s:g}s"), *check_all(self.reader, self.jobs),
                  *extra]
        statuses = self.reader.statuses(list(self.jobs))
        measured = {"jobs": len(self.jobs), "units": sum(self.jobs.values()), "bound_s": bound_s,
                    "jobs_completed": sum(1 for s in statuses.values() if s == "completed"), "scale": SCALE,
                    **measured}
        for check in checks:
            report.record(case, check.invariant, check.ok, recovery_s, detail=check.detail, **measured)
        failed = [f"{c.invariant}: {c.detail}" for c in checks if not c.ok]
        assert not failed, f"{case}: " + " | ".join(failed)
        return checks


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
