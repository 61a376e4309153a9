"""Serve the Flask app under gunicorn from code (``beacon api``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication

# On SIGTERM gunicorn stops accepting and gives in-flight requests this long (the deployment's
# stop timeout, Fly's kill_timeout and compose's stop_grace_period, must be longer).
GRACEFUL_TIMEOUT_SECONDS = 30


# gunicorn's own log lines (master and workers) as JSON on stdout, like every other role.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "beacon.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False}},
}


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR for the workers' metrics: the configured folder emptied, else a new one.

    Set before any worker imports prometheus_client, so every worker writes its samples there
    and ``/metrics`` in any worker adds up all of them.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="beacon-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return str(folder)


def _worker_exited(_server, worker) -> None:  # noqa: ANN001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from app import create_app

        return create_app()


def serve_api(host: str, port: int, workers: int, threads: int = 4) -> None:
    prepare_metrics_dir()
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "timeout": 60,
            "accesslog": None,
            "logconfig_dict": LOG_CONFIG,
            "child_exit": _worker_exited,
        }
    ).run()
