"""Throwaway Redis and PostgreSQL servers for fault-injection tests.

Each is a context manager yielding a handle that can stop, restart (and, for Redis, freeze)
its own private server, so a test can take a dependency away mid-run without touching the
machine's shared services. Everything lives on a spare loopback port and in a temporary
directory removed on exit.

* :func:`throwaway_redis` runs ``redis-server`` with persistence off; ``start()`` after
  ``stop()`` brings it back empty on the same port; ``freeze()`` / ``thaw()`` send
  SIGSTOP / SIGCONT, so the port still accepts connections but nothing answers.
* :func:`throwaway_postgres` runs a private cluster (``initdb`` + ``pg_ctl`` from
  ``/usr/lib/postgresql/<newest>/bin``), trust authentication, its Unix socket in its own
  directory. Both programs refuse to run as root, so as root they run as the ``postgres``
  user (``runuser -u postgres --``) in a directory owned by it. The shared cluster on port
  5432 is never addressed: every command names this cluster's own data directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["PostgresHandle", "RedisHandle", "postgres_bin_dir", "spare_port", "throwaway_postgres", "throwaway_redis"]

SHARED_POSTGRES_PORT = 5432


def spare_port() -> int:
    """A loopback port free right now (the kernel's pick; not 5432)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != SHARED_POSTGRES_PORT:
            return port


def _wait_for(check, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``check()`` until true: an outside process gives no event to wait on."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} not ready after {timeout:g}s\n{tail}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- Redis


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisHandle:
    def __init__(self, directory: Path, port: int):
        self.dir = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = directory / "redis.log"
        self._proc: subprocess.Popen | None = None
        self._frozen = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart, empty) on the same port; returns once it answers PING."""
        if self.running:
            raise RuntimeError("redis is already running")
        args = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--logfile", str(self.log), "--daemonize", "no"]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for(lambda: self._proc.poll() is None and _redis_answers(self.port), 10, "redis-server", self.log)
        except BaseException:
            self._kill()
            raise

    def stop(self) -> None:
        """Stop the server (its data is gone); the port refuses connections until :meth:`start`."""
        if self._proc is None:
            return
        if self._frozen:
            self.thaw()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._kill()
        self._proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, but nothing answers."""
        assert self.running, "redis is not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT: answers again, including what was sent while frozen."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)
        self._frozen = False

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # SIGKILL ends a stopped process too
            self._proc.wait(10)
        self._proc = None
        self._frozen = False


@contextmanager
def throwaway_redis() -> Iterator[RedisHandle]:
    """A private ``redis-server`` on a spare loopback port, no persistence; removed on exit."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    directory = Path(tempfile.mkdtemp(prefix="beacon-redis-"))
    handle = RedisHandle(directory, spare_port())
    try:
        handle.start()
        yield handle
    finally:
        try:
            handle.stop()
        finally:
            handle._kill()
            shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(path).parent / "pg_ctl").exists()
    ]
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return max(found, key=lambda p: float(p.parent.name) if p.parent.name.replace(".", "").isdigit() else 0.0)


def _as_postgres() -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PostgresHandle:
    def __init__(self, directory: Path, port: int, bin_dir: Path):
        if port == SHARED_POSTGRES_PORT:
            raise ValueError("refusing to use the shared cluster's port")
        self.dir = directory
        self.data = directory / "data"
        self.port = port
        self.bin = bin_dir
        self.log = directory / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"  # SQLAlchemy
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"  # libpq / psycopg
        self.running = False

    def _run(self, *args: str, timeout: float = 120) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}  # no PG* from outside
        result = subprocess.run(
            [*_as_postgres(), *args],
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}{tail}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.dir}'",  # not /var/run/postgresql
            # A throwaway cluster: durability is not wanted, speed is.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:  # stays owned by postgres
            conf.write("\n# throwaway_postgres\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self) -> None:
        """Start (or restart, with its data) on the same port; returns once it accepts connections."""
        if self.running:
            raise RuntimeError("postgres is already running")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate, as pg_ctl has them)."""
        if not self.running:
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False


@contextmanager
def throwaway_postgres() -> Iterator[PostgresHandle]:
    """A private PostgreSQL cluster on a spare loopback port, trust auth; removed on exit."""
    bin_dir = postgres_bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="beacon-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        handle = PostgresHandle(directory, spare_port(), bin_dir)
        handle.init()
        handle.start()
        try:
            yield handle
        finally:
            try:
                handle.stop("immediate")
            except RuntimeError:
                pid_file = handle.data / "postmaster.pid"  # last resort: only this cluster's postmaster
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
                    except (ValueError, OSError):
                        pass
    finally:
        shutil.rmtree(directory, ignore_errors=True)
