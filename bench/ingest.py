"""Ingest throughput and latency, against two baselines measured in the same run.

Closed loop (``wrk``, Debian package ``wrk``): ``--connections`` connections over ``--threads``
wrk threads for ``--seconds`` seconds, POSTing unique bodies signed in this run (written one per
line to a file; ``bench/wrk_bodies.lua`` gives each wrk thread its own share; only 202 answers
count) to three targets under the same gunicorn settings as ``beacon api``:

* ``trivial``: a Flask endpoint that reads the body and answers 202 (the HTTP stack's ceiling);
* ``durable``: the same plus one INSERT + commit through ``beacon.db`` (the durable floor);
* ``ingest``: the API's ``POST /api/v1/jobs`` (verification, the job, nonce and outbox rows, and
  the fast-path publish of ``run_job``).

Each round runs the three closed loops; the target, ingest ≥ 0.5× durable, is on the median of
``--rounds`` rounds (single runs of unchanged code spread widely on a shared machine: 0.43–0.52
in one session). Then an open loop: an asyncio generator schedules one request
every 1/``--rate`` s (default 100 req/s) for ``--open-seconds`` s and measures each latency from
its *scheduled* time (so a stall is not hidden by the generator waiting: no coordinated
omission). Target p99 ≤ 50 ms.

Needs Postgres and Redis on loopback (a scratch database is created and dropped) and ``wrk``.
Run: .venv/bin/python -m bench.ingest [--seconds 10] [--connections 32] [--rate 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from beacon.crypto.signing import KeyPair
from bench.common import (
    PYTHON,
    answers_live,
    beacon_env,
    body,
    cpu_seconds,
    make_spec,
    percentile,
    scratch_database,
    spare_port,
    start,
    stop,
    summary,
    trusted_key_file,
    wait_for,
)

# gunicorn as `beacon api` runs it, for every target: gevent patched before anything else is imported,
# then the worker class `beacon api` uses (gevent, with its deadlines and caps).
GUNICORN = ["-c", "from gevent import monkey; monkey.patch_all(); import sys; from gunicorn.app.wsgiapp import run; "
            "sys.argv[0] = 'gunicorn'; run()",
            "--workers", "2", "--worker-class", "app.serving.BeaconWorker", "--log-level", "warning"]
LUA = Path(__file__).with_name("wrk_bodies.lua")


def signed_bodies(key: KeyPair, count: int) -> list[bytes]:
    return [body(make_spec(key)) for _ in range(count)]


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def serve(target: str, env: dict[str, str], log: str, path: str = "/api/v1/jobs") -> tuple[str, object]:
    port = spare_port()
    process = start([PYTHON, *GUNICORN, "--bind", f"127.0.0.1:{port}", target], env, log)
    wait_for(lambda: answers_live(f"http://127.0.0.1:{port}"), what=f"gunicorn {target}")
    return f"http://127.0.0.1:{port}{path}", process


def wrk(url: str, bodies_file: Path, seconds: int, connections: int, threads: int, server_pid: int) -> dict[str, float]:
    """One closed-loop wrk run; returns accepted (202) per second, wrk's latency percentiles and the
    server's CPU per accepted request (less sensitive than the rate to whatever else the machine runs)."""
    env = {**os.environ, "BODIES_FILE": str(bodies_file), "WRK_THREADS": str(threads)}
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(LUA), url], env=env, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server_pid) - cpu_before
    line = next(x for x in out.splitlines() if x.startswith("ACCEPTED"))
    fields = line.split()
    values = dict(zip(fields[0::2], (float(v) for v in fields[1::2])))
    return {"rate": values["ACCEPTED"] / values["SECONDS"], "accepted": values["ACCEPTED"],
            "other": values["OTHER"], "p50_ms": values["P50_US"] / 1000, "p99_ms": values["P99_US"] / 1000,
            "cpu_ms": cpu * 1000 / max(values["ACCEPTED"], 1)}


