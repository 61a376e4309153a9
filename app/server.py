"""Serve the Flask app under gunicorn from code (``beacon api``).

gevent workers (:mod:`app.serving`): one greenlet per connection, deadlines for the request head
and body, caps per process and per client address. ``/metrics`` is served on a listener of its
own (``METRICS_PORT``), outside the public port. gunicorn's lines and the access log are JSON.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

# On SIGTERM gunicorn stops accepting and gives in-flight requests this long (the deployment's
# stop timeout, Fly's kill_timeout and compose's stop_grace_period, must be longer).
GRACEFUL_TIMEOUT_SECONDS = 30
WORKER_CLASS = "app.serving.BeaconWorker"

# gunicorn's own log lines (master and workers) as JSON on stdout, like every other role.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "beacon.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False}},
}

access_log = logging.getLogger("beacon.access")


class JsonAccessLogger(Logger):
    """gunicorn's logger whose access lines are JSON records of ``beacon.access`` (one per request)."""

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001
        if not access_log.isEnabledFor(logging.INFO):
            return
        headers = dict((name.lower(), value) for name, value in (getattr(resp, "headers", None) or []))
        status = str(getattr(resp, "status", "") or "").split(" ", 1)[0]
        access_log.info("request", extra={
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "client_address": environ.get("beacon.client_address") or environ.get("REMOTE_ADDR"),
            "request_id": headers.get("x-request-id"),
            "user_agent": (environ.get("HTTP_USER_AGENT") or "")[:256] or None,
        })


def _worker_exited(_server, worker) -> None:  # noqa: ANN001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict, metrics_port: int):
        self.options = options
        self.metrics_port = metrics_port
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # control_socket_disable exists from gunicorn 24 on
                self.cfg.set(key, value)

    def load(self):
        from app import create_app
        from app.serving import split_listeners

        return split_listeners(create_app(), self.metrics_port)


def gunicorn_options(host: str, port: int, workers: int, metrics_port: int = 0) -> dict:
    from beacon.settings import get_settings

    settings = get_settings()
    binds = [_address(host, port)] + ([_address(host, metrics_port)] if metrics_port else [])
    return {
        "bind": binds,
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "worker_connections": settings.api_worker_connections,
        # The deadline of a request's head, and of an idle keep-alive connection (app.serving).
        "keepalive": max(1, round(settings.api_header_timeout_seconds)),  # >0: the worker applies the deadline
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "timeout": 60,  # a worker whose event loop is blocked this long is restarted
        "accesslog": None,
        "logger_class": JsonAccessLogger,
        "logconfig_dict": LOG_CONFIG,
        "child_exit": _worker_exited,
        "control_socket_disable": True,  # no gunicornc socket in $HOME: nothing operates the API through it
    }


def serve_api(host: str, port: int, workers: int, metrics_port: int = 0) -> None:
    """Run gunicorn; the caller has called :func:`beacon.observability.multiproc.prepare_metrics_dir`
    before importing this module (importing ``app`` imports prometheus_client)."""
    _Gunicorn(gunicorn_options(host, port, workers, metrics_port), metrics_port).run()
