"""Job events end to end: two API processes, a real worker, Redis fan-out, replay with ``since``,
a client that never reads, and the embedded default (SQLite, no Redis) tailing the table."""

from __future__ import annotations

import base64
import json
import os
import socket

import pytest
import redis
import requests
import simple_websocket

from beacon.messaging.events import EVENTS_CHANNEL
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.factories import body, make_spec
from tests.stack import Stack
from tests.support import ApiProcess, wait_for

LAST_OF_A_JOB = "transparency.appended"  # the finalising transaction's last event (no IPFS here)


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory, pg_url, keys):
    """API B in this process (the stack's), API A a real ``beacon api`` process, one real worker."""
    tmp = tmp_path_factory.mktemp("events")
    redis_url = f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"
    stack = Stack(tmp, pg_url, redis_url, keys, extra_env={"REDIS_URL": redis_url})
    api_a = ApiProcess(stack.env, tmp / "api-a.log").start()
    stack.start_worker()
    yield stack, api_a
    api_a.stop()
    stack.close()


def ws_url(base: str, query: str) -> str:
    return base.replace("http", "ws") + "/ws?" + query


def read_until_last(ws, events: list[dict], stop_after: int | None = None) -> list[dict]:
    while not events or events[-1]["type"] != LAST_OF_A_JOB:
        if stop_after is not None and len(events) >= stop_after:
            break
        events.append(json.loads(ws.receive(timeout=30)))
    return events


def stored(api: str, job_id: str) -> list[dict]:
    return requests.get(f"{api}/api/v1/jobs/{job_id}/events", timeout=10).json()["events"]


def test_a_client_on_api_a_receives_every_event_of_a_job_in_order(two_apis, clean_db):
    stack, api_a = two_apis
    job_id = f"job-events-{os.getpid()}-order"
    ws = simple_websocket.Client.connect(ws_url(api_a.url, f"job_id={job_id}&compat=none"))
    try:
        stack.submit(id=job_id)  # through API B
        events = read_until_last(ws, [])
    finally:
        ws.close()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events == stored(stack.api, job_id)  # what arrived live is what the table holds
    types = [e["type"] for e in events]
    assert types[:3] == ["job.queued", "job.started", "job.running"]
    assert types[-4:] == ["job.finished", "job.completed", "bundle.stored", "transparency.appended"]
    assert types.count("unit.started") == types.count("unit.completed") == 3
    assert {e["job_id"] for e in events} == {e["data"]["job_id"] for e in events} == {job_id}
    completed = [e["data"] for e in events if e["type"] == "unit.completed"]
    assert {c["region"] for c in completed} == {"US", "EU", "APAC"}
    assert all(c["duration_ms"] >= 0 and c["attempts"] == 1 for c in completed)


