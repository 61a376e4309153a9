"""The worker's own process hooks: provider calls cut off when their job ends or the worker stops.

* **Warm shutdown** (SIGTERM, Celery's ``worker_shutting_down``): the units in hand get
  ``WORKER_SHUTDOWN_GRACE_SECONDS`` to finish; then every provider call still in flight is
  aborted (and any later one fails before connecting), its unit handed back as ``pending``
  (its claim refunded) and re-dispatched, so the warm shutdown ends within the grace period
  plus the time to record those units. A cold shutdown (a second SIGTERM, SIGQUIT) aborts at
  once. This covers the default thread pool (and ``solo``); prefork children are not reached.
* **Jobs that end elsewhere** (cancelled, emergency-stopped, finalised by the deadline sweep):
  while calls are in flight, a watcher thread asks the database every ``JOB_END_POLL_SECONDS``
  which of their jobs are no longer running, and aborts those jobs' calls; their units are
  left as the ending made them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutting_down

from beacon.db import get_database
from beacon.execution import engine
from beacon.execution.providers.inflight import CALLS, SHUTDOWN
from beacon.settings import get_settings

log = logging.getLogger(__name__)


def abort_calls(reason: str = SHUTDOWN) -> None:
    jobs = CALLS.shutdown(reason)
    log.warning("provider calls aborted: worker shutting down", extra={"jobs": jobs})


def on_shutting_down(how: str | None = None, **_: Any) -> None:
    """Runs in the signal handler: start the grace timer (or abort now on a cold shutdown)."""
    grace = get_settings().worker_shutdown_grace_seconds
    if how != "Warm" or grace <= 0:
        abort_calls()
        return
    timer = threading.Timer(grace, abort_calls)
    timer.daemon = True
    timer.name = "shutdown-grace"
    timer.start()


def watch_ended_jobs(stop: threading.Event) -> None:
    settings = get_settings()
    while not stop.wait(settings.job_end_poll_seconds):
        job_ids = CALLS.job_ids()
        if not job_ids:
            continue
        try:
            ended = engine.ended_jobs(get_database(), job_ids)
        except Exception as exc:  # the database may be away; try again next round
            log.debug("job-end watch skipped", extra={"error": str(exc)[:200]})
            continue
        for job_id in ended:
            if CALLS.end_job(job_id):
                log.info("provider calls aborted: job ended", extra={"job_id": job_id})


_watcher_stop = threading.Event()


def on_worker_ready(**_: Any) -> None:
    threading.Thread(target=watch_ended_jobs, args=(_watcher_stop,), name="job-end-watch", daemon=True).start()


def install() -> None:
    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_ready.connect(on_worker_ready, weak=False)
