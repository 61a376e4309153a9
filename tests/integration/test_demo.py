"""The README's first command: ``beacon demo`` on the embedded default, no services configured."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "RATE_LIMIT_REDIS_URL", "PROVIDERS_FILE",
                "TRUSTED_KEYS_FILE", "BEACON_DATA_DIR", "PORT")


def test_demo_runs_a_whole_job_on_sqlite_and_the_file_broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    result = subprocess.run([sys.executable, "-m", "beacon", "demo", "--port", "0"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "embedded default" in result.stdout
    assert "completed" in result.stdout and "18/18 units succeeded" in result.stdout
    assert "cross-region analysis: overall risk high" in result.stdout  # APAC refuses tiananmen
    database = tmp_path / "beacon-data" / "beacon.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*), min(status), max(status) FROM executions").fetchone() == (
            18, "completed", "completed")
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("completed",)]
