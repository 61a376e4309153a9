"""The job tasks: thin wrappers that hand each message to the engine.

A delivery that cannot reach the database is never acknowledged and forgotten: it is retried
through the broker (``self.retry``) with a jittered exponential backoff (``DB_RETRY_BASE_SECONDS``
up to ``DB_RETRY_MAX_SECONDS``, without limit), carrying what it had already done
(:class:`beacon.execution.engine.DatabaseUnavailable`'s ``resume``), so an answer already
received is recorded once the database is back, and a job's finalisation is not lost.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from celery.worker import state as worker_state

from beacon.db import get_database
from beacon.execution import engine, lanes, regions
from beacon.execution.providers.inflight import CALLS, SLOTS
from beacon.messaging.celery_app import EXECUTE_UNIT, RUN_JOB
from beacon.messaging.dispatch import dispatch_lanes, dispatch_unit
from beacon.observability import metrics
from beacon.observability.units import job_context, observe_unit
from beacon.settings import get_settings

log = logging.getLogger(__name__)


def _retry_later(task, exc: BaseException, resume: dict | None, **ids: object):  # noqa: ANN001, ANN202
    """Send the message again after a backoff (the broker holds it; nothing is lost meanwhile)."""
    delay = engine.db_retry_delay(get_settings(), task.request.retries)
    log.warning("database unavailable: delivery retried", extra={
        **ids, "retry_in": round(delay, 2), "retries": task.request.retries, "resume": _stage(resume),
        "error": str(exc)[:300]})
    first, *rest = ids
    kwargs = {name: ids[name] for name in rest if ids[name] is not None}
    if resume is not None:
        kwargs["resume"] = resume
    return task.retry(args=[ids[first]], kwargs=kwargs, countdown=delay, max_retries=None)


def _stage(resume: dict | None) -> str:
    """What the retried delivery takes up: ``start`` (nothing done), ``claim``, ``record``, ``finalize``."""
    if not resume:
        return "start"
    return "record" if "record" in resume else "finalize" if "finalize" in resume else "claim"


@shared_task(name=RUN_JOB, ignore_result=True, bind=True, max_retries=None)
def run_job(self, job_id: str) -> int:
    with job_context(job_id):
        try:
            return engine.start_job(get_database(), get_settings(), job_id, dispatch_lanes)
        except Exception as exc:
            if not engine.is_db_unavailable(exc):
                raise
            raise _retry_later(self, exc, None, job_id=job_id) from exc


@shared_task(name=EXECUTE_UNIT, ignore_result=True, bind=True, max_retries=None)
def execute_unit(self, execution_id: int, resume: dict | None = None, region: str | None = None,
                 lane: str | None = None) -> str:
    """One unit, or a lane (``lane``: the unit's job) that goes on with the job's next units of ``region``."""
    settings, db = get_settings(), get_database()
    registry = regions.provider_registry(settings)
    dispatch = dispatch_unit if lane is None else partial(dispatch_unit, lane=lane)  # a re-dispatch keeps the lane
    current = execution_id

    def step(unit_id: int, around_call: engine.AroundCall | None, unit_resume: dict | None) -> engine.Outcome:
        nonlocal current
        current = unit_id
        with observe_unit(db, registry, unit_id) as unit:
            outcome = engine.step_unit(db, settings, unit.registry, unit_id, dispatch, observer=unit, aborts=CALLS,
                                       resume=unit_resume, worker=self.request.hostname, slots=SLOTS, region=region,
                                       around_call=around_call)
        if outcome.status == "waiting":
            metrics.units_put_back.labels(outcome.region).inc()
        return outcome

    try:
        if lane is None or region is None:
            return step(execution_id, None, resume).status
        return lanes.run_lane(db, lane, region, execution_id, step, dispatch, resume, stopping=_worker_stopping).status
    except engine.DatabaseUnavailable as exc:
        raise _retry_later(self, exc, exc.resume, execution_id=current, region=region, lane=lane) from exc
    except Exception as exc:
        if not engine.is_db_unavailable(exc):
            raise
        raise _retry_later(self, exc, resume if current == execution_id else None, execution_id=current,
                           region=region, lane=lane) from exc


def _worker_stopping() -> bool:
    """Celery's own flags: a warm or cold shutdown was asked for (a lane takes no further unit)."""
    return bool(worker_state.should_stop or worker_state.should_terminate)
