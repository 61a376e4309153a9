"""Ingest throughput and latency: signed submissions per second and p50/p99 at 32 concurrent
clients against the API under gunicorn, next to a trivial Flask endpoint served with the same
gunicorn settings in the same run. Target: ingest ≥ 0.2× the trivial ceiling, p99 ≤ 50 ms.

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.ingest [--requests 3000] [--clients 32]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

import requests

from beacon.crypto.signing import KeyPair
from bench.common import (
    PYTHON,
    beacon_env,
    body,
    make_spec,
    scratch_database,
    spare_port,
    start,
    stop,
    summary,
    trusted_key_file,
    wait_for,
)

# gunicorn as `beacon api` runs it, for both apps: gevent patched before anything else is imported (with
# the patching left to the worker, after the master had imported the app, ingest ran at well under half
# the rate here), then the worker class `beacon api` uses (gevent, with its deadlines and caps).
GUNICORN = ["-c", "from gevent import monkey; monkey.patch_all(); import sys; from gunicorn.app.wsgiapp import run; "
            "sys.argv[0] = 'gunicorn'; run()",
            "--workers", "2", "--worker-class", "app.serving.BeaconWorker", "--log-level", "warning"]


def signed_bodies(key: KeyPair, count: int) -> list[bytes]:
    return [body(make_spec(key)) for _ in range(count)]


def _client(args: tuple[str, list[bytes], int]) -> tuple[list[float], int]:
    """One process of the load generator: ``threads`` clients sharing this process's bodies."""
    url, bodies, threads = args
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            began = time.perf_counter()
            response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(elapsed)
                errors += response.status_code != 202

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, errors


def load(url: str, bodies: list[bytes], clients: int, processes: int = 4) -> tuple[float, list[float], int]:
    """Send every body once with ``clients`` concurrent clients; returns (req/s, latencies, errors)."""
    shares = [bodies[i::processes] for i in range(processes)]
    with multiprocessing.Pool(processes) as pool:
        began = time.perf_counter()
        results = pool.map(_client, [(url, share, clients // processes) for share in shares])
        elapsed = time.perf_counter() - began
    latencies = [lat for part, _ in results for lat in part]
    return len(bodies) / elapsed, latencies, sum(errors for _, errors in results)


def serve(target: str, env: dict[str, str], log: str) -> tuple[str, object]:
    port = spare_port()
    process = start([PYTHON, *GUNICORN, "--bind", f"127.0.0.1:{port}", target], env, log)

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code in (200, 404)
        except requests.RequestException:
            return False

    wait_for(up, what=f"gunicorn {target}")
    return f"http://127.0.0.1:{port}/api/v1/jobs", process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    options = parser.parse_args()
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    with scratch_database("beacon_bench") as database_url:
        env = beacon_env(database_url, work, trusted)
        results = {}
        for name, target in (("trivial", "bench.trivial_app:app"), ("ingest", "app:create_app()")):
            url, process = serve(target, env, str(work / f"{name}.log"))
            try:
                load(url, signed_bodies(key, 200), options.clients)  # warm-up
                results[name] = load(url, signed_bodies(key, options.requests), options.clients)
            finally:
                stop(process)
    for name, (rate, latencies, errors) in results.items():
        print(f"{name:8s} {rate:8.1f} req/s  {summary(latencies)}  non-202: {errors}")
    ratio = results["ingest"][0] / results["trivial"][0]
    print(f"ratio ingest/trivial = {ratio:.2f}  (target ≥ 0.20)")
    print(f"ingest p99 = {sorted(results['ingest'][1])[int(0.99 * (len(results['ingest'][1]) - 1))]:.1f} ms "
          "(target ≤ 50 ms)")


if __name__ == "__main__":
    main()
