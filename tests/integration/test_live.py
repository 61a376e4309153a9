"""GET /ws over a real WebSocket: a job's events arrive as it starts and finishes."""

from __future__ import annotations

import json

import simple_websocket

from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.stack import Stack


def test_ws_streams_a_jobs_events(tmp_path, pg_url, clean_db, keypair):
    stack = Stack(tmp_path, pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", keypair,
                  extra_env={"REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"})
    try:
        stack.start_worker()
        other = stack.submit()  # another job's events must be filtered out
        stack.wait_terminal(other)
        job_id = f"job-live-{tmp_path.name}"
        ws = simple_websocket.Client.connect(stack.api.replace("http", "ws") + f"/ws?job_id={job_id}")
        try:
            stack.submit(id=job_id)
            events = []
            while not events or events[-1]["type"] != "transparency.appended":
                events.append(json.loads(ws.receive(timeout=30)))
        finally:
            ws.close()
        # The three types this socket always sent, among every other event of the job now
        kept = [e for e in events if e["type"] in ("job.started", "job.finished", "transparency.appended")]
        assert [e["type"] for e in kept] == ["job.started", "job.finished", "transparency.appended"]
        assert {e["data"]["job_id"] for e in events} == {job_id}
        assert kept[0]["data"]["units"] == 3
        assert kept[1]["data"]["status"] == "completed"
    finally:
        stack.close()
