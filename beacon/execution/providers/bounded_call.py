"""One abortable HTTP POST with a total deadline and a cap on the answer's size.

``requests`` (and urllib3 under it) applies its timeout to each socket operation, so a
server that trickles its answer a byte at a time can hold a call for as long as it likes,
and nothing limits how large an answer may be. :func:`post_json` bounds both, and lets
another thread abort the call (a cancelled job, a warm shutdown).

The deadline
============

``deadline`` is a :func:`time.monotonic` value covering the whole call: resolving and
connecting (TCP, TLS), sending the request, and reading the status line, the headers and
every byte of the body. The caller computes it as the earliest of its limits::

    deadline = min(
        now + provider_timeout_s,                  # the provider's / request's timeout
        now + (job_deadline_wall - time.time()),   # time left before the job's deadline
        now + (lease_expires_wall - time.time()) - lease_margin_s,  # the unit's lease,
    )                                              # less a margin to record the outcome
    # with now = time.monotonic(); wall-clock limits are converted to monotonic time as shown

so that no call outlives the job, and a worker still holds its lease when the call has
ended and the outcome is written.

The deadline is enforced twice:

* every blocking socket step (connect, TLS handshake, send, each read) runs with the socket
  timeout set to the time *remaining* until the deadline, never a shorter per-read timeout:
  a non-streaming model server sends nothing until its answer is complete, so a long
  silence is normal and only the total matters;
* one watchdog thread per process (a heap of deadlines and a condition variable) shuts the
  socket down (``shutdown(SHUT_RDWR)``) when the deadline passes, which ends the steps that
  do several socket operations in one go (reading a header block or a chunk-size line a
  byte at a time), and when the call's :class:`Abort` is triggered.

Name resolution (``getaddrinfo``) cannot be interrupted; the deadline is checked after it.

Errors
======

Every failure is a :class:`CallError` whose ``stage`` says where it happened:

========================================================  ===================  ============
what happened                                             exception            stage
========================================================  ===================  ============
deadline passed while connecting (TCP, TLS)               CallTimeout          connect
deadline passed while sending the request                 CallTimeout          request
deadline passed waiting for or reading the answer         CallTimeout          response
the call's Abort triggered                                CallAborted(reason)  where it was
refused, unreachable, unresolvable, TLS failure           CallNetworkError     connect
connection dropped while sending or before a status line  CallNetworkError     request
bad status line or headers                                CallNetworkError     response
body broken off (short Content-Length, bad chunking)      CallNetworkError     response
body longer than ``max_bytes``                            TooLarge(head)       response
========================================================  ===================  ============

Messages do not repeat the URL: the caller knows it and adds it. The stages, and the split
of network failures between ``request`` and ``response``, follow the provider error table in
``beacon.providers.http_clients``, so these map one-to-one onto ``ProviderError`` codes
``timeout`` / ``network``. A non-2xx status is not an error here: the :class:`Response` is
returned and the caller classifies it. Redirects are not followed and proxy environment
variables are not consulted (``requests`` honours them). An invalid URL or header is a
configuration bug and raises ``ValueError`` (or ``http.client.InvalidURL``).

Design notes
============

* ``http.client`` from the standard library rather than urllib3: here the module creates
  the socket itself and registers it with the watchdog *before* connecting, so connect,
  TLS handshake, send and every read can be cut short. urllib3 creates its sockets inside
  its own connection classes and pool, and after the response is handed back its socket
  is reached only through private, version-dependent attributes. ``http.client`` parses
  the status line and headers (with its limits: 100 headers, 64 KiB a line) and decodes
  Content-Length and chunked bodies; the body is read with ``read1`` (at most one socket
  read per call) so bytes are counted as they arrive.
* One connection per call, sent with ``Connection: close``; no pooling. A socket that the
  watchdog has shut down cannot go back to a pool anyway, the connection's whole life is
  covered by the call's deadline and abort, and a stale pooled connection (closed by the
  server while idle) cannot turn into a spurious network error. The cost, one TCP (and
  TLS) handshake per call, is small next to a model's answer time.
* ``Accept-Encoding: identity``, so ``max_bytes`` counts the bytes actually kept. A
  Content-Length over ``max_bytes`` fails the call at once (after reading at most
  :data:`HEAD_BYTES`, for at most a second, for diagnosis); otherwise bytes are counted as
  they arrive and reading stops at ``max_bytes + 1``.
* Thread-safe: calls share nothing but the watchdog, and an :class:`Abort` if the caller
  passes the same one to several calls. After ``fork`` the child gets a fresh watchdog.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import os
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

__all__ = [
    "Abort",
    "CallAborted",
    "CallError",
    "CallNetworkError",
    "CallTimeout",
    "HEAD_BYTES",
    "Response",
    "TooLarge",
    "post_json",
]

#: How much of an oversized body :class:`TooLarge` keeps for diagnosis.
HEAD_BYTES = 4096

_READ_SIZE = 64 * 1024
_HEAD_WAIT = 1.0  # at most this long spent reading the head of an answer already known to be too large


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer, whatever its status. ``headers`` is case-insensitive (``.get``)."""

    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CallError(Exception):
    """A failed call; ``stage`` is ``"connect"``, ``"request"`` or ``"response"``."""

    stage: str

    def __str__(self) -> str:
        return f"{type(self).__name__} at {self.stage}: {self.message}"


