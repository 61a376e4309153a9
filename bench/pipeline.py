"""End-to-end pipeline throughput: jobs and units per second with a zero-latency simulator, next to
raw Celery (a no-op chord of the same width, same broker, same worker settings) in the same run.
Target ≥ 0.6× raw Celery, the median of ``--rounds`` rounds of both (the spread between runs on a
shared machine is wide). Also the fan-out overhead: wall time of a job whose regions each take
1 s, minus 1 s (target ≤ 100 ms).

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.pipeline [--jobs 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis
from celery import chord
from sqlalchemy import func, select

from beacon.crypto.signing import KeyPair
from beacon.messaging.events import EVENTS_CHANNEL, TERMINAL_JOB_EVENTS
from beacon.models import Job
from beacon.timeutil import utcnow
from bench.common import (
    PYTHON,
    beacon_env,
    body,
    cpu_seconds,
    make_spec,
    redis_db,
    scratch_database,
    start,
    stop,
    trusted_key_file,
    wait_for,
)

WORKER = ["worker", "--pool", "threads", "--concurrency", "16"]  # the raw Celery worker, as beacon's
QUESTIONS = ["math_basic", "geography_basic", "identity_basic"]
MODELS = ["llama3.2-1b", "mistral-7b"]
WIDTH = 3 * len(MODELS) * len(QUESTIONS)


def spec(key: KeyPair, questions: list[str], models: list[str]) -> bytes:
    return body(make_spec(key, questions=questions, models=models))


def terminal_count(db, ids: list[str]) -> int:  # noqa: ANN001
    with db.session() as session:
        return session.scalar(select(func.count()).where(Job.id.in_(ids), Job.status.in_(("completed", "failed"))))


@contextmanager
def beacon_workers(env: dict[str, str], log: Path, count: int = 1, concurrency: int = 16) -> Iterator:
    """``count`` ``beacon worker`` processes with ``env``; yields (the services that submit to them,
    the worker processes)."""
    from app.services import Services
    from beacon.settings import Settings

    services = Services.build(Settings.from_env(env))
    argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency)]
    workers = [start([PYTHON, "-m", "beacon", *argv, "--hostname", f"bench{i}@%h"], env, f"{log}.{i}")
               for i in range(count)]
    try:
        wait_for(lambda: len(services.celery.control.ping(timeout=0.5)) >= count, timeout=90,
                 what=f"{count} beacon worker(s)")
        yield services, workers
    finally:
        for worker in workers:
            stop(worker)


@contextmanager
def beacon_worker(env: dict[str, str], log: Path) -> Iterator:
    """A ``beacon worker`` process with ``env``, and the services that submit to it."""
    with beacon_workers(env, log) as (services, _):
        yield services


def run_beacon(env: dict[str, str], work: Path, key: KeyPair, jobs: int) -> tuple[float, float]:
    """Seconds from submitting ``jobs`` jobs through the ingest service until all have ended, and the
    worker's CPU seconds meanwhile."""
    with beacon_workers(env, work / "worker.log") as (services, workers):
        bodies = [spec(key, QUESTIONS, MODELS) for _ in range(jobs)]
        ids = [json.loads(b)["id"] for b in bodies]
        pubsub = redis.Redis.from_url(env["REDIS_URL"]).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(EVENTS_CHANNEL)
        began, cpu = time.perf_counter(), cpu_seconds(workers[0].pid)
        for raw in bodies:
            assert services.ingestor.submit(raw, "127.0.0.1", None).created
        wait_terminal(pubsub, services.db, ids)
        return time.perf_counter() - began, cpu_seconds(workers[0].pid) - cpu


def wait_terminal(pubsub, db, ids: list[str], timeout: float = 600) -> None:  # noqa: ANN001
    """Until every job of ``ids`` has ended: told by the live events (as raw Celery's chord results
    arrive by pub/sub, the bench does not poll the database while it measures); the table decides
    after a quiet second, should an event have been lost."""
    open_jobs, deadline = set(ids), time.monotonic() + timeout
    while open_jobs:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(open_jobs)} jobs did not end within {timeout} s")
        message = pubsub.get_message(timeout=1.0)
        if message is None:
            if terminal_count(db, ids) == len(ids):
                return
            continue
        event = json.loads(message["data"])
        if event.get("type") in TERMINAL_JOB_EVENTS:
            open_jobs.discard(event.get("job_id"))