async def _post(host: str, port: int, path: str, payload: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        return status
    finally:
        writer.close()


async def _open_loop(url: str, bodies: list[bytes], rate: float) -> tuple[list[float], int]:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    start_at = loop.time() + 0.1
    latencies: list[float] = []
    errors = 0

    async def one(index: int, payload: bytes) -> None:
        nonlocal errors
        scheduled = start_at + index / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        status = await _post(parts.hostname, parts.port, parts.path, payload)
        latencies.append((loop.time() - scheduled) * 1000)  # from the scheduled time, not the send
        errors += status != 202

    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return latencies, errors


def open_loop(url: str, bodies: list[bytes], rate: float) -> tuple[list[float], int]:
    return asyncio.run(_open_loop(url, bodies, rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bodies", type=int, default=16000, help="unique signed bodies per closed-loop run")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--open-seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="the three closed loops, this many times: the ratio is the median of the rounds'")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    began = time.perf_counter()
    ratios, cpu_ratios = [], []
    with scratch_database("beacon_bench") as database_url:
        env = beacon_env(database_url, work, trusted, API_MAX_CONNECTIONS_PER_CLIENT=str(options.connections * 2))
        targets = (("trivial", "bench.trivial_app:app", "/api/v1/jobs"),
                   ("durable", "bench.trivial_app:app", "/durable/api/v1/jobs"),
                   ("ingest", "app:create_app()", "/api/v1/jobs"))
        for round_ in range(1, options.rounds + 1):
            results: dict[str, dict[str, float]] = {}
            for name, target, path in targets:
                url, process = serve(target, env, str(work / f"{name}.log"), path)
                try:
                    wrk(url, write_bodies(work / f"warm-{name}.jsonl", signed_bodies(key, 300)), 2,
                        options.connections, options.threads, process.pid)  # warm-up (connections, caches)
                    bodies = write_bodies(work / f"{name}.jsonl", signed_bodies(key, options.bodies))
                    results[name] = wrk(url, bodies, options.seconds, options.connections, options.threads, process.pid)
                    if name == "ingest" and results[name]["accepted"] + results[name]["other"] >= options.bodies:
                        # a wrk thread that used its share sends it again (200 idempotent); the baselines accept repeats
                        print(f"warning: {name} used every body; raise --bodies for a true rate")
                    if name == "ingest" and round_ == options.rounds:
                        open_bodies = signed_bodies(key, int(options.rate * options.open_seconds))
                        latencies, errors = open_loop(url, open_bodies, options.rate)
                finally:
                    stop(process)
            ratios.append(results["ingest"]["rate"] / results["durable"]["rate"])
            cpu_ratios.append(results["durable"]["cpu_ms"] / results["ingest"]["cpu_ms"])
            print(f"round {round_}:")
            for name, r in results.items():
                print(f"  {name:8s} {r['rate']:8.1f} accepted/s (wrk -t{options.threads} -c{options.connections} "
                      f"-d{options.seconds}s)  p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms  "
                      f"non-202: {r['other']:.0f}  server CPU {r['cpu_ms']:.2f} ms/request")
            print(f"  ingest/durable = {ratios[-1]:.2f}, by server CPU per request {cpu_ratios[-1]:.2f}; "
                  f"ingest/trivial = {results['ingest']['rate'] / results['trivial']['rate']:.2f}; "
                  f"durable/trivial = {results['durable']['rate'] / results['trivial']['rate']:.2f}", flush=True)
    print(f"ratio ingest/durable = {statistics.median(ratios):.2f}, the median of {len(ratios)} rounds "
          f"({min(ratios):.2f}–{max(ratios):.2f})  (target ≥ 0.50); by server CPU per request: "
          f"{statistics.median(cpu_ratios):.2f}")
    print(f"open loop {options.rate:.0f} req/s for {options.open_seconds} s, latency from the scheduled time: "
          f"{summary(latencies)}, non-202: {errors}  (target p99 ≤ 50 ms: "
          f"{'met' if percentile(latencies, 0.99) <= 50 else 'missed'})  [{time.perf_counter() - began:.0f} s]")

if __name__ == "__main__":
    main()
