"""Worker-side instrumentation around the engine: tags, log context, breadcrumbs, metrics, reports.

A failed unit is reported as its :class:`~beacon.execution.providers.ProviderError`, fingerprinted by
region, provider and failure code, so one provider outage is one Sentry issue. A unit cut by
the job deadline or dropped because its job was cancelled is captured as an expected
interruption, which ``before_send`` drops (Sentry counts it as filtered, nothing more).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import sentry_sdk
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from beacon.db import Database
from beacon.execution.engine import Claim, Outcome
from beacon.execution.providers import ProviderError, ProviderRegistry, ProviderRequest, UnknownRegion
from beacon.logs import bind, log_context
from beacon.messaging.celery_app import EXECUTE_UNIT
from beacon.models import Job
from beacon.observability import metrics
from beacon.observability.errors import DeadlineExceeded, JobCancelled
from beacon.statuses import JobStatus, UnitOutcome


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag the current task's events and log lines with the job."""
    sentry_sdk.set_tag("job_id", job_id)
    token = bind(job_id=job_id)
    try:
        yield
    finally:
        log_context.reset(token)


class TimedRegistry:
    """The engine's provider registry, timing each call and leaving a breadcrumb."""

    def __init__(self, inner: ProviderRegistry):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def call(self, region: str, request: ProviderRequest):
        provider = _provider_name(self._inner, region)
        started = time.perf_counter()
        result = "ok"
        try:
            with sentry_sdk.start_span(op="provider.call", name=f"{provider} {region}"):
                return self._inner.call(region, request)
        except ProviderError as error:
            result = error.code
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.provider_latency.labels(region, provider).observe(seconds)
            sentry_sdk.add_breadcrumb(
                category="unit", message=f"provider call: {result}", level="info" if result == "ok" else "warning",
                data={"region": region, "provider": provider, "model_id": request.model_id,
                      "question_id": request.question_id, "duration_ms": round(seconds * 1000)},
            )


class UnitObservation:
    """One unit as the engine runs it: identified once claimed (no lookup of its own), then its outcome."""

    def __init__(self, db: Database, registry: ProviderRegistry, execution_id: int):
        self.db = db
        self.execution_id = execution_id
        self.job_id = self.region = self.model_id = self.question_id = None
        self.provider = "unknown"
        self._registry = registry
        self.registry = TimedRegistry(registry)

    def claimed(self, claim: Claim) -> None:
        """The engine's ``on_claim`` hook: tag events and log lines with the unit from here on."""
        self.job_id, self.region, self.model_id, self.question_id = (
            claim.job_id, claim.region, claim.model_id, claim.question_id)
        self.provider = _provider_name(self._registry, self.region)
        sentry_sdk.set_tags(self.tags)
        bind(job_id=self.job_id, region=self.region)  # reset with the rest when the task ends
        sentry_sdk.add_breadcrumb(category="unit", message="unit claimed",
                                  data={"execution_id": self.execution_id, "attempt": claim.attempts, **self.tags})

    @property
    def tags(self) -> dict[str, str]:
        values = {"job_id": self.job_id, "region": self.region, "model_id": self.model_id,
                  "question_id": self.question_id, "provider": self.provider}
        return {key: value for key, value in values.items() if value is not None}

    def outcome(self, outcome: Outcome) -> None:
        """Count the outcome, leave a breadcrumb, and report what did not succeed."""
        failed = outcome.status in (UnitOutcome.FAILED, UnitOutcome.DEAD_LETTERED)
        metrics.units.labels(self.region or "unknown", self.provider, outcome.status).inc()
        if outcome.status == UnitOutcome.RETRY:
            metrics.task_retries.labels(EXECUTE_UNIT).inc()
        sentry_sdk.add_breadcrumb(category="unit", message=f"unit {outcome.status}",
                                  level="error" if failed else "info",
                                  data={"execution_id": self.execution_id, "retry_in": outcome.retry_in})
        if failed:
            self._report_failure(outcome.error)
        elif outcome.status == UnitOutcome.DEADLINE:
            sentry_sdk.capture_exception(DeadlineExceeded(self.job_id, self.execution_id))
        elif outcome.status == UnitOutcome.SKIPPED and self._job_status() == JobStatus.CANCELLED:
            sentry_sdk.capture_exception(JobCancelled(self.job_id, self.execution_id))

    def finalised(self, status: str | None) -> None:
        if status is not None:
            sentry_sdk.add_breadcrumb(category="unit", message=f"job finalised: {status}", data={"job_id": self.job_id})

    def _report_failure(self, error: ProviderError | None) -> None:
        code = error.code if error is not None else "poison"
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["provider-failure", self.region or "unknown", self.provider, code]
            scope.set_tag("failure_code", code)
            scope.set_level("error")
            if error is not None:
                sentry_sdk.capture_exception(error)
            else:
                sentry_sdk.capture_message(f"unit {self.execution_id} dead-lettered: no answer within its attempts")

    def _job_status(self) -> str | None:
        if self.job_id is None:
            return None
        try:
            with self.db.session() as session:
                return session.scalar(select(Job.status).where(Job.id == self.job_id))
        except SQLAlchemyError:  # instrumentation never fails a unit (the database may be away)
            return None


def _provider_name(registry: ProviderRegistry, region: str | None) -> str:
    if region is None:
        return "unknown"
    try:
        return registry.get(region).name
    except UnknownRegion:
        return "unknown"


@contextmanager
def observe_unit(db: Database, registry: ProviderRegistry, execution_id: int) -> Iterator[UnitObservation]:
    """Tag the task's events and log lines with the unit for the duration of the block."""
    unit = UnitObservation(db, registry, execution_id)
    token = bind(execution_id=execution_id)
    sentry_sdk.add_breadcrumb(category="unit", message="unit received", data={"execution_id": execution_id})
    try:
        yield unit
    finally:
        log_context.reset(token)
