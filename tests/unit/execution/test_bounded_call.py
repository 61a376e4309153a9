"""bounded_call.post_json against real loopback HTTP servers (plain sockets, one thread per connection).

Elapsed-time assertions are loose bounds that prove a call did not wait for the slow
server (10 s, 60 s), never performance targets.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import threading
import time
from typing import Callable

import pytest

from beacon.execution.providers import bounded_call
from beacon.execution.providers.bounded_call import (
    HEAD_BYTES,
    Abort,
    CallAborted,
    CallNetworkError,
    CallTimeout,
    Response,
    TooLarge,
    post_json,
)

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
HANG = 60.0  # how long a "never answers" server would wait (it is released at teardown)


class Server:
    """127.0.0.1, port 0; ``handler(server, conn, request)`` runs per connection after the request is read."""

    def __init__(self, handler: Callable[["Server", socket.socket, dict], None], read_request: bool = True):
        self.handler = handler
        self.read_request = read_request
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions?x=1"
        self.stop = threading.Event()  # teardown: handlers waiting on it return
        self.requests: list[dict] = []
        self.arrived = threading.Condition()
        self.done = threading.Event()  # a handler finished writing everything
        self.sent = 0  # body bytes the handler managed to send
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = _read_request(conn) if self.read_request else {}
                with self.arrived:
                    self.requests.append(request)
                    self.arrived.notify_all()
                self.handler(self, conn, request)
            except OSError as exc:  # the client went away: expected in most fault cases
                self.errors.append(exc)

    def wait_requests(self, n: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout), self.requests

    def close(self) -> None:
        self.stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)


def _read_request(conn: socket.socket) -> dict:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            raise ConnectionError("client closed before the request was complete")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            raise ConnectionError("client closed before the body was complete")
        body += piece
    return {"line": lines[0], "headers": headers, "body": body}


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(handler, **kw) -> Server:
        server = Server(handler, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _soon(seconds: float = 1.0) -> float:
    return time.monotonic() + seconds


# --------------------------------------------------------------------------- answers


def test_json_answer_with_content_length(serve):
    answer = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()

    def handler(server, conn, request):
        conn.sendall(_head(Content_Type="application/json", Content_Length=str(len(answer))) + answer)

    server = serve(handler)
    response = post_json(
        server.url, {"model": "m", "prompt": "p"}, headers={"X-Beacon-Region": "eu"}, deadline=_soon(10), max_bytes=MiB
    )
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.headers.get("content-type") == "application/json"
    assert response.json() == {"choices": [{"message": {"content": "hi"}}]}
    request = server.requests[0]
    assert request["line"] == "POST /v1/chat/completions?x=1 HTTP/1.1"
    assert request["headers"]["x-beacon-region"] == "eu"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert json.loads(request["body"]) == {"model": "m", "prompt": "p"}


def test_chunked_answer(serve):
    pieces = [b'{"response": "', b"x" * 70000, b'", "region": "eu"}']

    def handler(server, conn, request):
        conn.sendall(_head(Transfer_Encoding="chunked"))
        for piece in pieces:
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")

    server = serve(handler)
    response = post_json(server.url, {}, deadline=_soon(10), max_bytes=MiB)
    assert response.status == 200
    assert response.body == b"".join(pieces)


def test_body_delimited_by_close(serve):
    def handler(server, conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")

    assert post_json(serve(handler).url, {}, deadline=_soon(10), max_bytes=MiB).body == b"until the end"


def test_500_is_a_response_not_an_error(serve):
    def handler(server, conn, request):
        conn.sendall(_head("500 Internal Server Error", Content_Length="5") + b"oops!")

    response = post_json(serve(handler).url, {}, deadline=_soon(10), max_bytes=MiB)
    assert (response.status, response.reason, response.body) == (500, "Internal Server Error", b"oops!")


# --------------------------------------------------------------------------- deadline


def test_dripping_body_times_out_at_the_deadline(serve):
    """One byte every 0.2 s of a 50-byte body (10 s): each read is quick, the total is not."""

    def handler(server, conn, request):
        conn.sendall(_head(Content_Length="50"))
        for _ in range(50):
            conn.sendall(b"x")
            if server.stop.wait(0.2):
                return

    server = serve(handler)
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        post_json(server.url, {}, deadline=started + 1.0, max_bytes=MiB)
    elapsed = time.monotonic() - started
    assert caught.value.stage == "response"
    assert 0.9 < elapsed < 3, elapsed


def test_dripping_headers_are_cut_off_by_the_watchdog(serve):
    """Header lines are read in one blocking step; only the watchdog's shutdown ends it at the deadline."""

    def handler(server, conn, request):
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100:
            conn.sendall(bytes([byte]))
            if server.stop.wait(0.1):
                return

    server = serve(handler)
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        post_json(server.url, {}, deadline=started + 1.0, max_bytes=MiB)
    assert caught.value.stage == "response"
    assert time.monotonic() - started < 3


