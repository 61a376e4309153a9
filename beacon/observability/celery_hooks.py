"""Celery signal hooks: Sentry in every worker process and in beat, the worker's /metrics, task logs.

``install(app, settings)`` is called once by the ``workers`` module that every Celery role
imports (worker, beat, inspect, flower); only the worker and beat signals initialise anything.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
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


def install(app: Celery, settings: Settings) -> None:
    def on_worker_init(**_: Any) -> None:
        init_sentry(settings, "worker", app.conf.beat_schedule)
        start_metrics_server(settings.metrics_port)

    def on_worker_process_init(**_: Any) -> None:  # prefork children; the threads pool has none
        init_sentry(settings, "worker", app.conf.beat_schedule)

    def on_beat_init(**_: Any) -> None:
        init_sentry(settings, "beat", app.conf.beat_schedule)

    worker_init.connect(on_worker_init, weak=False)
    worker_process_init.connect(on_worker_process_init, weak=False)
    beat_init.connect(on_beat_init, weak=False)
    task_prerun.connect(_bind_task)
    task_postrun.connect(_unbind_task)
    task_failure.connect(_count_failure)
    task_retry.connect(_count_retry)
