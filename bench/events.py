"""Live events: events per second from worker-like producers to connected /ws clients, and the p99
delivery delay, next to raw Redis pub/sub measured in the same run.

Producers (processes of their own, as workers are) write each event with ``beacon.messaging.events.emit``
in a transaction of its own (the job row's ``event_seq`` bumped, the row inserted, published after
commit); ``beacon api`` (gunicorn, gevent) fans them out to ``--clients`` WebSockets through its one
Redis subscription per process. The baseline: the same producers PUBLISH messages of the same size
straight to Redis, received by ``--clients`` plain Redis subscribers. Delay = receive time − the
event's ``time`` (one host, one clock); rate = events produced / (first produced → last received by
every client).

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.events [--clients 200] [--producers 2] [--events 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import redis
import simple_websocket

from beacon.crypto.signing import KeyPair
from bench.common import (
    PYTHON,
    answers_live,
    beacon_env,
    percentile,
    redis_db,
    scratch_database,
    spare_port,
    start,
    stop,
    trusted_key_file,
    wait_for,
)

CHANNEL = "beacon:events"


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def produce_events(database_url: str, redis_url: str, job_id: str, count: int, go: multiprocessing.Event) -> None:
    from beacon.db import database_for
    from beacon.messaging.events import configure_publishing, emit

    configure_publishing(redis_url)
    db = database_for(database_url)
    go.wait()
    for i in range(count):
        with db.session() as session:
            emit(session, job_id, "unit.completed", {"execution_id": i, "region": "US", "model_id": "m",
                                                     "question_id": "q", "attempts": 1, "status": "completed"})


def produce_raw(redis_url: str, job_id: str, count: int, size: int, go: multiprocessing.Event) -> None:
    from beacon.timeutil import isoformat, utcnow

    client = redis.Redis.from_url(redis_url)
    go.wait()
    for i in range(count):
        client.publish(CHANNEL, json.dumps({"seq": i + 1, "job_id": job_id, "time": isoformat(utcnow()),
                                            "pad": "x" * size}))


def collect(receive, expected: int, delays: list[float], done: threading.Event, last: list[float]) -> None:  # noqa: ANN001
    got = 0
    while got < expected:
        message = receive()
        if message is None:
            continue
        event = json.loads(message)
        if "time" not in event or not event.get("job_id", "").startswith("bench-"):
            continue
        now = time.time()
        delays.append((now - _seconds(event["time"])) * 1000)
        got += 1
    last.append(time.time())
    done.set()


def run_phase(name: str, clients: list, receive_of, producers: list[multiprocessing.Process], expected: int,
              go: multiprocessing.Event) -> tuple[float, list[float]]:
    delays: list[float] = []
    lasts: list[float] = []
    dones = []
    for client in clients:
        done = threading.Event()
        dones.append(done)
        threading.Thread(target=collect, args=(receive_of(client), expected, delays, done, lasts), daemon=True).start()
    for p in producers:
        p.start()
    started = time.time()
    go.set()
    for done in dones:
        done.wait(300)
    for p in producers:
        p.join(60)
    elapsed = max(lasts) - started if lasts else float("nan")
    missing = sum(1 for d in dones if not d.is_set())
    rate = expected / elapsed
    print(f"{name}: {expected} events to {len(clients)} clients in {elapsed:.2f} s: {rate:,.0f} events/s "
          f"({rate * len(clients):,.0f} deliveries/s), delay p50 {percentile(delays, 0.5):.1f} ms, "
          f"p99 {percentile(delays, 0.99):.1f} ms{f', {missing} clients incomplete' if missing else ''}")
    return rate, delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--events", type=int, default=500, help="events per producer")
    args = parser.parse_args()
    expected = args.producers * args.events
    ctx = multiprocessing.get_context("spawn")
    with scratch_database("beacon_bench_events") as database_url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events_redis = redis_db(13)
        from beacon.db import database_for
        from beacon.models import Job

        jobs = [f"bench-{i}" for i in range(args.producers)]
        with database_for(database_url).session() as session:
            for job_id in jobs:
                session.add(Job(id=job_id, status="running", raw_body="{}", spec={}, public_key="bench"))
        port = spare_port()
        env = beacon_env(database_url, work, trusted_key_file(work, KeyPair.generate()), REDIS_URL=events_redis,
                         METRICS_PORT=str(spare_port()), API_MAX_CONNECTIONS_PER_CLIENT="1000")
        api = start([PYTHON, "-m", "beacon", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                    env, str(work / "api.log"))
        try:
            wait_for(lambda: answers_live(f"http://127.0.0.1:{port}"), timeout=60, what="the API")
            # Raw Redis pub/sub first: the baseline
            subs = []
            for _ in range(args.clients):
                pubsub = redis.Redis.from_url(events_redis).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                subs.append(pubsub)
            for pubsub in subs:
                while pubsub.get_message(timeout=0.01) is not None:
                    pass
            size = 230  # about an event's JSON size
            go = ctx.Event()
            raw_rate, raw_delays = run_phase(
                "raw Redis pub/sub", subs,
                lambda p: lambda: (lambda m: m["data"] if m else None)(p.get_message(timeout=1.0)),
                [ctx.Process(target=produce_raw, args=(events_redis, j, args.events, size, go)) for j in jobs],
                expected, go)
            for pubsub in subs:
                pubsub.close()
            # Beacon: emit in transactions, /ws fan-out
            sockets = [simple_websocket.Client.connect(f"ws://127.0.0.1:{port}/ws?compat=none")
                       for _ in range(args.clients)]
            go = ctx.Event()
            rate, delays = run_phase(
                "beacon /ws", sockets, lambda ws: lambda: ws.receive(timeout=1.0),
                [ctx.Process(target=produce_events, args=(database_url, events_redis, j, args.events, go))
                 for j in jobs], expected, go)
            for ws in sockets:
                ws.close()
            print(f"ratio: beacon /ws delivers {rate / raw_rate:.2f}x the raw pub/sub event rate; p99 delay "
                  f"{percentile(delays, 0.99):.1f} ms vs {percentile(raw_delays, 0.99):.1f} ms")
        finally:
            stop(api)


if __name__ == "__main__":
    main()