def fanout_overhead(env: dict[str, str], work: Path, key: KeyPair, repeats: int) -> list[float]:
    """Seconds from just before submission to the job's finished_at, for jobs of 3 units of 1 s."""
    with beacon_worker(env, work / "worker-1s.log") as services:
        walls = []
        for _ in range(repeats + 1):  # the first run warms connections up and is dropped
            raw = spec(key, ["math_basic"], ["llama3.2-1b"])
            job_id = json.loads(raw)["id"]
            began = utcnow()
            services.ingestor.submit(raw, "127.0.0.1", None)
            wait_for(lambda: terminal_count(services.db, [job_id]) == 1, interval=0.01, what="job to end")
            with services.db.session() as session:  # the job's own finish stamp, not when we noticed it
                walls.append((session.get(Job, job_id).finished_at - began).total_seconds())
        return walls[1:]


def run_raw(work: Path, chords: int) -> tuple[float, float]:
    """Seconds for ``chords`` no-op chords on a raw Celery worker, and the worker's CPU seconds meanwhile."""
    env = {"CELERY_BROKER_URL": redis_db(13), "RAW_RESULT_BACKEND": redis_db(12)}
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # what bench.raw_celery reads when it is imported
    try:
        from bench.raw_celery import app, done, noop
    finally:  # Celery prefers CELERY_BROKER_URL to any app's own broker: left set, it would take beacon's too
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    worker = start([PYTHON, "-m", "celery", "-A", "bench.raw_celery", *WORKER, "--loglevel", "WARNING"], env,
                   str(work / "raw.log"))
    try:
        wait_for(lambda: app.control.ping(timeout=0.5), timeout=60, what="raw worker")
        chord([noop.s(i) for i in range(WIDTH)])(done.s()).get(timeout=60)  # warm-up
        began, cpu = time.perf_counter(), cpu_seconds(worker.pid)
        results = [chord([noop.s(i) for i in range(WIDTH)])(done.s()) for _ in range(chords)]
        for result in results:
            assert result.get(timeout=600) == WIDTH
        return time.perf_counter() - began, cpu_seconds(worker.pid) - cpu
    finally:
        stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3,
                        help="beacon then raw Celery, this many times: the ratio is the median of the rounds'")
    parser.add_argument("--fanout-repeats", type=int, default=5)
    options = parser.parse_args()
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    units = options.jobs * WIDTH
    ratios, cpu_ratios = [], []
    with scratch_database("beacon_bench") as database_url:
        for round_ in range(1, options.rounds + 1):
            beacon_s, beacon_cpu = run_beacon(beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS="0"), work,
                                              key, options.jobs)
            raw_s, raw_cpu = run_raw(work, options.jobs)
            ratios.append(raw_s / beacon_s)
            cpu_ratios.append(raw_cpu / beacon_cpu)
            print(f"round {round_}: beacon {units / beacon_s:.0f} units/s ({options.jobs} jobs × {WIDTH} units in "
                  f"{beacon_s:.2f} s), raw celery {units / raw_s:.0f} tasks/s (no-op chords of the same width in "
                  f"{raw_s:.2f} s): ratio {ratios[-1]:.2f}; worker CPU per unit {beacon_cpu * 1000 / units:.2f} ms, "
                  f"per raw task {raw_cpu * 1000 / units:.2f} ms: ratio {cpu_ratios[-1]:.2f}", flush=True)
        walls = fanout_overhead(beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS="1000"), work, key,
                                options.fanout_repeats)
    print(f"ratio beacon/raw = {statistics.median(ratios):.2f}, the median of {len(ratios)} rounds "
          f"({min(ratios):.2f}–{max(ratios):.2f})  (target ≥ 0.60); by worker CPU: {statistics.median(cpu_ratios):.2f}")
    overheads = [(wall - 1.0) * 1000 for wall in walls]
    print(f"fan-out overhead (job of 3 regions × 1 s, minus 1 s): median {statistics.median(overheads):.0f} ms, "
          f"max {max(overheads):.0f} ms over {len(walls)} jobs  (target ≤ 100 ms)")


if __name__ == "__main__":
    main()
