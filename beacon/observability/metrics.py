"""Prometheus metrics of every role, and their exposition.

Counters and histograms live in the process that observes them (API workers, Celery workers);
database and broker figures are collected at scrape time (:mod:`beacon.observability.collectors`).
With ``PROMETHEUS_MULTIPROC_DIR`` set (``beacon api`` sets it for gunicorn) every process
writes its samples there and a scrape aggregates all of them. No label carries an id.
"""

from __future__ import annotations

import os
from typing import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

http_requests = Counter("beacon_http_requests_total", "HTTP requests by route template and status",
                        ["method", "route", "status"])
http_latency = Histogram("beacon_http_request_duration_seconds", "HTTP request latency by route template",
                         ["method", "route"])
units = Counter("beacon_units_total", "Unit executions by region, provider and outcome "
                "(completed, failed, retry, deadline, skipped)", ["region", "provider", "status"])
provider_latency = Histogram("beacon_provider_latency_seconds", "Provider call latency (including the wait "
                             "for a free in-flight slot) by region and provider", ["region", "provider"],
                             buckets=LATENCY_BUCKETS)
task_retries = Counter("beacon_task_retries_total", "Task retries (unit re-dispatches with backoff included)",
                       ["task"])
task_failures = Counter("beacon_task_failures_total", "Tasks that raised", ["task"])
ws_dropped = Counter("beacon_ws_clients_dropped_total", "Live-event clients (/ws, SSE) dropped because they did not keep up",
                     ["transport"])
region_slots_in_use = Gauge("beacon_region_slots_in_use", "Provider calls in flight per region in this worker "
                            "(its slot budget: max_in_flight, or a fair share of the worker's threads)", ["region"],
                            multiprocess_mode="livesum")
units_waiting = Gauge("beacon_units_waiting", "Units put back for want of a free slot of their region, not yet "
                      "taken up again", ["region"], multiprocess_mode="livesum")
units_put_back = Counter("beacon_units_put_back_total", "Unit deliveries put back (no free slot of the region)",
                         ["region"])


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    http_requests.labels(method, route, str(status)).inc()
    http_latency.labels(method, route).observe(seconds)


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's when running in multiprocess mode."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition(scrape_collectors: Iterable[Collector] = ()) -> bytes:
    """The text exposition: the process (or multiprocess) metrics, then the scrape-time collectors."""
    extra = CollectorRegistry(auto_describe=False)
    for collector in scrape_collectors:
        extra.register(collector)
    return generate_latest(process_registry()) + generate_latest(extra)
