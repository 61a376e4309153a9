"""Flower (``beacon flower``) and ``celery -A workers inspect`` against the Redis test broker and
a real worker, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from kombu import Connection, Queue

from beacon.messaging.celery_app import EXECUTE_UNIT, JOBS_QUEUE, PURGE, RELAY_OUTBOX, RUN_JOB, SWEEP, make_celery
from beacon.settings import Settings
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.support import WorkerProcess, run_together, spare_port, wait_for

PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_url) -> dict[str, str]:
    broker_url = f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"
    with Connection(broker_url) as conn:
        Queue(JOBS_QUEUE, channel=conn.default_channel).declare()
        Queue(JOBS_QUEUE, channel=conn.default_channel).purge()
    return {"BEACON_DATA_DIR": str(tmp_path_factory.mktemp("flower") / "data"), "DATABASE_URL": pg_url,
            "CELERY_BROKER_URL": broker_url, "METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
            "FLOWER_BASIC_AUTH": f"ops:{PASSWORD}", "FLOWER_PORT": str(spare_port())}


class FlowerProcess:
    """``beacon flower`` in its own process; ready once it answers HTTP."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env, self.log_path = {**os.environ, **env}, log_path
        self.url = f"http://127.0.0.1:{env['FLOWER_PORT']}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "beacon", "flower"], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                return requests.get(f"{self.url}/healthcheck", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=60, interval=0.1, what="Flower to listen")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def processes(env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flower-processes")
    worker = WorkerProcess(env, tmp / "worker.log", "flower")
    flower = FlowerProcess(env, tmp / "flower.log")
    try:
        run_together(lambda: worker.start(make_celery(Settings.from_env(env))), flower.start)
        yield worker, flower
    finally:
        run_together(flower.stop, worker.stop)


def test_flower_lists_the_worker_and_counts_its_tasks(processes):
    worker, flower = processes
    auth = ("ops", PASSWORD)

    def listed():
        answer = requests.get(f"{flower.url}/api/workers", params={"refresh": "1"}, auth=auth, timeout=5)
        return answer.json() if answer.ok and worker.name in answer.json() else None

    workers = wait_for(listed, timeout=30, interval=0.2, what="Flower to list the worker")
    assert "beacon.execute_unit" in workers[worker.name]["registered"]
    assert requests.get(f"{flower.url}/api/workers", timeout=5).status_code == 401
    assert requests.get(f"{flower.url}/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401

    make_celery(Settings.from_env(flower.env)).send_task(RELAY_OUTBOX, queue=JOBS_QUEUE)

    def counted() -> bool:
        text = requests.get(f"{flower.url}/metrics", timeout=5).text  # Flower serves it without auth
        return any(line.startswith("flower_events_total{") and f'task="{RELAY_OUTBOX}"' in line
                   and 'type="task-succeeded"' in line and not line.endswith(" 0.0")
                   for line in text.splitlines())

    wait_for(counted, timeout=30, interval=0.2, what="Flower to count the succeeded task")


def test_celery_inspect_registered_lists_the_project_tasks(env, processes):
    worker, _flower = processes
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "workers", "inspect", "registered",
                           "-d", worker.name, "--timeout", "5"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert worker.name in done.stdout
    for task in (RUN_JOB, EXECUTE_UNIT, RELAY_OUTBOX, SWEEP, PURGE):
        assert task in done.stdout


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_flower_listens_on_loopback_only_by_default(processes, env):
    assert listening_addresses(int(env["FLOWER_PORT"])) == {"0100007F"}  # 127.0.0.1, nothing else


@pytest.mark.parametrize("extra, refused", [
    ({}, True),
    ({"FLOWER_ALLOW_ANONYMOUS": "false"}, True),
    ({"FLOWER_ALLOW_ANONYMOUS": "true", "FLOWER_ADDRESS": "127.0.0.1"}, False),
])
def test_flower_refuses_to_start_without_credentials(env, tmp_path, extra, refused):
    plain = {k: v for k, v in {**os.environ, **env}.items() if k != "FLOWER_BASIC_AUTH"}
    flower = FlowerProcess({**plain, **extra, "FLOWER_PORT": str(spare_port())}, tmp_path / "flower.log")
    if refused:
        done = subprocess.run([sys.executable, "-m", "beacon", "flower"], env=flower.env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("Error: FLOWER_BASIC_AUTH: "), done.stderr
        return
    try:
        flower.start()
        assert requests.get(f"{flower.url}/", timeout=5).status_code == 200  # asked for: the dashboard is open
        assert "without authentication" in (tmp_path / "flower.log").read_text()
    finally:
        flower.stop()