class CallTimeout(CallError):
    """The deadline passed; ``stage`` says what the call was doing."""

    def __init__(self, stage: str, message: str):
        super().__init__(stage, message)
        self.stage, self.message = stage, message


class CallAborted(CallError):
    """The call's :class:`Abort` was triggered; ``reason`` is what the trigger said."""

    def __init__(self, reason: str, stage: str):
        super().__init__(reason, stage)
        self.reason, self.stage = reason, stage
        self.message = f"aborted: {reason}"


class CallNetworkError(CallError):
    """Refused, reset, unreachable, TLS failure, or a malformed / broken-off answer."""

    def __init__(self, stage: str, message: str):
        super().__init__(stage, message)
        self.stage, self.message = stage, message


class TooLarge(CallError):
    """The body exceeded ``limit`` bytes; ``head`` is its first bytes (at most :data:`HEAD_BYTES`).

    ``received`` is how many body bytes were read before giving up; ``declared`` the
    Content-Length, when the server sent one.
    """

    def __init__(self, head: bytes, limit: int, received: int, declared: int | None = None):
        super().__init__(head, limit, received, declared)
        self.head, self.limit, self.received, self.declared = head, limit, received, declared
        self.stage = "response"
        told = f" (Content-Length {declared})" if declared is not None else ""
        self.message = f"body over {limit} bytes{told}; stopped after {received}"


# --------------------------------------------------------------------------- abort


class Abort:
    """Aborts every call registered with it, now and later; may be shared by many calls.

    ``trigger(reason)`` may be called from any thread (a cancel listener, a shutdown
    handler); calls in flight are cut off through the watchdog at once, calls started
    afterwards fail before connecting. The first reason wins. The locks are re-entrant, so
    triggering from a signal handler does not deadlock against the interrupted thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._reason: str | None = None
        self._calls: set[_Call] = set()

    @property
    def triggered(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def trigger(self, reason: str = "aborted") -> bool:
        """Abort; True if this call did it, False if it was already triggered."""
        with self._cond:
            if self._reason is not None:
                return False
            self._reason = str(reason)
            calls, self._calls = list(self._calls), set()
            self._cond.notify_all()
        if calls:
            _watchdog().abort(calls)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until triggered or ``timeout`` seconds pass (e.g. a backoff between retries); True if triggered."""
        with self._cond:
            return self._cond.wait_for(lambda: self._reason is not None, timeout)

    def _register(self, call: _Call) -> bool:
        with self._cond:
            if self._reason is not None:
                return False
            self._calls.add(call)
            return True

    def _unregister(self, call: _Call) -> None:
        with self._cond:
            self._calls.discard(call)

    def __repr__(self) -> str:
        return f"<Abort triggered={self._reason!r}>" if self.triggered else "<Abort>"


# --------------------------------------------------------------------------- one call's state

_DEADLINE = "deadline"


