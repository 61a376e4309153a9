"""One trace per job across processes, also through the transactional outbox.

Ingest stores :func:`trace_headers` with the outbox row; when the relay (beat) publishes the row
later, :func:`continued_trace` makes the Celery integration send the stored trace instead of
the relay task's own, so ``run_job`` and every unit continue the HTTP request's trace.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import sentry_sdk

from beacon.models import OutboxMessage


def trace_headers() -> dict[str, str]:
    """The current trace as ``sentry-trace`` and ``baggage`` headers (empty when there is none, or
    when Sentry is off: nothing would receive the trace)."""
    headers = {}
    if not sentry_sdk.get_client().is_active():
        return headers
    traceparent = sentry_sdk.get_traceparent()
    if traceparent:
        headers["sentry-trace"] = traceparent
        baggage = sentry_sdk.get_baggage()
        if baggage:
            headers["baggage"] = baggage
    return headers


@contextmanager
def continued_trace(headers: Mapping[str, str], name: str) -> Iterator[None]:
    """Run the block inside a transaction continuing the trace in ``headers`` (as it is when Sentry
    is off: a scope and transaction per message would cost ~0.1 ms for nothing)."""
    if not sentry_sdk.get_client().is_active():
        yield
        return
    with sentry_sdk.isolation_scope():
        transaction = sentry_sdk.continue_trace(dict(headers), op="queue.relay", name=name)
        with sentry_sdk.start_transaction(transaction):
            yield


def traced_publisher(publish: Callable[[OutboxMessage], None]) -> Callable[[OutboxMessage], None]:
    """Wrap an outbox publisher so each message is published in the trace it was stored with."""

    def publish_in_trace(message: OutboxMessage) -> None:
        with continued_trace(message.headers or {}, f"relay {message.task}"):
            publish(message)

    return publish_in_trace
