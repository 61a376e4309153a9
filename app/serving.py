"""How the API is served: gevent workers that slow or idle clients cannot exhaust.

``beacon api`` runs gunicorn with :class:`BeaconWorker`, gunicorn's gevent worker with these
additions (every number is a setting, see the README):

* **one greenlet per connection**: an idle ``/ws`` or a slow client costs a greenlet and a socket,
  not a thread; at most ``API_WORKER_CONNECTIONS`` connections per process are served at once
  (gunicorn's ``worker_connections``), the rest wait in the listen backlog;
* **request head deadline** (slow-loris): a client has ``API_HEADER_TIMEOUT_SECONDS`` in total to
  send a request line and headers, after connecting or after the previous response (the same
  deadline bounds an idle keep-alive connection); then the connection is closed without an answer;
* **request body deadline**: the body must arrive within ``API_BODY_TIMEOUT_SECONDS`` of the head
  (408 ``request_timeout`` otherwise), and every single socket read or write must make progress
  within that time too (a client that stops reading its answer is dropped);
* **connections per client address**: a direct client (one whose address is not a trusted proxy)
  may hold ``API_MAX_CONNECTIONS_PER_CLIENT`` open connections per process; the next one is
  answered 429 ``rate_limit_exceeded`` (``details.limit`` = ``connections``) and closed. Behind a
  trusted proxy every connection comes from the proxy, so there the same number caps the requests
  in flight (open WebSockets included) per :func:`app.client.client_address` in the app
  (:func:`init_app`). Requests on the metrics listener are never counted.

gevent must patch the standard library before anything else is imported: ``beacon api`` does it
first thing (``beacon.cli``), and :func:`check_cooperative_driver` refuses to serve when psycopg
picked its C wait function anyway (it does so when imported before the patching, and that function
would block every request of the process while one waits for Postgres).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any, Callable, Iterable

from flask import Flask, g, request

from app.client import ProxyPolicy, client_address
from app.errors import RequestBodyTimeout, envelope
from beacon.errors import RateLimited
from beacon.settings import Settings

#: Paths answered by the process itself, before the app: liveness must not depend on request handling.
LIVENESS_PATHS = frozenset({"/health/live", "/api/v1/health/live"})
#: What the metrics listener serves (and the public listener refuses). Add an alias here to move it too.
METRICS_PATHS = frozenset({"/metrics", "/api/v1/metrics"})
METRICS_LISTENER = "beacon.metrics_listener"  # environ flag: the request came in on METRICS_PORT
EXEMPT_ENDPOINTS = frozenset({"health.live", "health.ready", "health.full"})


class AddressSlots:
    """Counts what each address holds open; refuses beyond ``limit`` (thread- and greenlet-safe)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, address: str) -> bool:
        with self._lock:
            if self._held[address] >= self.limit:
                return False
            self._held[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]

    def held(self, address: str) -> int:
        with self._lock:
            return self._held.get(address, 0)


def _too_many_body() -> bytes:
    return json.dumps({"error": "too many connections from this client address; close some and retry",
                       "error_code": "rate_limit_exceeded", "details": {"limit": "connections"}}).encode()