class _Call:
    """What the watchdog and an Abort need of a call: its socket, and why it was cut off."""

    __slots__ = ("deadline", "abort", "stage", "fired", "done", "in_heap", "_sock", "_lock")

    def __init__(self, deadline: float, abort: Abort | None):
        self.deadline = deadline
        self.abort = abort
        self.stage = "connect"
        self.fired: str | None = None  # _DEADLINE, or "abort"
        self.done = False
        self.in_heap = False
        self._sock: socket.socket | None = None
        self._lock = threading.RLock()

    def fire(self, why: str) -> None:
        """Cut the call off (watchdog thread). The first cause wins; a finished call is left alone."""
        with self._lock:
            if self.done or self.fired is not None:
                return
            self.fired = why
            sock = self._sock
            if sock is not None:
                try:
                    # socket.socket.shutdown, not SSLSocket.shutdown: that one also drops the
                    # SSL object under the feet of the thread reading from it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected yet (a connect in progress still wakes up) or already closed

    def attach(self, sock: socket.socket) -> None:
        """Make ``sock`` the one the watchdog shuts down; raises if the call was already cut off."""
        with self._lock:
            if self.fired is None:
                self._sock = sock
                return
        sock.close()
        self.raise_fired()

    def detach_and_close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def sock(self) -> socket.socket:
        assert self._sock is not None
        return self._sock

    def finish(self) -> str | None:
        """Mark done (the watchdog will not touch the socket again); return why it fired, if it did."""
        with self._lock:
            self.done = True
            return self.fired

    def remaining(self) -> float:
        """Seconds left; raises CallTimeout / CallAborted when there is nothing left to do."""
        if self.fired is not None:
            self.raise_fired()
        if self.abort is not None and self.abort.triggered:
            raise CallAborted(self.abort.reason or "aborted", self.stage)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CallTimeout(self.stage, f"deadline passed during {self.stage}")
        return left

    def raise_fired(self) -> None:
        if self.fired == _DEADLINE:
            raise CallTimeout(self.stage, f"deadline passed during {self.stage}")
        reason = (self.abort.reason if self.abort is not None else None) or "aborted"
        raise CallAborted(reason, self.stage)


# --------------------------------------------------------------------------- the watchdog