def test_server_that_never_answers_times_out_at_the_deadline(serve):
    server = serve(lambda server, conn, request: server.stop.wait(HANG))
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        post_json(server.url, {}, deadline=started + 0.5, max_bytes=MiB)
    elapsed = time.monotonic() - started
    assert caught.value.stage == "response"
    assert 0.4 < elapsed < 3, elapsed


def test_server_that_never_reads_the_request_times_out_sending(serve):
    """A payload larger than the socket buffers, to a server that does not read it."""
    server = serve(lambda server, conn, request: server.stop.wait(HANG), read_request=False)
    payload = {"prompt": "x" * (16 * MiB)}
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        post_json(server.url, payload, deadline=started + 2.0, max_bytes=MiB)
    assert caught.value.stage == "request"
    assert time.monotonic() - started < 5


def test_deadline_already_passed_does_not_connect(serve):
    server = serve(lambda server, conn, request: None)
    with pytest.raises(CallTimeout) as caught:
        post_json(server.url, {}, deadline=time.monotonic() - 1, max_bytes=MiB)
    assert caught.value.stage == "connect"
    assert server.requests == []


# --------------------------------------------------------------------------- network errors


def _refused_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound, never listening: nothing accepts on it
    return port


def test_connection_refused_is_a_network_error_at_connect():
    with pytest.raises(CallNetworkError) as caught:
        post_json(f"http://127.0.0.1:{_refused_port()}/x", {}, deadline=_soon(5), max_bytes=MiB)
    assert caught.value.stage == "connect"


def test_closed_before_any_answer_is_a_network_error_at_request(serve):
    server = serve(lambda server, conn, request: None)  # reads the request, closes
    with pytest.raises(CallNetworkError) as caught:
        post_json(server.url, {}, deadline=_soon(5), max_bytes=MiB)
    assert caught.value.stage == "request"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"10\r\nabc", id="cut-inside-a-chunk"),
        pytest.param(b"3\r\nabc\r\nzz\r\n", id="bad-chunk-size"),
        pytest.param(b"3\r\nabc\r\n", id="no-last-chunk"),
    ],
)
def test_broken_chunked_body_is_a_network_error(serve, body):
    def handler(server, conn, request):
        conn.sendall(_head(Transfer_Encoding="chunked") + body)

    with pytest.raises(CallNetworkError) as caught:
        post_json(serve(handler).url, {}, deadline=_soon(5), max_bytes=MiB)
    assert caught.value.stage == "response"


def test_body_shorter_than_content_length_is_a_network_error(serve):
    def handler(server, conn, request):
        conn.sendall(_head(Content_Length="100") + b"only forty bytes".ljust(40))

    with pytest.raises(CallNetworkError) as caught:
        post_json(serve(handler).url, {}, deadline=_soon(5), max_bytes=MiB)
    assert caught.value.stage == "response"
    assert "60 of 100" in caught.value.message


# --------------------------------------------------------------------------- size cap


def _huge_handler(framing: str):
    total, piece = 50 * MiB, b"z" * (64 * 1024)

    def handler(server, conn, request):
        if framing == "content-length":
            conn.sendall(_head(Content_Length=str(total)))
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while server.sent < total:
            conn.sendall(piece)
            server.sent += len(piece)
        server.done.set()

    return handler


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
def test_huge_body_is_refused_without_reading_it(serve, framing):
    server = serve(_huge_handler(framing))
    with pytest.raises(TooLarge) as caught:
        post_json(server.url, {}, deadline=_soon(20), max_bytes=256 * 1024)
    # The call returned before the server could write its 50 MiB...
    assert not server.done.is_set()
    error = caught.value
    assert error.stage == "response"
    assert error.limit == 256 * 1024
    assert 0 < len(error.head) <= HEAD_BYTES and set(error.head) == {ord("z")}
    assert error.received <= 256 * 1024 + 1
    # ...and closing the connection stopped it (reset), far short of the whole body.
    server.close()
    assert not server.done.is_set()
    assert server.sent < 25 * MiB, server.sent
    if framing == "content-length":
        assert error.declared == 50 * MiB and error.received <= HEAD_BYTES


