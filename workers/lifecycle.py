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
* **Region slots**: when the worker is ready, its per-region slot budget (``inflight.SLOTS``)
  is set for the regions whose queues it consumes: each region's ``max_in_flight``, or a fair
  share of the worker's concurrency; slots in use and units waiting are metrics.
* **Heartbeats**: every ``WORKER_HEARTBEAT_SECONDS`` the worker records that it is alive and
  which units' messages it holds (received — running, waiting for a thread, or waiting out a
  retry's countdown — and not yet done). The sweeper re-dispatches the units of a worker whose
  heartbeat stopped (three missed), and leaves alone the units a live worker holds. A worker
  that stops cleanly deletes its heartbeat.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import (
    task_received,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.worker import state as worker_state

from beacon.db import get_database
from beacon.execution import engine, regions
from beacon.execution.providers.inflight import CALLS, SHUTDOWN, SLOTS
from beacon.messaging.celery_app import EXECUTE_UNIT, queue_region
from beacon.observability import metrics
from beacon.settings import get_settings
from beacon.timeutil import utcnow

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


# ------------------------------------------------------------------ units held, heartbeats

_received = threading.Event()  # a unit message arrived: beat soon, so the heartbeat names it
_identity: dict[str, Any] = {}
_DEBOUNCE_S = 0.1  # gathers the messages that arrive meanwhile into one heartbeat (at most ~10 a second under load)


def held_units() -> list[int]:
    """The units whose messages this worker holds: received and not done (running, waiting for a
    thread, or waiting out a countdown), read from Celery's own worker state. That state also lets
    go of the messages Celery drops when its broker connection is lost (they can no longer be acked
    or run here), so a unit the broker lost with them is not named as held, and the sweeper
    re-dispatches it."""
    units = []
    for request in tuple(worker_state.requests.values()):  # one C-level copy: no lock needed
        if request.name == EXECUTE_UNIT:
            try:
                units.append(int(request.args[0]))
            except (IndexError, TypeError, ValueError):
                continue
    return units


def on_task_received(request: Any = None, **_: Any) -> None:
    if request is not None and getattr(request, "name", None) == EXECUTE_UNIT:
        _received.set()


def beat_heartbeats(worker: str, stop: threading.Event) -> None:
    """Every WORKER_HEARTBEAT_SECONDS, and shortly after new unit messages arrive (so a worker
    killed right after receiving them is known to have held them)."""
    settings, started = get_settings(), utcnow()
    while not stop.is_set():
        _received.clear()
        try:
            engine.record_heartbeat(get_database(), worker, held_units(), started)
        except Exception as exc:  # the database may be away; the next beat tries again
            log.debug("heartbeat skipped", extra={"error": str(exc)[:200]})
        if _received.wait(settings.worker_heartbeat_seconds):
            stop.wait(_DEBOUNCE_S)


_stop = threading.Event()


def _slot_metrics(region: str, in_use: int, waiting: int) -> None:
    metrics.region_slots_in_use.labels(region).set(in_use)
    metrics.units_waiting.labels(region).set(waiting)


def configure_slots(consumer: Any) -> dict[str, int]:
    """Size the region slots for the regions this worker consumes (every configured one when its
    queues cannot be told) and its pool's concurrency."""
    registry = regions.provider_registry(get_settings())
    limits = registry.max_in_flight()
    queues = getattr(getattr(consumer, "task_consumer", None), "queues", None) or []
    served = [r for r in (queue_region(q.name) for q in queues) if r in limits]
    controller = getattr(consumer, "controller", None)
    concurrency = getattr(controller, "concurrency", None) or consumer.app.conf.worker_concurrency or 16
    SLOTS.on_change = _slot_metrics
    sized = SLOTS.configure({r: limits[r] for r in (served or limits)}, int(concurrency))
    log.info("region slots", extra={"slots": sized, "concurrency": concurrency})
    return sized


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        configure_slots(sender)
    except Exception as exc:  # no budget is no worse than before: every region unlimited
        log.warning("region slots not configured", extra={"error": str(exc)[:300]})
    threading.Thread(target=watch_ended_jobs, args=(_stop,), name="job-end-watch", daemon=True).start()
    worker = getattr(sender, "hostname", None)
    if worker:
        _identity["worker"] = worker
        threading.Thread(target=beat_heartbeats, args=(worker, _stop), name="heartbeat", daemon=True).start()


def on_worker_shutdown(**_: Any) -> None:
    """The pool has stopped: nothing is held any more; say so, so no sweeper re-runs our units."""
    _stop.set()
    worker = _identity.get("worker")
    if worker:
        try:
            engine.forget_worker(get_database(), worker)
        except Exception as exc:  # the sweeper will find the heartbeat stale; re-dispatches are no-ops
            log.warning("heartbeat not removed", extra={"error": str(exc)[:200]})


def install() -> None:
    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_ready.connect(on_worker_ready, weak=False)
    worker_shutdown.connect(on_worker_shutdown, weak=False)
    task_received.connect(on_task_received, weak=False)
