"""Scale-out: the same units with 1 s simulated provider latency on 1, 2 and 4 worker processes
(threads pool of 16 each). Prints units/s and the efficiency against the ideal, processes ×
threads / latency (target ≥ 0.8), then one job of ``--job-units`` units on the most workers:
its wall time (created_at → finished_at) against the ideal, ceil(units / threads) × latency.

Units are spread over jobs of 3 regions × 2 models × N questions, so every region queue is fed
(a worker serves every region, each with its fair share of the threads).
Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.scale [--units 2000] [--processes 1,2,4] [--job-units 500]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from beacon.crypto.signing import KeyPair
from beacon.ingest.questions import load_catalogue
from beacon.models import Execution, Job
from beacon.settings import Settings
from bench.common import beacon_env, body, make_spec, scratch_database, trusted_key_file, wait_for
from bench.pipeline import beacon_workers, terminal_count

THREADS = 16
LATENCY_S = 1.0
MODELS = ["llama3.2-1b", "mistral-7b"]
REGIONS = ["US", "EU", "APAC"]


def question_ids() -> list[str]:
    return sorted(load_catalogue(Settings.from_env({}).questions_file))


def jobs_for(key: KeyPair, units: int) -> list[bytes]:
    """Jobs of 3 regions × 2 models × up to all catalogue questions, ``units`` units in all (rounded up)."""
    questions = question_ids()
    per_job = len(REGIONS) * len(MODELS) * len(questions)
    bodies, left = [], units
    while left > 0:
        take = min(len(questions), max(1, math.ceil(left / (len(REGIONS) * len(MODELS)))))
        bodies.append(body(make_spec(key, questions=questions[:take], models=MODELS,
                                     constraints={"regions": REGIONS, "min_regions": 1, "timeout": 1800})))
        left -= take * len(REGIONS) * len(MODELS)
    assert per_job > 0
    return bodies


def run(env: dict[str, str], work: Path, key: KeyPair, processes: int, units: int) -> tuple[int, float]:
    with beacon_workers(env, work / f"worker-{processes}", count=processes, concurrency=THREADS) as (services, _):
        bodies = jobs_for(key, units)
        ids = [json.loads(b)["id"] for b in bodies]
        began = time.perf_counter()
        for raw in bodies:
            assert services.ingestor.submit(raw, "127.0.0.1", None).created
        wait_for(lambda: terminal_count(services.db, ids) == len(ids), timeout=3600, interval=0.1, what="jobs to end")
        elapsed = time.perf_counter() - began
        total = sum(len(json.loads(b)["questions"]) * len(REGIONS) * len(MODELS) for b in bodies)
        return total, elapsed


def one_job(env: dict[str, str], work: Path, key: KeyPair, processes: int, units: int) -> tuple[int, float]:
    with beacon_workers(env, work / f"worker-job-{processes}", count=processes, concurrency=THREADS) as (services, _):
        questions = question_ids()
        models = [f"bench-model-{i}" for i in range(max(1, units // (len(REGIONS) * len(questions))))]
        raw = body(make_spec(key, questions=questions, models=models,
                             constraints={"regions": REGIONS, "min_regions": 1, "timeout": 1800}))
        job_id = json.loads(raw)["id"]
        assert services.ingestor.submit(raw, "127.0.0.1", None).created
        wait_for(lambda: terminal_count(services.db, [job_id]) == 1, timeout=3600, interval=0.1, what="job to end")
        with services.db.session() as session:
            created, started, finished = session.execute(
                select(Job.created_at, Job.started_at, Job.finished_at).where(Job.id == job_id)).one()
            count, first, last = session.execute(
                select(func.count(), func.min(Execution.started_at), func.max(Execution.completed_at))
                .where(Execution.job_id == job_id)).one()
        print(f"  where the job's time went: submitted → started {(started - created).total_seconds():.2f} s, "
              f"started → first unit's call {(first - started).total_seconds():.2f} s, the units' calls "
              f"{(last - first).total_seconds():.2f} s, last unit recorded → finished {(finished - last).total_seconds():.2f} s")
        return count, (finished - created).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--job-units", type=int, default=500)
    options = parser.parse_args()
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    counts = [int(p) for p in options.processes.split(",")]
    with scratch_database("beacon_bench") as database_url:
        for processes in counts:
            env = beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS=str(int(LATENCY_S * 1000)))
            units, elapsed = run(env, work, key, processes, options.units)
            ideal = processes * THREADS / LATENCY_S
            print(f"{processes} worker process(es) × {THREADS} threads: {units} units in {elapsed:.1f} s = "
                  f"{units / elapsed:.1f} units/s, ideal {ideal:.0f} units/s, efficiency {units / elapsed / ideal:.2f}"
                  "  (target ≥ 0.80)", flush=True)
        if options.job_units:
            env = beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS=str(int(LATENCY_S * 1000)))
            units, wall = one_job(env, work, key, counts[-1], options.job_units)
            ideal = math.ceil(units / (counts[-1] * THREADS)) * LATENCY_S
            print(f"one job of {units} units on {counts[-1]} worker process(es): {wall:.1f} s, ideal {ideal:.0f} s, "
                  f"efficiency {ideal / wall:.2f}")


if __name__ == "__main__":
    main()