def test_declared_length_over_the_cap_fails_without_waiting_for_the_body(serve):
    def handler(server, conn, request):
        conn.sendall(_head(Content_Length=str(50 * MiB)))
        server.stop.wait(HANG)

    started = time.monotonic()
    with pytest.raises(TooLarge) as caught:
        post_json(serve(handler).url, {}, deadline=started + HANG, max_bytes=MiB)
    assert time.monotonic() - started < 5
    assert (caught.value.head, caught.value.declared) == (b"", 50 * MiB)


def test_body_of_exactly_max_bytes_is_accepted(serve):
    def handler(server, conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"a" * 1000)

    assert len(post_json(serve(handler).url, {}, deadline=_soon(5), max_bytes=1000).body) == 1000
    with pytest.raises(TooLarge):
        post_json(serve(handler).url, {}, deadline=_soon(5), max_bytes=999)


# --------------------------------------------------------------------------- abort


def _hanging(server, conn, request):
    server.stop.wait(HANG)


def test_abort_from_another_thread_ends_a_hanging_call(serve):
    server = serve(_hanging)
    abort = Abort()
    triggered_at: list[float] = []

    def cancel():
        server.wait_requests(1)
        triggered_at.append(time.monotonic())
        abort.trigger("job cancelled")

    canceller = threading.Thread(target=cancel)
    canceller.start()
    with pytest.raises(CallAborted) as caught:
        post_json(server.url, {}, deadline=_soon(HANG), max_bytes=MiB, abort=abort)
    ended = time.monotonic()
    canceller.join()
    assert caught.value.reason == "job cancelled"
    assert caught.value.stage == "response"
    assert ended - triggered_at[0] < 1.0
    assert abort.triggered and abort.reason == "job cancelled"


def test_one_abort_shared_by_five_calls_aborts_them_all(serve):
    server = serve(_hanging)
    abort = Abort()
    outcomes: list[BaseException | Response] = []
    lock = threading.Lock()

    def one_call():
        try:
            result: BaseException | Response = post_json(
                server.url, {}, deadline=_soon(HANG), max_bytes=MiB, abort=abort
            )
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one_call) for _ in range(5)]
    for thread in threads:
        thread.start()
    server.wait_requests(5)
    triggered = time.monotonic()
    assert abort.trigger("worker shutting down") is True
    assert abort.trigger("second reason loses") is False
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - triggered < 1.0
    assert len(outcomes) == 5
    assert all(isinstance(o, CallAborted) and o.reason == "worker shutting down" for o in outcomes), outcomes
    # Shared by every call in the process, not one per call.
    assert [t.name for t in threading.enumerate()].count("bounded-call-watchdog") == 1


def test_triggered_abort_refuses_new_calls_before_connecting(serve):
    server = serve(_hanging)
    abort = Abort()
    abort.trigger("cancelled")
    with pytest.raises(CallAborted) as caught:
        post_json(server.url, {}, deadline=_soon(5), max_bytes=MiB, abort=abort)
    assert caught.value.stage == "connect"
    assert server.requests == []


def test_abort_wait_returns_when_triggered():
    abort = Abort()
    assert abort.wait(0.01) is False
    threading.Timer(0.05, abort.trigger, args=("stop",)).start()
    assert abort.wait(10) is True


# --------------------------------------------------------------------------- housekeeping


def test_errors_pickle():
    for error in (
        CallTimeout("response", "deadline passed"),
        CallAborted("cancelled", "request"),
        CallNetworkError("connect", "refused"),
        TooLarge(b"head", 10, 11, 99),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.stage == error.stage and str(copy) == str(error)


def test_finished_calls_do_not_pile_up_in_the_watchdog(serve):
    def handler(server, conn, request):
        conn.sendall(_head(Content_Length="2") + b"ok")

    server = serve(handler)
    for _ in range(150):
        assert post_json(server.url, {}, deadline=_soon(HANG), max_bytes=10).body == b"ok"
    assert len(bounded_call._watchdog()._heap) <= 70


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_watchdog(serve):
    """Celery's prefork pool forks after imports: the child must not rely on the parent's thread."""
    server = serve(_hanging)
    with pytest.raises(CallTimeout):  # the parent's watchdog is running now
        post_json(server.url, {}, deadline=_soon(0.2), max_bytes=10)
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the deadline held
        code = 1
        try:
            started = time.monotonic()
            try:
                post_json(server.url, {}, deadline=started + 0.3, max_bytes=10)
            except CallTimeout:
                code = 0 if time.monotonic() - started < 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
