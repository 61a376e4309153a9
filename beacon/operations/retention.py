"""Retention: purge what has outlived its purpose (nonces, idempotency keys, published outbox, events)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from beacon.db import Database
from beacon.messaging.outbox import purge_published
from beacon.models import Event, IdempotencyKey, Nonce
from beacon.settings import Settings
from beacon.timeutil import utcnow


def purge(db: Database, settings: Settings) -> dict[str, int]:
    now = utcnow()
    with db.session() as session:
        nonces = session.execute(delete(Nonce).where(Nonce.expires_at < now)).rowcount or 0
        keys = session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.created_at < now - timedelta(hours=settings.idempotency_ttl_hours)
            )
        ).rowcount or 0
        outbox = purge_published(session, timedelta(days=settings.outbox_retention_days))
        events = session.execute(
            delete(Event).where(Event.time < now - timedelta(days=settings.events_retention_days))
        ).rowcount or 0
    return {"nonces": nonces, "idempotency_keys": keys, "outbox": outbox, "events": events}
