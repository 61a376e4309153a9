"""Evidence throughput, by hand (never in the test suite):

1. Bundle + CID: seal a job's evidence in memory (sign every receipt, encode and sign the bundle
   as canonical JSON, compute its CIDv0 DAG with beacon.evidence.cid) and, over the same bundle bytes in
   the same run, plain SHA-256. Prints MB/s of bundle bytes and the ratios to SHA-256 (target for
   the CID: >= 0.5x).
2. Transparency appends per second on Postgres, one transaction per append as at finalisation:
   one appender, then 8 concurrent appenders. Uses DATABASE_URL when it is Postgres (appending to
   its log!), else a scratch database it creates and drops.

    .venv/bin/python -m bench.evidence [--units 500] [--output-bytes 2000] [--appends 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.evidence import transparency
from beacon.evidence.bundles import bundle_bytes
from beacon.evidence.cid import build_dag
from beacon.evidence.identity import RunnerIdentity
from beacon.evidence.receipts import build_receipt
from beacon.models import Execution, Job
from beacon.timeutil import utcnow
from bench.common import scratch_database


def best_of(runs: int, action: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings of ``action``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def sample_job(units: int, output_bytes: int) -> tuple[Job, list[Execution]]:
    now = utcnow()
    words = ("The capital of France is Paris. It lies on the Seine & is <large>; "
             "émigrés call it « la Ville Lumière ». ")
    executions = [
        Execution(id=i, job_id="bench-job", region=("US", "EU", "APAC")[i % 3], served_region=("US", "EU", "APAC")[i % 3],
                  provider="openai", model_id="llama3.2-1b", question_id=f"q{i}", prompt="?", status="completed",
                  classification="substantive", output=(words * (output_bytes // len(words) + 1))[:output_bytes],
                  output_sha256="ab" * 32, started_at=now, completed_at=now + timedelta(milliseconds=40),
                  duration_ms=40, attempts=1)
        for i in range(units)
    ]
    job = Job(id="bench-job", status="completed", status_reason="all units succeeded", raw_body='{"id":"bench-job"}',
              analysis={"summary": {"overall_risk": "low", "units": units}})
    return job, executions


def bench_bundle(units: int, output_bytes: int) -> None:
    identity = RunnerIdentity(KeyPair.generate(), Path("bench-key"))
    job, executions = sample_job(units, output_bytes)
    now = utcnow()

    def seal() -> bytes:
        receipts = [build_receipt(identity, e, now) for e in executions]
        data = bundle_bytes(identity, job, receipts, now)
        build_dag(data)
        return data

    data = seal()
    mb = len(data) / 1e6
    t_seal = best_of(3, seal)
    t_cid = best_of(5, lambda: build_dag(data))
    t_sha = best_of(5, lambda: hashlib.sha256(data).digest())
    print(f"bundle: {units} receipts, {mb:.2f} MB")
    print(f"  sha256 (baseline)          {mb / t_sha:9.1f} MB/s")
    print(f"  CID (beacon.evidence.cid DAG)       {mb / t_cid:9.1f} MB/s   ratio to sha256 {t_sha / t_cid:.2f}x (target >= 0.5x)")
    print(f"  bundle + CID (full seal)   {mb / t_seal:9.1f} MB/s   ratio to sha256 {t_sha / t_seal:.3f}x")


@contextmanager
def postgres_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql")):
        from beacon.settings import Settings

        yield Settings.from_env({"DATABASE_URL": url}).database_url
        return
    with scratch_database("beacon_bench") as scratch:
        yield scratch


def bench_appends(appends: int, threads: int = 8) -> None:
    identity = RunnerIdentity(KeyPair.generate(), Path("bench-key"))
    with postgres_url() as url:
        db = database_for(url)

        def append(n: int, tag: str) -> None:
            for i in range(n):
                with db.session() as session:
                    transparency.append(session, identity, f"{tag}-{i}", f"cid-{tag}-{i}", "00" * 32, "completed")

        start = time.perf_counter()
        append(appends, f"seq-{time.time_ns()}")
        sequential = appends / (time.perf_counter() - start)

        per_thread = appends // threads
        workers = [threading.Thread(target=append, args=(per_thread, f"t{n}-{time.time_ns()}")) for n in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        concurrent = per_thread * threads / (time.perf_counter() - start)
        db.engine.dispose()
    print(f"transparency appends on Postgres: {sequential:8.0f}/s with 1 appender, "
          f"{concurrent:8.0f}/s with {threads} concurrent appenders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=500, help="receipts per bundle (MAX_UNITS_PER_JOB default)")
    parser.add_argument("--output-bytes", type=int, default=2000, help="bytes of model output per receipt")
    parser.add_argument("--appends", type=int, default=2000, help="log appends per phase")
    args = parser.parse_args()
    bench_bundle(args.units, args.output_bytes)
    bench_appends(args.appends)


if __name__ == "__main__":
    main()
