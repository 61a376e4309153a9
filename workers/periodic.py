"""The periodic tasks beat schedules (``beat.schedule``): thin wrappers over the core package's services."""

from __future__ import annotations

import logging

from celery import current_app, shared_task

from beacon.db import get_database
from beacon.evidence import bundles
from beacon.execution import engine
from beacon.messaging.celery_app import PURGE, RELAY_OUTBOX, RETRY_PINS, SWEEP
from beacon.messaging.dispatch import dispatch_unit, publish_run_job
from beacon.messaging.outbox import celery_publisher, relay
from beacon.messaging.tracing import traced_publisher
from beacon.operations import retention
from beacon.settings import get_settings

log = logging.getLogger(__name__)


@shared_task(name=RELAY_OUTBOX, ignore_result=True, acks_late=False)
def relay_outbox() -> dict:
    result = relay(get_database(), traced_publisher(celery_publisher(current_app)))  # each in its job's trace
    if result.published or result.failed:
        log.info("outbox relayed", extra={"published": result.published, "failed": result.failed})
    return {"published": result.published, "failed": result.failed}


@shared_task(name=SWEEP, ignore_result=True, acks_late=False)
def sweep() -> dict:
    result = engine.sweep(get_database(), get_settings(), dispatch_unit, publish_run_job)
    return vars(result)


@shared_task(name=PURGE, ignore_result=True)
def purge() -> dict:
    counts = retention.purge(get_database(), get_settings())
    log.info("expired rows purged", extra=counts)
    return counts


@shared_task(name=RETRY_PINS, ignore_result=True, acks_late=False)
def retry_pins() -> dict:
    """Pin the evidence bundles whose pin failed and whose backoff has passed (IPFS_API_URL set)."""
    counts = bundles.retry_pins(get_database(), get_settings())
    if any(counts.values()):
        log.info("bundle pins retried", extra=counts)
    return counts