def refusal_bytes() -> bytes:
    """The whole 429 a connection over its address's cap gets before it is closed."""
    payload = _too_many_body()
    head = ("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Connection: close\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


# --------------------------------------------------------------------------- WSGI layers


def _json(start_response: Callable, status: str, payload: dict[str, Any],
          extra: list[tuple[str, str]] = ()) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store"), *extra])
    return [data]


def answer_liveness(wsgi_app: Callable, production: bool = False) -> Callable:
    """``/health/live`` answered before the app (no hooks, no database, no cap, no rate limit), with the
    headers every answer carries (security headers, ``X-Request-ID``)."""
    from app.browser import HSTS, SECURITY_HEADERS
    from app.ops import REQUEST_ID_HEADER, request_id

    static = list(SECURITY_HEADERS.items()) + ([("Strict-Transport-Security", HSTS)] if production else [])

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in LIVENESS_PATHS and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            extra = [*static, (REQUEST_ID_HEADER, request_id(environ.get("HTTP_X_REQUEST_ID")))]
            return _json(start_response, "200 OK", {"status": "ok"}, extra)
        return wsgi_app(environ, start_response)

    return app


def _local_port(environ: dict) -> int | None:
    sock = environ.get("gunicorn.socket")
    try:
        return sock.getsockname()[1] if sock is not None else None
    except OSError:
        return None


def split_listeners(wsgi_app: Callable, metrics_port: int) -> Callable:
    """The metrics listener serves only :data:`METRICS_PATHS` (and liveness); the public one never serves them."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        on_metrics = bool(metrics_port) and _local_port(environ) == metrics_port
        if on_metrics:
            environ[METRICS_LISTENER] = True
            if path not in METRICS_PATHS and path not in LIVENESS_PATHS:
                return _json(start_response, "404 NOT FOUND", {
                    "error": "the metrics listener serves only /metrics", "error_code": "not_found"})
        elif path in METRICS_PATHS:
            return _json(start_response, "404 NOT FOUND", {
                "error": "metrics are served on the metrics port (METRICS_PORT), not here", "error_code": "not_found"})
        return wsgi_app(environ, start_response)

    return app


# --------------------------------------------------------------------------- the per-address cap in the app

EXTENSION = "beacon.address_slots"


def init_app(flask_app: Flask, settings: Settings) -> None:
    """Cap the requests in flight (open WebSockets included) per client address, per process.

    For a direct client the worker's connection cap (the same number) already binds first (a
    connection carries at most one request at a time); this one matters behind a trusted proxy,
    where every connection is the proxy's and only :func:`client_address` tells clients apart.
    """
    flask_app.extensions[EXTENSION] = AddressSlots(settings.api_max_connections_per_client)
    flask_app.wsgi_app = answer_liveness(flask_app.wsgi_app, settings.production)
    flask_app.before_request(_take_slot)
    flask_app.teardown_request(_give_slot_back)


def _take_slot():
    if request.environ.get(METRICS_LISTENER) or request.endpoint in EXEMPT_ENDPOINTS:
        return None
    address = client_address()
    request.environ["beacon.client_address"] = address  # for the access log
    if not _slots().acquire(address):
        response, status = envelope(RateLimited(
            "rate_limit_exceeded", "too many requests in flight from this client address; retry when some finished",
            {"limit": "connections"}))
        response.headers["Retry-After"] = "1"
        return response, status
    g._slot_address = address
    return None


def _slots() -> AddressSlots:
    from flask import current_app

    return current_app.extensions[EXTENSION]


def _give_slot_back(_error: BaseException | None) -> None:
    address = g.pop("_slot_address", None)
    if address is not None:
        _slots().release(address)


# --------------------------------------------------------------------------- the request body deadline


class DeadlineBody:
    """``wsgi.input`` with a total deadline: reads raise :class:`RequestBodyTimeout` once it passed."""

    def __init__(self, body: Any, seconds: float):
        self._body = body
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def _bounded(self, method: Callable, *args: Any) -> Any:
        import gevent

        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise RequestBodyTimeout(self._seconds)
        with gevent.Timeout(remaining, RequestBodyTimeout(self._seconds)):
            return method(*args)

    def read(self, size: int | None = None) -> bytes:
        return self._bounded(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._bounded(self._body.readline, size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._bounded(self._body.readlines, hint)

    def __iter__(self) -> "DeadlineBody":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# --------------------------------------------------------------------------- the worker


def check_cooperative_driver() -> None:
    """Refuse to serve when psycopg would block the whole process on each database wait."""
    from psycopg import waiting

    if getattr(waiting, "wait_c", None) is not None and waiting.wait is waiting.wait_c:
        raise RuntimeError(
            "psycopg was imported before gevent patched the standard library, so it waits for Postgres "
            "in C and blocks every request of the process; patch first (beacon api does)"
        )


def _worker_class():
    from gunicorn.workers.ggevent import GeventWorker

    class Worker(GeventWorker):
        """gunicorn's gevent worker with the head and body deadlines and the per-address connection cap."""

        def init_process(self) -> None:
            from beacon.settings import get_settings

            settings = get_settings()
            self.header_timeout = settings.api_header_timeout_seconds
            self.body_timeout = settings.api_body_timeout_seconds
            self.slots = AddressSlots(settings.api_max_connections_per_client)
            self.proxies = ProxyPolicy.from_settings(settings)
            self.metrics_port = settings.metrics_port
            super().init_process()

        def load_wsgi(self) -> None:
            super().load_wsgi()
            check_cooperative_driver()

        def timeout_ctx(self):  # noqa: ANN201  (the head of each request, first or keep-alive)
            import gevent

            return gevent.Timeout(self.header_timeout, False)

        def handle(self, listener, client, addr) -> None:  # noqa: ANN001
            from gunicorn.workers.base_async import AsyncWorker

            peer = addr[0] if isinstance(addr, tuple) and addr else None
            counted = None
            if peer and not self._is_metrics(listener) and not self.proxies.trusts(peer):
                if not self.slots.acquire(peer):
                    self._refuse(client)
                    return
                counted = peer
            try:
                client.settimeout(self.body_timeout)  # every read and write must progress (the /ws view lifts it)
                AsyncWorker.handle(self, listener, client, addr)
            finally:
                if counted is not None:
                    self.slots.release(counted)

        def handle_request(self, listener_name, req, sock, addr):  # noqa: ANN001,ANN201
            if req.body is not None:
                req.body = DeadlineBody(req.body, self.body_timeout)
            return super().handle_request(listener_name, req, sock, addr)

        def _is_metrics(self, listener) -> bool:  # noqa: ANN001
            try:
                return bool(self.metrics_port) and listener.getsockname()[1] == self.metrics_port
            except OSError:
                return False

        def _refuse(self, client) -> None:  # noqa: ANN001
            try:
                client.settimeout(1.0)
                client.sendall(refusal_bytes())
                client.shutdown(socket.SHUT_WR)
                client.recv(65536)  # let the client's request in so closing does not reset the answer away
            except OSError:
                pass
            finally:
                client.close()

    return Worker


def __getattr__(name: str):  # gunicorn names the worker class "app.serving.BeaconWorker"
    if name == "BeaconWorker":
        worker = _worker_class()
        globals()["BeaconWorker"] = worker
        return worker
    raise AttributeError(name)
