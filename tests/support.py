"""Helpers shared by the tests: signed specs, spare ports, loopback servers, own service instances."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import redis
from werkzeug.serving import make_server

from beacon.signing import KeyPair, sign_document
from beacon.timeutil import isoformat, utcnow

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

BASE_SPEC: dict[str, Any] = {
    "version": "1.0",
    "benchmark": {
        "name": "Who are you?",
        "container": {"image": "alpine", "tag": "3.18"},
        "input": {"type": "prompt", "data": {"prompt": "Who are you?"}, "hash": "sha256:abc"},
    },
    "constraints": {"regions": ["US", "EU", "APAC"], "min_regions": 1},
    "metadata": {},
}


def fixtures_dir() -> Path:
    for candidate in (FIXTURES, Path.cwd().parent / "shared" / "fixtures"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shared fixtures not found at {FIXTURES}")


def make_spec(key: KeyPair, **overrides: Any) -> dict[str, Any]:
    """A freshly signed JobSpec: unique id and nonce, timestamp now; overrides before signing."""
    doc = copy.deepcopy(BASE_SPEC)
    doc["id"] = f"job-{uuid.uuid4()}"
    doc["metadata"] = {"nonce": uuid.uuid4().hex, "timestamp": isoformat(utcnow().replace(microsecond=0))}
    for key_name, value in overrides.items():
        doc[key_name] = value
    return sign_document(doc, key.signing_key)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (synchronisation on state, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def serve_wsgi(wsgi_app) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 on a spare port; yields its base URL."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


class OwnRedis:
    """A redis-server this test starts on a spare port, so it can stop and restart it."""

    def __init__(self, workdir: Path):
        self.port = spare_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for this test (apt-get install redis-server)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, what=f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class WorkerProcess:
    """A real Celery worker (``python -m beacon worker``) in its own process, with its own env."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str, extra_args: tuple[str, ...] = ()):
        import os
        import sys

        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.name = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.argv = [sys.executable, "-m", "beacon", "worker", "-n", self.name, *extra_args]
        self.process: subprocess.Popen | None = None

    def start(self, celery_app) -> "WorkerProcess":  # noqa: ANN001
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.process.poll() is None, f"worker exited; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
            replies = celery_app.control.ping(destination=[self.name], timeout=0.5)
            return any(self.name in reply for reply in replies)

        wait_for(ready, timeout=60, interval=0.2, what=f"worker {self.name}")
        return self

    def kill(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
