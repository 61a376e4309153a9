"""The API under gunicorn's gevent workers (``beacon api``) against slow and idle clients.

Hostile clients (bench/attackers.py, a process of their own) come from 127.0.0.2–127.0.0.40 and
legitimate traffic from 127.0.0.1, so the per-address cap stays at a value that protects. Real
Postgres and Redis; the API is the real gunicorn process. Latency bounds here only prove that the
API still answered (generous); bench/exhaustion.py measures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest
import requests
from sqlalchemy import create_engine, text

from beacon.crypto.signing import KeyPair
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB, REDIS_IDLE_DB, REDIS_LIMITS_DB
from tests.factories import body, make_spec
from tests.support import ApiProcess, session_from, spare_port, wait_for

CAP = 8  # API_MAX_CONNECTIONS_PER_CLIENT for these tests
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
ADMIN = "admin-serving"
JSON = {"Content-Type": "application/json"}


class Attackers:
    """``python -m bench.attackers`` in its own process; ``status`` is its latest report."""

    def __init__(self, target: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.attackers", "--target", target, "--stop-on-stdin-eof",
             "--duration", "240", "--report-every", "0.2", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.status: dict = {}
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("{"):
                self.status = json.loads(line)

    def wait(self, predicate, what: str) -> dict:  # noqa: ANN001
        def check():
            assert self.process.poll() is None, "".join(self.output)[-3000:]
            return self.status if self.status and predicate(self.status) else None

        return wait_for(check, timeout=60, interval=0.05, what=what)

    def stop(self) -> dict:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.status


@pytest.fixture(scope="module")
def api(tmp_path_factory, pg_url) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("serving")
    keypair = KeyPair.generate()
    keys = tmp / "trusted.json"
    keys.write_text(json.dumps([{"kid": "serving", "public_key": keypair.public_key_b64, "status": "active"}]))
    process = ApiProcess({
        "BEACON_DATA_DIR": str(tmp / "data"), "DATABASE_URL": pg_url, "TRUSTED_KEYS_FILE": str(keys),
        "REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}",
        "RATE_LIMIT_REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_LIMITS_DB}", "ADMIN_TOKENS": ADMIN,
        "API_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "API_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "API_MAX_CONNECTIONS_PER_CLIENT": str(CAP), "LOG_LEVEL": "WARNING",
    }, tmp / "api.log", workers=1)
    process.keypair = keypair
    process.start()
    yield process
    process.stop()


def target(api: ApiProcess) -> str:
    return f"127.0.0.1:{api.port}"


def submit(api: ApiProcess, session: requests.Session) -> int:
    return session.post(f"{api.url}/api/v1/jobs", data=body(make_spec(api.keypair)), headers=JSON, timeout=30).status_code


def test_liveness_and_submissions_hold_under_slow_loris_and_idle_websockets(api):
    legit = session_from("127.0.0.1")
    attackers = Attackers(target(api), "--slow", "60", "--ws", "60", "--sources", "127.0.0.2-127.0.0.40",
                          "--slow-interval", "0.5")
    try:
        held = attackers.wait(lambda s: s["ws_open"] == 60 and s["slow_open"] >= 55, "the attack to be in place")
        assert held["ws_refused"] == 0 and held["slow_refused"] == 0, held  # ~3 per address: under the cap
        latencies = []
        for _ in range(100):
            started = time.perf_counter()
            answer = legit.get(f"{api.url}/health/live", headers={"Connection": "close"}, timeout=10)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert [submit(api, legit) for _ in range(5)] == [202] * 5
        latencies.sort()
        print(f"health/live under attack: p50 {latencies[49] * 1000:.1f} ms, p99 {latencies[98] * 1000:.1f} ms")
        assert latencies[-1] < 5.0, "still answered (a generous bound; bench/exhaustion.py measures)"
        # The head deadline cut every slow-loris connection at least once (each reconnects at once).
        cut = attackers.wait(lambda s: s["slow_cut"] >= 60, "the server to cut the slow-loris connections")
        assert cut["ws_open"] == 60, "idle WebSockets that answer pings are kept"
    finally:
        final = attackers.stop()
    assert final["ws_errors"] == 0 and final["slow_failed"] == 0 and final["ws_failed"] == 0, final


def test_connections_beyond_the_per_address_cap_are_refused(api):
    attackers = Attackers(target(api), "--ws", str(CAP + 3), "--sources", "127.0.0.41")
    try:
        status = attackers.wait(lambda s: s["ws_open"] == CAP and s["ws_refused"] >= 3, "the cap to refuse the rest")
        assert status["ws_errors"] == 0, status
        assert requests.get(f"{api.url}/health/live", timeout=10).status_code == 200  # another address is served
        refused = session_from("127.0.0.41").get(f"{api.url}/api/v1/questions", timeout=10)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error_code"] == "rate_limit_exceeded"
        assert refused.json()["details"] == {"limit": "connections"}
    finally:
        attackers.stop()
    # The address gets its connections back once they closed.
    wait_for(lambda: session_from("127.0.0.41").get(f"{api.url}/api/v1/questions", timeout=10).status_code == 200,
             what="the slots of closed connections to be released")


def test_a_body_that_trickles_in_gets_408(api):
    head = ("POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        sock.settimeout(0.5)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                sock.sendall(b" ")  # one byte per half second: the body never completes in time
                continue
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:500]
    assert b'"error_code":"request_timeout"' in answer or b'"error_code": "request_timeout"' in answer, answer


def test_slow_database_queries_of_concurrent_requests_overlap(api, pg_url):
    """psycopg cooperates with gevent: two requests wait on Postgres at once in one worker process, and a
    third request that queries the database is answered meanwhile (a blocking driver would serialise them)."""
    jobs = []
    for _ in range(2):
        spec = make_spec(api.keypair)
        response = requests.post(f"{api.url}/api/v1/jobs", data=body(spec), headers=JSON, timeout=30)
        assert response.status_code == 202, response.text
        jobs.append(spec["id"])
    locker = create_engine(pg_url)
    answers: list[int] = []
    try:
        with locker.connect() as conn, conn.begin() as lock:
            conn.execute(text("SELECT id FROM jobs WHERE id = ANY(:ids) FOR UPDATE"), {"ids": jobs})
            threads = [threading.Thread(target=lambda job_id=job_id: answers.append(requests.post(
                f"{api.url}/admin/jobs/{job_id}/emergency-stop", json={"reason": "overlap"},
                headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).status_code)) for job_id in jobs]
            for thread in threads:
                thread.start()

            def both_waiting() -> bool:
                with locker.connect() as probe:
                    return probe.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE jobs%'")).scalar() == 2

            wait_for(both_waiting, what="both requests to wait on Postgres at the same time")
            ready = requests.get(f"{api.url}/health/ready", timeout=10)  # a database query, served meanwhile
            assert ready.status_code == 200 and not answers
            lock.commit()
        for thread in threads:
            thread.join(timeout=30)
        assert answers == [200, 200]
    finally:
        locker.dispose()


def test_metrics_are_served_only_on_the_metrics_port(api):
    assert requests.get(f"{api.url}/metrics", timeout=10).status_code == 404
    scrape = requests.get(f"{api.metrics_url}/metrics", timeout=10)
    assert scrape.status_code == 200 and "beacon_http_requests_total" in scrape.text
    assert requests.get(f"{api.metrics_url}/api/v1/questions", timeout=10).status_code == 404
    assert requests.get(f"{api.metrics_url}/health/live", timeout=10).status_code == 200



def test_the_image_health_check_asks_the_api(api):
    def check(port: int) -> subprocess.CompletedProcess:
        env = {**os.environ, "PORT": str(port)}
        return subprocess.run([sys.executable, "-m", "beacon.healthcheck", "--role", "api"], env=env,
                              capture_output=True, text=True, timeout=60)

    assert check(api.port).returncode == 0
    down = check(spare_port())
    assert down.returncode == 1 and down.stderr.startswith("unhealthy: "), down.stderr


def test_behind_a_trusted_proxy_the_cap_counts_requests_in_flight_per_client_address(make_settings, clean_db):
    """Every connection comes from the proxy here, so the cap on requests in flight (open /ws included) per
    client_address() is what tells clients apart (the app behind werkzeug: no worker-level cap)."""
    import simple_websocket

    from app import create_app
    from tests.support import serve_wsgi

    settings = make_settings(DATABASE_URL=clean_db, TRUST_ENFORCE="false", API_MAX_CONNECTIONS_PER_CLIENT=2,
                             REDIS_URL=f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", TRUSTED_PROXY_CIDRS="127.0.0.0/8")
    with serve_wsgi(create_app(settings)) as base:
        url = base.replace("http", "ws") + "/ws"
        held = [simple_websocket.Client.connect(url, headers={"Fly-Client-IP": "203.0.113.7"}) for _ in range(2)]
        try:
            over = requests.get(f"{base}/api/v1/questions", headers={"Fly-Client-IP": "203.0.113.7"}, timeout=10)
            assert over.status_code == 429 and over.json()["details"] == {"limit": "connections"}
            other = requests.get(f"{base}/api/v1/questions", headers={"Fly-Client-IP": "198.51.100.9"}, timeout=10)
            assert other.status_code == 200, "another client behind the same proxy is served"
            assert requests.get(f"{base}/health/live", headers={"Fly-Client-IP": "203.0.113.7"},
                                timeout=10).status_code == 200, "liveness is never capped"
        finally:
            for ws in held:
                ws.close()
        wait_for(lambda: requests.get(f"{base}/api/v1/questions", headers={"Fly-Client-IP": "203.0.113.7"},
                                      timeout=10).status_code == 200, what="the closed sockets' slots to be released")
