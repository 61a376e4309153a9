"""Connection exhaustion: /health/live latency and signed submissions, without and then under an attack
of slow-loris connections and idle WebSockets, against ``beacon api`` (gevent workers, the defaults).

The attackers (bench/attackers.py, a process of their own) come from 127.0.0.2–127.0.0.40, the
legitimate client from 127.0.0.1, so the per-address cap (API_MAX_CONNECTIONS_PER_CLIENT) stays
at its default and still protects. Target: under 200 slow-loris connections and 500 idle /ws,
/health/live p99 ≤ 100 ms and every legitimate submission accepted. Printed beside the same
figures measured without the attack in the same run.

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.exhaustion [--slow 200] [--ws 500] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from beacon.crypto.signing import KeyPair
from bench.common import (
    PYTHON,
    answers_live,
    beacon_env,
    body,
    make_spec,
    percentile,
    redis_db,
    scratch_database,
    spare_port,
    start,
    stop,
    trusted_key_file,
    wait_for,
)
from tests.support import session_from

TARGET_P99_MS = 100.0


def phase(base: str, key: KeyPair, seconds: float) -> tuple[tuple[list[float], int], tuple[list[float], int]]:
    """For ``seconds``: GET /health/live from 127.0.0.1 every 10 ms on a new connection each (as a
    platform's checker does) and, beside it, a signed submission every 100 ms (202 expected).
    Returns (latencies ms, failures) of each."""
    until = time.monotonic() + seconds
    pace = threading.Event()  # never set: its wait() paces the loops
    health: tuple[list[float], int] = ([], 0)
    submits: tuple[list[float], int] = ([], 0)

    def probe() -> None:
        nonlocal health
        session, latencies, failures = session_from("127.0.0.1"), [], 0
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                ok = session.get(f"{base}/health/live", headers={"Connection": "close"}, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok
            pace.wait(0.01)
        health = (latencies, failures)

    def submit() -> None:
        nonlocal submits
        session, latencies, failures = session_from("127.0.0.1"), [], 0
        while time.monotonic() < until:
            data = body(make_spec(key))
            started = time.perf_counter()
            try:
                status = session.post(f"{base}/api/v1/jobs", data=data, headers={"Content-Type": "application/json"},
                                      timeout=30).status_code
            except requests.RequestException:
                status = None
            latencies.append((time.perf_counter() - started) * 1000)
            failures += status != 202
            pace.wait(0.1)
        submits = (latencies, failures)

    threads = [threading.Thread(target=probe), threading.Thread(target=submit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return health, submits


class Attack:
    def __init__(self, port: int, slow: int, ws: int, sources: str, slow_interval: float):
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.attackers", "--target", f"127.0.0.1:{port}", "--slow", str(slow), "--ws", str(ws),
             "--sources", sources, "--slow-interval", str(slow_interval), "--duration", "1800",
             "--report-every", "0.5", "--stop-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.status: dict = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith("{"):
                self.status = json.loads(line)

    def stop(self) -> dict:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.thread.join(timeout=10)
        return self.status


def line(name: str, latencies: list[float], failures: int) -> str:
    return (f"  {name:<34} p50 {percentile(latencies, 0.5):7.1f} ms   p99 {percentile(latencies, 0.99):7.1f} ms   "
            f"max {max(latencies):7.1f} ms   failed {failures}/{len(latencies)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=200, help="slow-loris connections")
    parser.add_argument("--ws", type=int, default=500, help="idle WebSockets")
    parser.add_argument("--sources", default="127.0.0.2-127.0.0.40")
    parser.add_argument("--slow-interval", type=float, default=5.0, help="seconds between a slow client's bytes")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of each phase (longer than the 10 s head deadline, so slow-loris "
                             "connections are cut and come back while measuring)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    args = parser.parse_args()

    key = KeyPair.generate()
    with tempfile.TemporaryDirectory() as tmp, scratch_database("bench_exhaustion") as database_url:
        work = Path(tmp)
        port = spare_port()
        env = beacon_env(database_url, work / "data", trusted_key_file(work, key), REDIS_URL=redis_db(13),
                         METRICS_PORT=str(spare_port()), WEB_CONCURRENCY=str(args.workers))
        api = start([PYTHON, "-m", "beacon", "api", "--host", "127.0.0.1", "--port", str(port)], env,
                    str(work / "api.log"))
        base = f"http://127.0.0.1:{port}"
        attack = None
        try:
            wait_for(lambda: answers_live(base), timeout=60, what="the API")
            phase(base, key, 3)  # warm up: connections, imports, the database pool
            quiet_health, quiet_submit = phase(base, key, args.seconds)

            attack = Attack(port, args.slow, args.ws, args.sources, args.slow_interval)
            wait_for(lambda: attack.status.get("ws_open", 0) + attack.status.get("ws_refused", 0) >= args.ws
                     and attack.status.get("slow_open", 0) >= args.slow * 0.95, timeout=120, interval=0.2,
                     what="the attack to be in place")
            held = dict(attack.status)
            loud_health, loud_submit = phase(base, key, args.seconds)
            during = dict(attack.status)
            attack.stop()
            attack = None
        finally:
            if attack is not None:
                attack.stop()
            stop(api)

    print(f"beacon api: gevent workers x{args.workers}, defaults (head deadline 10 s, per-address cap 32)")
    print(f"attack: {args.slow} slow-loris (a header line every {args.slow_interval:g} s) + {args.ws} idle /ws "
          f"from {args.sources}; legitimate client 127.0.0.1")
    print(f"held when measuring: slow-loris open {held['slow_open']}, /ws open {held['ws_open']} "
          f"(refused by the cap {held['ws_refused'] + held['slow_refused']})")
    print("without attack:")
    print(line("GET /health/live", *quiet_health))
    print(line("POST /api/v1/jobs (202 expected)", *quiet_submit))
    print("under attack:")
    print(line("GET /health/live", *loud_health))
    print(line("POST /api/v1/jobs (202 expected)", *loud_submit))
    ratio = percentile(loud_health[0], 0.99) / max(percentile(quiet_health[0], 0.99), 0.001)
    print(f"health p99 under attack / without: {ratio:.2f}x")
    print(f"slow-loris connections cut by the head deadline while measuring: {during['slow_cut'] - held['slow_cut']}; "
          f"/ws closed by the server: {during['ws_closed']}")
    meets = percentile(loud_health[0], 0.99) <= TARGET_P99_MS and loud_health[1] == 0 and loud_submit[1] == 0
    print(f"target (health p99 <= {TARGET_P99_MS:g} ms under attack, no failed probe or submission): "
          f"{'met' if meets else 'NOT met'}")


if __name__ == "__main__":
    main()
