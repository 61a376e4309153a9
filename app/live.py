"""Live events: ``GET /ws`` (WebSocket) and ``GET /api/v1/jobs/<id>/events`` (JSON pages or SSE).

Each event is ``{id, seq, type, job_id, time, data}`` (``beacon.messaging.events``), written in the
transaction of the change it announces. ``?job_id=`` keeps one job's events; with it, ``?since=<seq>``
first replays the job's stored events after ``seq``, then goes live: the socket subscribes before it
reads the table, and every event is passed on only when its ``seq`` follows the last one sent, so
the seam has neither a gap nor a duplicate (a gap in the live stream — events of one job published
by two processes out of order, or lost while Redis was away — is filled from the table). By default
``/ws`` also sends the Go runner hub's names (``runner.execution_failed``,
``transparency.entry_appended``, …) for the portal; ``?compat=none`` leaves them out.

One event source per API process feeds every open socket and stream through a bounded queue of its
own: with ``REDIS_URL``, one Redis subscription to ``beacon:events`` (:class:`RedisFanout`); without
(the embedded default), one reader tailing the ``events`` table (:class:`TableTail`). A client whose
queue fills (it does not keep up) is dropped: its WebSocket closes with :data:`CLOSE_TOO_SLOW`, and
``beacon_ws_clients_dropped_total`` counts it; the others never wait for it. The server pings every
:data:`PING_INTERVAL_SECONDS` and closes a socket whose client does not answer. A browser's
``Origin`` must be the API's own or pass the CORS matcher (``CORS_ALLOWED_ORIGINS``); clients that
send none are accepted.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Iterator

import redis
from flask import Blueprint, Response, current_app, g, request, stream_with_context
from flask_sock import Sock

from app.browser import compiled_origins
from app.errors import ApiError
from app.openapi import json_response
from app.services import services
from beacon.errors import ValidationError
from beacon.messaging.events import (
    EVENTS_CHANNEL,
    compat_events,
    events_after_id,
    events_since,
    last_event_id,
)
from beacon.observability import metrics
from beacon.redis_clients import redis_client
from beacon.resources.jobs import get_job

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)
sock = Sock()

PING_INTERVAL_SECONDS = 25
MAX_MESSAGE_BYTES = 4096
QUEUE_SIZE = 1024  # events waiting for one client; a client whose queue fills is dropped
POLL_SECONDS = 2.0  # how often a socket with nothing to send checks that its client is still there
CHECK_TABLE_SECONDS = 10.0  # how often an idle one-job follower checks the table (a lost publish)
TAIL_SECONDS = 0.25  # the embedded default's table tail
SSE_KEEPALIVE_SECONDS = 15.0
PAGE_LIMIT = 500
CLOSE_TOO_SLOW = 4008
EXTENSION = "beacon.event_source"

_EVENT = {"type": "object", "required": ["id", "seq", "type", "job_id", "time", "data"], "properties": {
    "id": {"type": "integer"}, "seq": {"type": "integer"}, "type": {"type": "string"},
    "job_id": {"type": "string"}, "time": {"type": "string", "format": "date-time"}, "data": {"type": "object"}}}

OPENAPI = {
    "/ws": {
        "get": {
            "summary": "Live events over a WebSocket",
            "description": "Upgrade to a WebSocket; each message is an event {id, seq, type, job_id, time, data} "
                           "(types: job.queued, job.started, job.running, unit.started, unit.completed, "
                           "unit.retrying, unit.failed, job.finished, job.completed, job.failed, job.cancelled, "
                           "bundle.stored, transparency.appended, bundle.pinned) and, unless ?compat=none, the Go "
                           "runner hub's {type, data} messages. ?job_id= keeps one job's events; with it, "
                           "?since=<seq> replays the stored events after seq first. The server pings every "
                           f"{PING_INTERVAL_SECONDS} s; a client that does not keep up is closed with code "
                           f"{CLOSE_TOO_SLOW}. A browser Origin must be the API's own or an allowed CORS origin.",
            "parameters": [
                {"name": "job_id", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                {"name": "compat", "in": "query", "required": False, "schema": {"type": "string", "enum": ["go", "none"]}},
            ],
            "responses": {"101": {"description": "switching protocols"},
                          "400": json_response({"type": "object"}, "not a WebSocket request, or a bad parameter"),
                          "403": json_response({"type": "object"}, "an Origin that is not allowed")},
        },
    },
    "/api/v1/jobs/{job_id}/events": {
        "get": {
            "summary": "A job's events, as JSON pages or Server-Sent Events",
            "description": "The same events as /ws?job_id=. As JSON: {events, next_since, status}, at most "
                           f"{PAGE_LIMIT} events with seq above ?since= (call again with next_since). With "
                           "Accept: text/event-stream: the stored events after ?since= (or Last-Event-ID), then "
                           "live ones, each `id: <seq>`, `event: <type>`, `data: <event JSON>`.",
            "parameters": [
                {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT}},
            ],
            "responses": {
                "200": {"description": "events", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "events": {"type": "array", "items": _EVENT}, "next_since": {"type": "integer"},
                        "status": {"type": "string"}}}},
                    "text/event-stream": {"schema": {"type": "string"}}}},
                "400": json_response({"type": "object"}, "a bad parameter"),
                "404": json_response({"type": "object"}, "no such job"),
            },
        },
    },
}


@bp.record_once
def _configure(state) -> None:  # noqa: ANN001
    state.app.config.setdefault("SOCK_SERVER_OPTIONS", {
        "ping_interval": PING_INTERVAL_SECONDS, "max_message_size": MAX_MESSAGE_BYTES})


# --------------------------------------------------------------------------- event sources

class Subscription:
    """One client's bounded queue; ``dropped`` is set when it filled."""

    def __init__(self, transport: str):
        self.events: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.dropped = threading.Event()
        self.transport = transport
        self.raw: socket.socket | None = None  # shut down when dropped, to free a send stuck on a full socket

    def get(self, timeout: float) -> dict | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def drop(self) -> None:
        if self.dropped.is_set():
            return
        self.dropped.set()
        metrics.ws_dropped.labels(self.transport).inc()
        log.warning("live client dropped: it did not keep up", extra={"transport": self.transport})
        raw = self.raw
        if raw is not None:
            threading.Timer(5.0, _shutdown, (raw,)).start()  # the close frame first; then the socket


