"""Scrape-time figures from the database and the broker (served by the API's /metrics).

Each collector reports its dependency as down instead of failing the scrape: a broker outage
must not hide the database figures. Queue depths are the ones ``/admin/queues`` shows.
"""

from __future__ import annotations

import logging
from typing import Iterator

from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from beacon.messaging.outbox import pending_stats
from beacon.models import Job
from beacon.observability.health import check_broker, probe_engine
from beacon.operations.admin import queue_depths, queue_names
from beacon.settings import Settings
from beacon.statuses import JobStatus

log = logging.getLogger(__name__)


def _up(dependency: str, value: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"beacon_{dependency}_up", f"1 when the scrape reached the {dependency}",
                             value=1.0 if value else 0.0)


class DatabaseCollector:
    """Jobs by status and the outbox backlog, counted at scrape time."""

    def __init__(self, settings: Settings):
        self.url = settings.database_url

    def collect(self) -> Iterator[Metric]:
        try:
            with Session(probe_engine(self.url)) as session:
                by_status = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                unpublished, oldest_age = pending_stats(session)
        except Exception as exc:  # the database is down: say so, keep the rest of the scrape
            log.warning("metrics: database figures unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            yield _up("database", False)
            return
        yield _up("database", True)
        jobs = GaugeMetricFamily("beacon_jobs", "Jobs by status, counted at scrape time", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs
        yield GaugeMetricFamily("beacon_outbox_unpublished", "Outbox messages not yet published", value=unpublished)
        yield GaugeMetricFamily("beacon_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox message "
                                "(0 when none)", value=oldest_age or 0.0)


class BrokerCollector:
    """Messages waiting per queue (a passive declare: LLEN on a Redis broker), skipped while the broker is down."""

    def __init__(self, settings: Settings, celery: Celery):
        self.settings = settings
        self.celery = celery

    def collect(self) -> Iterator[Metric]:
        if self.settings.broker_url.startswith("filesystem"):
            return  # the embedded default has no broker to ask
        # A quick probe first: the depth query retries for seconds against a broker that is down.
        depths = queue_depths(self.celery, queue_names(self.settings)) if check_broker(self.settings.broker_url).ok else {}
        reachable = any(depth is not None for depth in depths.values())
        yield _up("broker", reachable)
        if not reachable:
            return
        gauge = GaugeMetricFamily("beacon_queue_depth", "Messages waiting in each queue", labels=["queue"])
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge
