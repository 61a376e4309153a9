"""Sentry for every role, from one function: ``init_sentry(settings, role)``.

The API calls it from ``create_app``, workers from the Celery ``worker_init`` /
``worker_process_init`` signals and beat from ``beat_init``. Errors are reported, expected
interruptions are dropped (:mod:`beacon.observability.errors`, a WebSocket's normal close
included), secrets never leave (:mod:`beacon.observability.scrub`), health, readiness and metrics
requests are never traced, nor beat's housekeeping tasks unless SENTRY_TRACE_HOUSEKEEPING is set.
The release is ``beacon-runner@<version>+<git sha>`` and the environment ``BEACON_ENV`` unless
SENTRY_RELEASE / SENTRY_ENVIRONMENT say otherwise (:mod:`beacon.settings`).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import sentry_sdk
from celery.schedules import crontab
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from beacon.messaging.celery_app import PURGE, RELAY_OUTBOX, RETRY_PINS, SWEEP
from beacon.observability.errors import is_expected
from beacon.observability.scrub import DENYLIST_EXTRA, Scrubber, strip_pii, url_password
from beacon.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("api", "worker", "beat", "cli")
NEVER_TRACED = frozenset({
    "/health", "/health/live", "/health/ready",
    "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready",
    "/metrics",
})

#: Beat's periodic tasks: traced only with SENTRY_TRACE_HOUSEKEEPING=true.
HOUSEKEEPING_TASKS = frozenset({RELAY_OUTBOX, SWEEP, RETRY_PINS, PURGE})


class SentryTestError(RuntimeError):
    """Raised on purpose by ``POST /admin/test-sentry`` and ``beacon sentry-test``."""


def configured_secrets(settings: Settings) -> set[str]:
    """Every secret value this process knows: role tokens, URL passwords, Flower and provider keys."""
    from beacon.execution.regions import provider_configs

    secrets = {*settings.admin_tokens, *settings.operator_tokens, *settings.viewer_tokens}
    secrets.update(entry.partition(":")[2] for entry in settings.flower_basic_auth)
    for url in (settings.database_url, settings.redis_url, settings.broker_url, settings.rate_limit_redis_url):
        secrets.add(url_password(url))
    secrets.update(config.api_key for config in provider_configs(settings).values())
    return {secret for secret in secrets if secret}


def make_before_send(scrubber: Scrubber, send_pii: bool):
    """Drop expected interruptions; scrub secrets (and PII unless allowed) from everything else."""

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        exc_info = hint.get("exc_info")
        if exc_info and is_expected(exc_info[1]):
            return None
        event = scrubber.scrub(event)
        return event if send_pii else strip_pii(event)

    return before_send


def make_traces_sampler(rate: float, trace_housekeeping: bool = False):
    """Health, readiness and metrics requests never; beat's housekeeping tasks only when asked
    (SENTRY_TRACE_HOUSEKEEPING: they run every few seconds and would drown the jobs' traces); a
    continued trace keeps its decision; else ``rate``."""

    def traces_sampler(context: dict[str, Any]) -> float:
        environ = context.get("wsgi_environ") or {}
        if (environ.get("PATH_INFO", "").rstrip("/") or "/") in NEVER_TRACED:
            return 0.0
        task = (context.get("celery_job") or {}).get("task")
        if task in HOUSEKEEPING_TASKS and not trace_housekeeping:
            return 0.0
        parent = context.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        return rate

    return traces_sampler


def crons_excluded(schedule: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Beat entries Sentry Crons cannot monitor (not a crontab nor whole minutes), as anchored patterns."""
    excluded = []
    for name, entry in schedule.items():
        every = entry["schedule"]
        if isinstance(every, crontab):
            continue
        seconds = every.total_seconds() if hasattr(every, "total_seconds") else float(every)
        if seconds < 60 or seconds % 60:
            excluded.append(f"^{re.escape(name)}$")
    return excluded


def init_sentry(settings: Settings, role: str, beat_schedule: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Initialise Sentry for this process (``role``: api, worker, beat or cli). False without SENTRY_DSN."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not settings.sentry_dsn:
        log.info("Sentry disabled (no SENTRY_DSN)", extra={"role": role})
        return False
    # Imported here: processes without Sentry do not pay for importing the integrations.
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

    scrubber = Scrubber(configured_secrets(settings))
    monitor_beat = role in ("worker", "beat")
    # send_default_pii only when wanted: newer SDKs deprecate the option (for data_collection,
    # which would switch off the EventScrubber), and unset means False.
    pii = {"send_default_pii": True} if settings.sentry_send_pii else {}
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=settings.sentry_release,
        traces_sampler=make_traces_sampler(settings.sentry_traces_sample_rate, settings.sentry_trace_housekeeping),
        **pii,
        max_request_body_size="medium",
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + DENYLIST_EXTRA, recursive=True,
                                     send_default_pii=settings.sentry_send_pii),
        before_send=make_before_send(scrubber, settings.sentry_send_pii),
        before_send_transaction=make_before_send(scrubber, settings.sentry_send_pii),
        integrations=[
            FlaskIntegration(transaction_style="url"),
            CeleryIntegration(monitor_beat_tasks=monitor_beat,
                              exclude_beat_tasks=crons_excluded(beat_schedule or {})),
            SqlalchemyIntegration(),
            RedisIntegration(),
            # Log records become breadcrumbs; only ERROR and above become events (Sentry Logs stay
            # off: enable_logs is not set, so no log line is forwarded as such).
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
    )
    tags = {"role": role, "environment": settings.sentry_environment, "release": settings.sentry_release}
    if settings.fly_region:
        tags["fly_region"] = settings.fly_region
    sentry_sdk.get_global_scope().set_tags(tags)  # every thread's events, not only this one's
    log.info("Sentry initialized", extra={
        "environment": settings.sentry_environment, "release": settings.sentry_release,
        "traces_sample_rate": settings.sentry_traces_sample_rate, "send_pii": settings.sentry_send_pii,
        "role": role,
    })
    return True


def capture_test_exception(origin: str) -> str | None:
    """Raise and capture a :class:`SentryTestError`; the event id, or None when Sentry is off."""
    try:
        raise SentryTestError(f"Sentry test exception from {origin}")
    except SentryTestError as error:
        return sentry_sdk.capture_exception(error)
