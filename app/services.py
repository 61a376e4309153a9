"""The services one API process holds, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app

from beacon.db import Database, database_for
from beacon.execution.regions import region_names
from beacon.ingest.ingestor import Ingestor
from beacon.ingest.questions import load_catalogue
from beacon.ingest.ratelimit import SignatureFailureLimiter
from beacon.ingest.trust import TrustStore
from beacon.ingest.wallet import load_allowlist
from beacon.messaging.celery_app import make_celery
from beacon.messaging.events import configure_publishing
from beacon.messaging.outbox import FastPath, celery_batch_publisher
from beacon.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    celery: Celery
    trust: TrustStore
    ingestor: Ingestor

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        db = database_for(settings.database_url)
        configure_publishing(settings.redis_url)
        celery = make_celery(settings, request_path=True)
        trust = TrustStore(settings.trusted_keys_file, settings.trust_enforce)
        ingestor = Ingestor(
            settings=settings,
            db=db,
            trust=trust,
            limiter=SignatureFailureLimiter(
                settings.rate_limit_redis_url, settings.rate_limit_ip_per_minute, settings.rate_limit_key_per_minute
            ),
            fast_path=FastPath(db, celery_batch_publisher(celery)),  # the relay publishes the rest
            catalogue=load_catalogue(settings.questions_file),
            regions=region_names(settings),
            wallet_allowlist=load_allowlist(settings.wallet_allowlist_file),
        )
        return cls(settings, db, celery, trust, ingestor)


def services() -> Services:
    return current_app.extensions["beacon"]