def test_reconnecting_with_since_ends_with_exactly_the_full_sequence(two_apis, clean_db):
    stack, api_a = two_apis
    job_id = f"job-events-{os.getpid()}-resume"
    first = simple_websocket.Client.connect(ws_url(api_a.url, f"job_id={job_id}&since=0&compat=none"))
    stack.submit(id=job_id)
    try:
        received = read_until_last(first, [], stop_after=4)  # then the client goes away mid-job
    finally:
        first.close()
    second = simple_websocket.Client.connect(
        ws_url(stack.api, f"job_id={job_id}&since={received[-1]['seq']}&compat=none"))  # the other API
    try:
        read_until_last(second, received)
    finally:
        second.close()
    full = stored(stack.api, job_id)
    assert received == full
    assert [e["seq"] for e in full] == list(range(1, len(full) + 1))
    # The same stream as Server-Sent Events, for clients without WebSocket
    with requests.get(f"{api_a.url}/api/v1/jobs/{job_id}/events", params={"since": 2},
                      headers={"Accept": "text/event-stream"}, stream=True, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        seen = []
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if seen[-1]["type"] == LAST_OF_A_JOB:
                    break
    assert seen == full[2:]


def test_the_go_hub_names_come_too_unless_compat_none(two_apis, clean_db):
    stack, api_a = two_apis
    job_id = f"job-events-{os.getpid()}-compat"
    ws = simple_websocket.Client.connect(ws_url(api_a.url, f"job_id={job_id}"))
    try:
        stack.submit(id=job_id)
        messages = []
        while not messages or messages[-1]["type"] != "transparency.entry_appended":
            messages.append(json.loads(ws.receive(timeout=30)))
    finally:
        ws.close()
    go = [m["type"] for m in messages if "seq" not in m]
    assert go.count("runner.execution_completed") == 3 and "runner.job_completed" in go
    assert messages[-1]["data"]["job_id"] == job_id


def test_a_browser_origin_must_be_allowed(two_apis):
    stack, api_a = two_apis
    refused = requests.get(f"{api_a.url}/ws", headers={"Origin": "https://evil.example", "Connection": "Upgrade",
                                                       "Upgrade": "websocket"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error_code"] == "forbidden"
    # simple_websocket sends ``Host`` without the port: the page's own origin is then http://127.0.0.1
    own = simple_websocket.Client.connect(ws_url(api_a.url, "compat=none"), headers={"Origin": "http://127.0.0.1"})
    assert own.connected
    own.close()


def raw_websocket_that_never_reads(url: str) -> socket.socket:
    """A WebSocket handshake on a socket with a tiny receive buffer, then never a read."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall((f"GET /ws?compat=none HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return conn


def dropped_count(api_a: ApiProcess) -> float:
    text = requests.get(f"{api_a.metrics_url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("beacon_ws_clients_dropped_total{") and 'transport="ws"' in line)


def test_a_client_that_never_reads_is_dropped_without_delaying_the_others(two_apis):
    stack, api_a = two_apis
    before = dropped_count(api_a)
    stuck = raw_websocket_that_never_reads(api_a.url)
    reader = simple_websocket.Client.connect(ws_url(api_a.url, "compat=none"))
    publisher = redis.Redis.from_url(stack.env["REDIS_URL"])
    job_id, pad, batch, total = f"job-flood-{os.getpid()}", "x" * 400, 500, 20000
    received = 0
    try:
        for start in range(1, total + 1, batch):
            pipe = publisher.pipeline(transaction=False)
            for seq in range(start, start + batch):
                pipe.publish(EVENTS_CHANNEL, json.dumps({"id": seq, "seq": seq, "type": "bench.event", "job_id": job_id,
                                                         "time": "", "data": {"job_id": job_id, "pad": pad}}))
            pipe.execute()
            while received < start + batch - 1:  # the reader keeps up, batch by batch
                event = json.loads(reader.receive(timeout=30))
                if event["job_id"] == job_id:
                    received += 1
                    assert event["seq"] == received
            if dropped_count(api_a) > before:
                break
        wait_for(lambda: dropped_count(api_a) > before, timeout=30, what="the stuck client to be dropped")
        assert reader.connected
        stuck.settimeout(30)
        data = b""
        while chunk := stuck.recv(65536):  # the server closed it (close frame, then the socket)
            data += chunk
        assert b"\x88" in data  # a close frame among what it had been sent
    finally:
        reader.close()
        stuck.close()


def test_the_embedded_default_streams_the_same_sequence(tmp_path, keys):
    """SQLite and no Redis: /ws and SSE tail the events table; the engine runs the job in process."""
    from app import create_app
    from beacon.db import database_for
    from beacon.execution import engine
    from beacon.execution.providers import serve_simulator
    from beacon.execution.regions import provider_registry
    from beacon.migrate import upgrade
    from beacon.settings import Settings
    from tests.stack import providers_file, trusted_keys_file
    from tests.support import serve_wsgi

    simulator = serve_simulator(latency_ms=1)
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "PROVIDERS_FILE": str(providers_file(tmp_path, simulator.url)),
           "TRUSTED_KEYS_FILE": str(trusted_keys_file(tmp_path, keys)), "RATE_LIMIT_DEFAULT": "off",
           "LOG_LEVEL": "WARNING"}
    settings = Settings.from_env(env)
    assert settings.redis_url is None and settings.database_url.startswith("sqlite")
    upgrade(settings.database_url)
    db = database_for(settings.database_url)
    spec = make_spec(keys)
    try:
        with serve_wsgi(create_app(settings)) as api:
            ws = simple_websocket.Client.connect(ws_url(api, f"job_id={spec['id']}&since=0&compat=none"))
            assert requests.post(f"{api}/api/v1/jobs", data=body(spec), headers={"Content-Type": "application/json"},
                                 timeout=10).status_code == 202
            units: list[int] = []
            engine.start_job(db, settings, spec["id"], lambda _job, heads: units.extend(e for e, _ in heads))
            registry = provider_registry(settings)
            for execution_id in units:
                engine.step_unit(db, settings, registry, execution_id, lambda *a: None)
            try:
                events = read_until_last(ws, [])
            finally:
                ws.close()
            full = stored(api, spec["id"])
    finally:
        simulator.close()
    assert events == full
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][:3] == ["job.queued", "job.started", "job.running"]
    assert [e["type"] for e in events].count("unit.completed") == 3


def test_beacon_watch_follows_the_events_and_exits_by_the_outcome(two_apis, clean_db):
    import subprocess
    import sys

    stack, api_a = two_apis
    job_id = stack.submit(questions=["tiananmen_neutral"])
    watched = subprocess.run([sys.executable, "-m", "beacon", "watch", job_id, "--url", api_a.url],
                             env={**os.environ, **stack.env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120)
    assert watched.returncode == 0, watched.stderr[-2000:]
    assert "APAC" in watched.stdout and "content_refusal" in watched.stdout and f"{job_id}: completed" in watched.stdout
    unknown = subprocess.run([sys.executable, "-m", "beacon", "watch", "job-that-does-not-exist", "--url", api_a.url],
                             env={**os.environ, **stack.env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0