def _shutdown(raw: socket.socket) -> None:
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class EventSource:
    """Copies every event to the queue of each subscription; started with the first one."""

    key = ""

    def __init__(self):
        self.ready = threading.Event()
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self, transport: str, wait_seconds: float = 5.0) -> Subscription:
        sub = Subscription(transport)
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="beacon-live-events", daemon=True)
                self._thread.start()
        self.ready.wait(wait_seconds)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def deliver(self, event: dict) -> None:
        with self._lock:
            targets = list(self._subs)
        for sub in targets:
            try:
                sub.events.put_nowait(event)
            except queue.Full:
                self.unsubscribe(sub)
                sub.drop()

    def _run(self) -> None:
        raise NotImplementedError


class RedisFanout(EventSource):
    """One Redis subscription to ``beacon:events`` per process; reconnects with a backoff."""

    def __init__(self, redis_url: str):
        super().__init__()
        self.key = self.redis_url = redis_url

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
                        self.ready.set()
                        backoff = 0.5
                    elif message["type"] == "message":
                        try:
                            event = json.loads(message["data"])
                        except ValueError:
                            event = None
                        if isinstance(event, dict):
                            self.deliver(event)
                        else:
                            log.warning("live events: a message that is not a JSON object ignored")
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("live events: Redis subscription lost, retrying", extra={"error": str(exc)})
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass


class TableTail(EventSource):
    """The embedded default (no Redis): one reader per process tailing the ``events`` table by id
    (SQLite has one writer, so ids are commit order)."""

    def __init__(self, db):  # noqa: ANN001  (Database)
        super().__init__()
        self.db = db
        self.key = f"table:{db.url}"

    def _run(self) -> None:
        last = None
        while True:
            with self._lock:
                if not self._subs:  # nobody follows: stop (the next subscription starts a new tail)
                    self.ready.clear()
                    self._thread = None
                    return
            try:
                with self.db.session() as session:
                    if last is None:
                        last = last_event_id(session)
                        self.ready.set()
                        rows = []
                    else:
                        rows = events_after_id(session, last)
                for event in rows:
                    last = event["id"]
                    self.deliver(event)
            except Exception as exc:  # a database hiccup: try again
                log.warning("live events: table tail failed, retrying", extra={"error": str(exc)})
            time.sleep(TAIL_SECONDS)


def event_source() -> EventSource:
    svc = services()
    key = svc.settings.redis_url or f"table:{svc.db.url}"
    found = current_app.extensions.get(EXTENSION)
    if found is None or found.key != key:
        found = current_app.extensions[EXTENSION] = (
            RedisFanout(svc.settings.redis_url) if svc.settings.redis_url else TableTail(svc.db))
    return found


# --------------------------------------------------------------------------- one follower

