"""Publishing the job tasks by name: ``run_job`` on the jobs queue, ``execute_unit`` on its region's queue.

The engine, the sweeper, the API's fast path and the tests all publish through these functions;
an ``execute_unit`` message names its unit's region (``region``), so a worker can tell a unit of
a region it does not serve without asking the database, and a lane message its job (``lane``:
after its unit, the delivery goes on with the job's next pending units of that region, see
``beacon.execution.lanes``); ``app`` defaults to the current Celery app (the worker's
own inside a task).
"""

from __future__ import annotations

from celery import Celery, current_app

from beacon.messaging.celery_app import EXECUTE_UNIT, JOBS_QUEUE, RUN_JOB, region_queue


def _kwargs(region: str, lane: str | None) -> dict:
    return {"region": region} if lane is None else {"region": region, "lane": lane}


def dispatch_unit(execution_id: int, region: str, countdown: float = 0.0, *, app: Celery | None = None,
                  lane: str | None = None) -> None:
    (app or current_app).send_task(EXECUTE_UNIT, args=[execution_id], kwargs=_kwargs(region, lane),
                                   queue=region_queue(region), countdown=countdown or None)


def dispatch_lanes(job_id: str, units: list[tuple[int, str]], *, app: Celery | None = None) -> None:
    """One lane message (``execute_unit`` with ``lane=job_id``) per (execution id, region), published
    as one batch through one pooled producer: on Redis the pushes go out in one pipeline (kombu's
    ``Producer.batch``), other transports publish them one by one on the same connection."""
    app = app or current_app
    with app.producer_or_acquire() as producer, producer.batch():
        for execution_id, region in units:
            app.send_task(EXECUTE_UNIT, args=[execution_id], kwargs=_kwargs(region, job_id),
                          queue=region_queue(region), producer=producer)


def publish_run_job(job_id: str, *, app: Celery | None = None) -> None:
    (app or current_app).send_task(RUN_JOB, args=[job_id], queue=JOBS_QUEUE)
