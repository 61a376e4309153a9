"""GET /ws: live events over a WebSocket (job.started, job.finished, transparency.appended).

Each message is the JSON event ``{type, time, data}``; ``?job_id=`` keeps one job's events.
Events come from Redis pub/sub; without REDIS_URL the socket says so and closes.

One Redis subscription per API process (:class:`EventFanout`) feeds every open socket through a
small queue of its own, so an idle socket costs a greenlet and a socket, never a Redis connection.
The server pings every :data:`PING_INTERVAL_SECONDS` and closes a socket whose client does not
answer; a client may send at most :data:`MAX_MESSAGE_BYTES` per message (it has nothing to say).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import redis
from flask import Blueprint, current_app, request
from flask_sock import Sock

from app.openapi import json_response
from app.services import services
from beacon.messaging.events import EVENTS_CHANNEL
from beacon.redis_clients import redis_client

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)
sock = Sock()

PING_INTERVAL_SECONDS = 25
MAX_MESSAGE_BYTES = 4096
QUEUE_SIZE = 256  # events waiting for one slow socket; beyond, that socket misses events
POLL_SECONDS = 2.0  # how often a socket with nothing to send checks that its client is still there
EXTENSION = "beacon.event_fanout"

OPENAPI = {
    "/ws": {
        "get": {
            "summary": "Live events over a WebSocket",
            "description": "Upgrade to a WebSocket; each message is {type, time, data}. Types: job.started, "
                           "job.finished, transparency.appended. ?job_id= keeps one job's events. The server "
                           f"pings every {PING_INTERVAL_SECONDS} s and closes a socket that does not answer.",
            "parameters": [{"name": "job_id", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"101": {"description": "switching protocols"},
                          "400": json_response({"type": "object"}, "not a WebSocket request")},
        },
    },
}


@bp.record_once
def _configure(state) -> None:  # noqa: ANN001
    state.app.config.setdefault("SOCK_SERVER_OPTIONS", {
        "ping_interval": PING_INTERVAL_SECONDS, "max_message_size": MAX_MESSAGE_BYTES})


class EventFanout:
    """One Redis subscription to ``beacon:events``, copied to a queue per open socket.

    The subscriber thread (a greenlet under gevent) starts with the first socket, reconnects with
    a backoff when Redis goes away, and lives as long as the process.
    """

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.subscribed = threading.Event()
        self._queues: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self, wait_seconds: float = 5.0) -> queue.Queue:
        """A queue receiving every event from now on (once the Redis subscription is up)."""
        events: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        with self._lock:
            self._queues.add(events)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="beacon-ws-fanout", daemon=True)
                self._thread.start()
        self.subscribed.wait(wait_seconds)
        return events

    def unsubscribe(self, events: queue.Queue) -> None:
        with self._lock:
            self._queues.discard(events)

    def _deliver(self, text: str) -> None:
        with self._lock:
            targets = list(self._queues)
        for events in targets:
            try:
                events.put_nowait(text)
            except queue.Full:
                pass  # a socket that does not keep up misses events rather than holding memory

    def _run(self) -> None:
        backoff = 0.5
        while True:
            pubsub = None
            try:
                pubsub = redis_client(self.redis_url, timeout=None).pubsub()
                pubsub.subscribe(EVENTS_CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.subscribed.set()
                        backoff = 0.5
                    elif message["type"] == "message":
                        self._deliver(message["data"].decode())
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("live events: Redis subscription lost, retrying", extra={"error": str(exc)})
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass


def fanout(redis_url: str) -> EventFanout:
    found = current_app.extensions.get(EXTENSION)
    if found is None or found.redis_url != redis_url:
        found = current_app.extensions[EXTENSION] = EventFanout(redis_url)
    return found


@sock.route("/ws", bp=bp)
def live(ws) -> None:  # noqa: ANN001
    settings = services().settings
    job_id = request.args.get("job_id")
    raw = request.environ.get("gunicorn.socket")
    if raw is not None:
        raw.settimeout(None)  # the ping keeps the socket honest; the worker's read deadline is for requests
    if not settings.redis_url:
        ws.send(json.dumps({"type": "error", "data": {"message": "live events need REDIS_URL; poll the API"}}))
        return
    events_source = fanout(settings.redis_url)
    events = events_source.subscribe()
    try:
        while ws.connected:
            try:
                text = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if job_id is None or json.loads(text).get("data", {}).get("job_id") == job_id:
                ws.send(text)
    finally:
        events_source.unsubscribe(events)
