"""Celery signal hooks: Sentry in every worker process and in beat, the worker's /metrics, task logs.

``install(app, settings)`` is called once by the ``workers`` module that every Celery role
imports (worker, beat, inspect, flower); only the worker and beat signals initialise anything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    celeryd_after_setup,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_init,
)
from prometheus_client import start_http_server

from beacon.logs import bind, log_context
from beacon.observability import metrics
from beacon.observability.sentry import init_sentry
from beacon.settings import Settings
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

_task_tokens: dict[str, Any] = {}


def start_metrics_server(port: int) -> None:
    """Serve this worker's /metrics on ``port`` (0: off); a busy port is logged, not fatal."""
    if not port:
        return
    try:
        start_http_server(port, registry=metrics.process_registry())
    except OSError as exc:
        log.warning("worker metrics server not started", extra={"port": port, "error": str(exc)})
        return
    log.info("worker metrics served", extra={"port": port})


def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id:
        _task_tokens[task_id] = bind(task_id=task_id, task=getattr(task, "name", None))


def _unbind_task(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        log_context.reset(token)


def _count_failure(sender: Any = None, **_: Any) -> None:
    metrics.task_failures.labels(getattr(sender, "name", "unknown")).inc()


def _count_retry(sender: Any = None, **_: Any) -> None:
    metrics.task_retries.labels(getattr(sender, "name", "unknown")).inc()


def _log_worker_setup(sender: str | None = None, instance: Any = None, conf: Any = None, **_: Any) -> None:
    """Celery's start banner, as one JSON line (``beacon worker`` runs Celery with ``--quiet``)."""
    app = getattr(instance, "app", None)
    queues = sorted(app.amqp.queues.consume_from) if app is not None and app.amqp.queues.consume_from else []
    with_password_masked = app.connection_for_write().as_uri() if app is not None else None
    log.info("celery worker starting", extra={
        "hostname": sender, "queues": queues, "concurrency": getattr(instance, "concurrency", None),
        "pool": getattr(getattr(instance, "pool_cls", None), "__name__", None) or str(getattr(instance, "pool_cls", "")),
        "transport": with_password_masked,
        "tasks": sorted(name for name in (app.tasks if app is not None else {}) if not name.startswith("celery.")),
    })


def json_say(message: str, _stream: Any = None) -> None:
    """Celery's ``safe_say`` (the "worker: Warm shutdown" lines, written from signal handlers) as a JSON
    line. Like the original it writes with one ``os.write`` and takes no lock."""
    entry = {"level": "info", "message": " ".join(message.split()), "logger": "celery.apps.worker",
             "time": isoformat(utcnow())}
    try:
        os.write(sys.__stdout__.fileno(), (json.dumps(entry, separators=(",", ":")) + "\n").encode())
    except (OSError, ValueError, AttributeError):
        pass


def install(app: Celery, settings: Settings) -> None:
    def on_worker_init(**_: Any) -> None:
        init_sentry(settings, "worker", app.conf.beat_schedule)
        start_metrics_server(settings.metrics_port)

    def on_worker_process_init(**_: Any) -> None:  # prefork children; the threads pool has none
        init_sentry(settings, "worker", app.conf.beat_schedule)

    def on_beat_init(**_: Any) -> None:
        init_sentry(settings, "beat", app.conf.beat_schedule)

    import celery.apps.worker

    celery.apps.worker.safe_say = json_say  # its shutdown lines, JSON like every other line
    celeryd_after_setup.connect(_log_worker_setup, weak=False)
    worker_init.connect(on_worker_init, weak=False)
    worker_process_init.connect(on_worker_process_init, weak=False)
    beat_init.connect(on_beat_init, weak=False)
    task_prerun.connect(_bind_task)
    task_postrun.connect(_unbind_task)
    task_failure.connect(_count_failure)
    task_retry.connect(_count_retry)