class _Watchdog:
    """One daemon thread: fires calls whose deadline has passed, and calls whose Abort was triggered."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()
        self._aborted: deque[_Call] = deque()
        self._stale = 0  # finished calls still in the heap
        self._thread: threading.Thread | None = None

    def watch(self, call: _Call) -> None:
        with self._cond:
            heapq.heappush(self._heap, (call.deadline, next(self._seq), call))
            call.in_heap = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bounded-call-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][2] is call:
                self._cond.notify()  # a new earliest deadline: re-arm the wait

    def forget(self, call: _Call) -> None:
        """``call`` has finished (``call.done`` is set); drop finished entries once they are most of the heap."""
        with self._cond:
            if not call.in_heap:
                return
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._stale = 0

    def abort(self, calls: list[_Call]) -> None:
        self._aborted.extend(calls)
        with self._cond:
            self._cond.notify()

    def _due(self) -> list[tuple[_Call, str]]:
        """Under the lock: the calls to fire now, or wait until there are some."""
        while True:
            due = []
            while self._aborted:
                due.append((self._aborted.popleft(), "abort"))
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, call = heapq.heappop(self._heap)
                call.in_heap = False
                if call.done:
                    self._stale -= 1
                else:
                    due.append((call, _DEADLINE))
            if due:
                return due
            self._cond.wait(self._heap[0][0] - now if self._heap else None)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._due()
            for call, why in due:
                try:
                    call.fire(why)
                except Exception:  # pragma: no cover - fire() only shuts a socket down
                    pass


_watchdog_lock = threading.Lock()
_the_watchdog: _Watchdog | None = None


def _watchdog() -> _Watchdog:
    global _the_watchdog
    dog = _the_watchdog
    if dog is None:
        with _watchdog_lock:
            if _the_watchdog is None:
                _the_watchdog = _Watchdog()
            dog = _the_watchdog
    return dog


def _after_fork_in_child() -> None:
    # The parent's watchdog thread does not exist in the child; its locks may be held.
    global _the_watchdog, _watchdog_lock
    _watchdog_lock = threading.Lock()
    _the_watchdog = None


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- the call


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is made by the call (registered, deadline-bounded)."""

    def __init__(self, host: str, port: int, call: _Call, ssl_context: ssl.SSLContext | None):
        super().__init__(host, port, timeout=None)
        self._call = call
        self._ssl_context = ssl_context
        if ssl_context is not None:
            self.default_port = http.client.HTTPS_PORT  # so Host: omits :443

    def connect(self) -> None:
        call = self._call
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            call.remaining()
            sock = socket.socket(family, kind, proto)
            call.attach(sock)
            try:
                sock.settimeout(call.remaining())
                sock.connect(address)
            except TimeoutError:
                raise
            except OSError as exc:
                if call.fired is not None:
                    raise
                call.detach_and_close()
                last = exc
                continue
            break
        else:
            raise last if last is not None else OSError(f"no address for {self.host}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl_context is not None:
            tls = self._ssl_context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            call.attach(tls)  # the TCP socket object is detached now; the watchdog must see this one
            tls.settimeout(call.remaining())
            tls.do_handshake()
            sock = tls
        self.sock = sock


_default_ssl_context: ssl.SSLContext | None = None


def _ssl_default() -> ssl.SSLContext:
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = ssl.create_default_context()
    return _default_ssl_context


def post_json(
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    deadline: float,
    max_bytes: int,
    abort: Abort | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``payload`` as JSON to ``url``; return the whole answer, whatever its status.

    ``deadline`` is a :func:`time.monotonic` value bounding the whole call; ``max_bytes``
    caps the body (headers are bounded by ``http.client``'s limits); ``abort``, when given,
    cuts the call off once triggered. Raises :class:`CallTimeout`, :class:`CallAborted`,
    :class:`CallNetworkError` or :class:`TooLarge`. ``ssl_context`` is for https (default:
    the system's trust store, hostname checked).
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(payload, separators=(",", ":")).encode()
    send_headers = {"Content-Type": "application/json", "Accept": "application/json", "Connection": "close"}
    send_headers.update(headers or {})
    context = (ssl_context or _ssl_default()) if parts.scheme == "https" else None

    call = _Call(deadline, abort)
    if abort is not None and not abort._register(call):
        raise CallAborted(abort.reason or "aborted", "connect")
    dog = _watchdog()
    conn: _Connection | None = None
    response: http.client.HTTPResponse | None = None
    try:
        dog.watch(call)
        conn = _Connection(parts.hostname, port, call, context)
        try:
            call.remaining()
            conn.connect()
            call.stage = "request"
            call.sock.settimeout(call.remaining())
            conn.request("POST", target, body=body, headers=send_headers)
            call.stage = "response"
            call.sock.settimeout(call.remaining())
            response = conn.getresponse()
            data = _read_body(call, response, max_bytes)
        except CallError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if call.fired is not None:
                call.raise_fired()
            if isinstance(exc, TimeoutError):
                raise CallTimeout(call.stage, f"deadline passed during {call.stage}") from exc
            stage = call.stage
            if stage == "response" and response is None and isinstance(exc, ConnectionError):
                stage = "request"  # dropped before any answer arrived, as the provider table has it
            raise CallNetworkError(stage, f"{type(exc).__name__}: {exc}") from exc
        if call.finish() is not None:
            # Cut off at the very end: a body read until EOF may be short, so do not trust it.
            call.raise_fired()
        return Response(response.status, response.reason, response.headers, data)
    finally:
        call.finish()
        if response is not None:
            response.close()
        if conn is not None:
            conn.close()
        call.detach_and_close()
        dog.forget(call)
        if abort is not None:
            abort._unregister(call)


def _read_body(call: _Call, response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    declared = response.length if not response.chunked else None
    if declared is not None and declared > max_bytes:
        # Refused on the header alone; the first bytes are read only for diagnosis, briefly.
        head = bytearray()
        try:
            while len(head) < HEAD_BYTES:
                call.sock.settimeout(min(call.remaining(), _HEAD_WAIT))
                piece = response.read1(HEAD_BYTES - len(head))
                if not piece:
                    break
                head += piece
        except (CallError, OSError, http.client.HTTPException):
            pass
        raise TooLarge(bytes(head), max_bytes, len(head), declared)
    data = bytearray()
    while True:
        if declared is not None and response.length == 0:
            break  # Content-Length satisfied
        call.sock.settimeout(call.remaining())
        piece = response.read1(min(_READ_SIZE, max_bytes + 1 - len(data)))
        if not piece:
            if call.fired is not None:
                call.raise_fired()  # EOF because the watchdog shut the socket down
            if declared is not None:
                raise CallNetworkError(
                    "response", f"body broken off: {declared - len(data)} of {declared} bytes missing"
                )
            break  # chunked: last chunk read; neither: the server closed the connection
        data += piece
        if len(data) > max_bytes:
            raise TooLarge(bytes(data[:HEAD_BYTES]), max_bytes, len(data), declared)
    return bytes(data)