def follow(sub: Subscription, job_id: str | None, since: int | None, poll: float = POLL_SECONDS
           ) -> Iterator[dict | None]:
    """The events to send, in order per job, without gap or duplicate; ``None`` when idle for ``poll``.

    ``sub`` must be subscribed before this is called (so the replay and the live stream overlap)."""
    db = services().db
    last: dict[str, int] = {}

    def stored(job: str, after: int) -> list[dict]:
        with db.session() as session:
            return events_since(session, job, after, PAGE_LIMIT)

    if job_id is not None and since is not None:
        last[job_id] = since
        while True:
            page = stored(job_id, last[job_id])
            for event in page:
                last[job_id] = event["seq"]
                yield event
            if len(page) < PAGE_LIMIT:
                break
    checked = time.monotonic()
    while not sub.dropped.is_set():
        event = sub.get(poll)
        if event is None:
            if job_id is not None and job_id in last and time.monotonic() - checked >= CHECK_TABLE_SECONDS:
                checked = time.monotonic()
                for missed in stored(job_id, last[job_id]):  # a publish lost while Redis was away
                    last[job_id] = missed["seq"]
                    yield missed
            yield None
            continue
        owner = event.get("job_id") or (event.get("data") or {}).get("job_id")
        if job_id is not None and owner != job_id:
            continue
        seq = event.get("seq")
        if seq is None or owner is None:  # an event from before events were numbered
            yield event
            continue
        previous = last.get(owner)
        if previous is not None and seq <= previous:
            continue  # replayed already
        if previous is not None and seq > previous + 1:
            for missed in stored(owner, previous):  # fill the gap from the table, this event included
                if missed["seq"] > seq:
                    break
                last[owner] = missed["seq"]
                yield missed
            if last[owner] >= seq:
                continue
        if len(last) > 10000:
            last.clear()
        last[owner] = seq
        yield event


def _since(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise ValidationError("since must be a non-negative integer (an event's seq)", "since")
    return int(value)


def origin_allowed(origin: str | None) -> bool:
    """No Origin (not a browser): allowed. Else the API's own origin, or one CORS allows."""
    if not origin:
        return True
    own = request.host_url.rstrip("/")
    if origin.rstrip("/").lower() == own.lower():
        return True
    patterns = compiled_origins(services().settings.cors_allowed_origins or ())
    return any(p.match(origin) for p in patterns)


@bp.before_request
def _check_ws() -> None:
    """Before the handshake: a browser Origin not allowed gets 403, a bad ``since`` 400; then the
    socket's subscription, taken before the handshake completes, so that every event published
    once the client sees its socket open reaches it (the socket's handler takes it over)."""
    if request.path != "/ws":
        return
    if not origin_allowed(request.headers.get("Origin")):
        raise ApiError(403, "forbidden", "this Origin may not open /ws")
    _since(request.args.get("since"))
    g.live_sub = event_source().subscribe("ws")


@bp.teardown_request
def _release_ws(_exc: BaseException | None = None) -> None:
    """A subscription whose socket never opened (the handshake failed) is let go here."""
    sub = g.pop("live_sub", None)
    if sub is not None:
        event_source().unsubscribe(sub)


@sock.route("/ws", bp=bp)
def live(ws) -> None:  # noqa: ANN001
    job_id = request.args.get("job_id") or None
    since = _since(request.args.get("since")) if job_id else None
    go_names = request.args.get("compat", "go") != "none"
    raw = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if request.environ.get("gunicorn.socket") is not None:
        request.environ["gunicorn.socket"].settimeout(None)  # the ping keeps the socket honest
    source = event_source()
    sub = g.pop("live_sub")  # subscribed before the handshake (_check_ws)
    sub.raw = raw
    try:
        for event in follow(sub, job_id, since):
            if not ws.connected:
                break
            if event is None:
                continue
            ws.send(json.dumps(event))
            if go_names and "seq" in event:
                for extra in compat_events(event):
                    ws.send(json.dumps(extra))
        if sub.dropped.is_set() and ws.connected:
            ws.close(reason=CLOSE_TOO_SLOW, message="too slow: events were arriving faster than read")
    except (ConnectionError, OSError):
        pass
    finally:
        source.unsubscribe(sub)


@bp.get("/api/v1/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    svc = services()
    since = _since(request.args.get("since"))
    if since is None and request.headers.get("Last-Event-ID", "").isdigit():
        since = int(request.headers["Last-Event-ID"])
    with svc.db.session() as session:
        status = get_job(session, job_id).status
    if "text/event-stream" not in request.headers.get("Accept", ""):
        limit = request.args.get("limit", str(PAGE_LIMIT))
        if not limit.isdigit() or not 1 <= int(limit) <= PAGE_LIMIT:
            raise ValidationError(f"limit must be an integer from 1 to {PAGE_LIMIT}", "limit")
        with svc.db.session() as session:
            page = events_since(session, job_id, since or 0, int(limit))
        return current_app.json.response({"events": page, "next_since": page[-1]["seq"] if page else (since or 0),
                                          "status": status})
    source = event_source()
    sub = source.subscribe("sse")
    sub.raw = request.environ.get("gunicorn.socket")

    def stream() -> Iterator[str]:
        try:
            yield "retry: 2000\n\n"
            for event in follow(sub, job_id, since or 0, poll=SSE_KEEPALIVE_SECONDS):
                if event is None:
                    yield ": keepalive\n\n"
                    continue
                yield f"id: {event.get('seq', '')}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
        finally:
            source.unsubscribe(sub)

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


