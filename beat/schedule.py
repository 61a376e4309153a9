"""The beat schedule. Entries expire so that missed runs do not pile up."""

from __future__ import annotations

from celery.schedules import crontab

from beacon.messaging.celery_app import JOBS_QUEUE, PURGE, RELAY_OUTBOX, RETRY_PINS, SWEEP
from beacon.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    relay_every = settings.outbox_relay_interval_seconds
    return {
        "relay-outbox": {
            "task": RELAY_OUTBOX,
            "schedule": float(relay_every),
            "options": {"queue": JOBS_QUEUE, "expires": relay_every},
        },
        "sweep": {
            "task": SWEEP,
            "schedule": float(settings.sweep_interval_seconds),
            "options": {"queue": JOBS_QUEUE, "expires": settings.sweep_interval_seconds},
        },
        "retry-pins": {
            "task": RETRY_PINS,
            "schedule": float(settings.pin_retry_interval_seconds),
            "options": {"queue": JOBS_QUEUE, "expires": settings.pin_retry_interval_seconds},
        },
        "purge-expired": {
            "task": PURGE,
            "schedule": crontab(minute="*/10"),
            "options": {"queue": JOBS_QUEUE, "expires": 300},
        },
    }
