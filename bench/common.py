"""Shared pieces of the benchmarks: a scratch Postgres database, Redis databases, processes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import redis
import requests

from beacon.crypto.signing import KeyPair
from tests.factories import body, make_spec  # noqa: F401  (shared with the tests)
from tests.support import scratch_database, spare_port, wait_for  # noqa: F401  (shared with the tests)

_REDIS: dict[str, str] = {}


def redis_base() -> str:
    """BENCH_REDIS_URL, or else a private ``redis-server`` started for this bench run (stopped at
    exit): a shared Redis lets another run's flush or worker take this run's messages."""
    if "url" not in _REDIS:
        url = os.environ.get("BENCH_REDIS_URL")
        if not url:
            import atexit

            from tests.faults.services import throwaway_redis

            server = throwaway_redis()
            url = server.__enter__().url.rsplit("/", 1)[0]  # redis://127.0.0.1:<port>
            atexit.register(server.__exit__, None, None, None)
        _REDIS["url"] = url
    return _REDIS["url"]


def redis_db(number: int) -> str:
    url = f"{redis_base()}/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


def beacon_env(database_url: str, work: Path, trusted: Path, **extra: str) -> dict[str, str]:
    """The settings every bench process of Beacon runs with (fresh Redis databases 15 and 14; the API
    rate limit off, or it would be what the bench measures). Live events are on (REDIS_URL), as deployed."""
    return {"DATABASE_URL": database_url, "CELERY_BROKER_URL": redis_db(15), "RATE_LIMIT_REDIS_URL": redis_db(14),
            "TRUSTED_KEYS_FILE": str(trusted), "BEACON_DATA_DIR": str(work), "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DEFAULT": "off", "REDIS_URL": f"{redis_base()}/14", **extra}


def trusted_key_file(work: Path, key: KeyPair) -> Path:
    """A trusted keys file naming the bench's submitter key."""
    path = work / "trusted.json"
    path.write_text(json.dumps([{"kid": "bench", "public_key": key.public_key_b64, "status": "active"}]))
    return path


def start(argv: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def answers_live(base: str) -> bool:
    """Whether the server at ``base`` answers ``GET /health/live`` with a success."""
    try:
        return requests.get(f"{base}/health/live", timeout=1).ok
    except requests.RequestException:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(latencies_ms: list[float]) -> str:
    return (f"p50 {percentile(latencies_ms, 0.5):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms, "
            f"mean {statistics.fmean(latencies_ms):.1f} ms")


PYTHON = sys.executable
