"""Fairness between regions inside one worker, and peak memory.

1. Fairness: 10 jobs on two regions (US, EU) whose provider answers in 100 ms, submitted just
   after 10 jobs on one region (APAC) answering in 30 s, all on ONE worker (threads pool of 16).
   The fast jobs' completion times (created_at → finished_at) are compared with a run of the fast
   jobs alone, in the same process run. Target: p99 with the slow jobs ≤ 2× p99 without.
2. Peak resident memory (VmHWM) of the API (gunicorn master + workers) and of a worker over
   ``--memory-jobs`` jobs (default 1,000, one unit each, zero latency) submitted over HTTP.

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.fairness [--memory-jobs 1000] [--slow-ms 30000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import select

from beacon.crypto.signing import KeyPair
from beacon.models import Job
from bench.common import beacon_env, body, make_spec, percentile, scratch_database, trusted_key_file, wait_for
from bench.pipeline import beacon_worker, beacon_workers, terminal_count

QUESTIONS = ["math_basic", "geography_basic", "identity_basic"]
MODELS = ["llama3.2-1b", "mistral-7b"]


def providers_file(work: Path, slow_ms: int) -> Path:
    path = work / "providers-fairness.toml"
    path.write_text("".join(
        f'[regions.{region}]\nprovider = "simulator"\nlatency_ms = {latency}\ntimeout_s = 120\n\n'
        for region, latency in (("US", 100), ("EU", 100), ("APAC", slow_ms))))
    return path


def job(key: KeyPair, regions: list[str]) -> bytes:
    return body(make_spec(key, questions=QUESTIONS, models=MODELS,
                          constraints={"regions": regions, "min_regions": 1, "timeout": 600}))


def completion_seconds(db, ids: list[str]) -> list[float]:  # noqa: ANN001
    with db.session() as session:
        rows = session.execute(select(Job.created_at, Job.finished_at).where(Job.id.in_(ids))).all()
    return [(finished - created).total_seconds() for created, finished in rows]


def fast_p99(env: dict[str, str], work: Path, key: KeyPair, slow_jobs: int, tag: str) -> list[float]:
    with beacon_worker(env, work / f"worker-{tag}.log") as services:
        for _ in range(slow_jobs):
            assert services.ingestor.submit(job(key, ["APAC"]), "127.0.0.1", None).created
        fast = [job(key, ["US", "EU"]) for _ in range(10)]
        ids = [json.loads(b)["id"] for b in fast]
        for raw in fast:
            assert services.ingestor.submit(raw, "127.0.0.1", None).created
        wait_for(lambda: terminal_count(services.db, ids) == len(ids), timeout=900, interval=0.05,
                 what="fast jobs to end")
        return completion_seconds(services.db, ids)


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid`` and its children (gunicorn's workers), summed."""
    import subprocess

    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
                    .stdout.split()]
    total = 0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def memory(env: dict[str, str], work: Path, key: KeyPair, jobs: int) -> tuple[int, int]:
    from bench.common import stop
    from bench.ingest import serve

    with beacon_workers(env, work / "worker-memory.log") as (services, workers):
        url, api = serve("app:create_app()", env, str(work / "api-memory.log"))
        try:
            session = requests.Session()
            ids = []
            for _ in range(jobs):
                raw = body(make_spec(key, constraints={"regions": ["US"], "min_regions": 1}))
                ids.append(json.loads(raw)["id"])
                assert session.post(url, data=raw, headers={"Content-Type": "application/json"},
                                    timeout=30).status_code == 202
            wait_for(lambda: terminal_count(services.db, ids) == len(ids), timeout=900, interval=0.1,
                     what="memory jobs to end")
            api_kib = peak_rss_kib(api.pid)
            worker_kib = peak_rss_kib(workers[0].pid)
            return api_kib, worker_kib
        finally:
            stop(api)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-jobs", type=int, default=1000)
    parser.add_argument("--slow-ms", type=int, default=30000)
    parser.add_argument("--skip-memory", action="store_true")
    options = parser.parse_args()
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    with scratch_database("beacon_bench") as database_url:
        env = beacon_env(database_url, work, trusted, PROVIDERS_FILE=str(providers_file(work, options.slow_ms)))
        began = time.perf_counter()
        alone = fast_p99(env, work, key, 0, "alone")
        beside = fast_p99(beacon_env(database_url, work, trusted,
                                     PROVIDERS_FILE=str(providers_file(work, options.slow_ms))),
                          work, key, 10, "beside")
        print(f"fast jobs alone:          p50 {percentile(alone, 0.5):.2f} s, p99 {percentile(alone, 0.99):.2f} s")
        print(f"fast jobs beside slow:    p50 {percentile(beside, 0.5):.2f} s, p99 {percentile(beside, 0.99):.2f} s")
        print(f"ratio p99 beside/alone = {percentile(beside, 0.99) / percentile(alone, 0.99):.2f}  (target ≤ 2.0)"
              f"  [{time.perf_counter() - began:.0f} s]")
        if not options.skip_memory:
            api_kib, worker_kib = memory(beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS="0"), work,
                                         key, options.memory_jobs)
            print(f"peak RSS over {options.memory_jobs} jobs: API (gunicorn, all processes) {api_kib / 1024:.0f} MiB, "
                  f"worker {worker_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
