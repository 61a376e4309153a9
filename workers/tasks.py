"""The job tasks: thin wrappers that hand each message to the engine."""

from __future__ import annotations

import logging

from celery import shared_task

from beacon.db import get_database
from beacon.execution import engine, regions
from beacon.messaging.celery_app import EXECUTE_UNIT, RUN_JOB
from beacon.messaging.dispatch import dispatch_unit
from beacon.observability.units import job_context, observe_unit
from beacon.settings import get_settings

log = logging.getLogger(__name__)


@shared_task(name=RUN_JOB, ignore_result=True)
def run_job(job_id: str) -> int:
    with job_context(job_id):
        return engine.start_job(get_database(), get_settings(), job_id, dispatch_unit)


@shared_task(name=EXECUTE_UNIT, ignore_result=True)
def execute_unit(execution_id: int) -> str:
    settings, db = get_settings(), get_database()
    with observe_unit(db, regions.provider_registry(settings), execution_id) as unit:
        return engine.step_unit(db, settings, unit.registry, execution_id, dispatch_unit, observer=unit).status
