"""The transactional outbox: messages written with the data they announce, published after.

``enqueue`` adds a row inside the caller's transaction. ``relay`` publishes unpublished rows
under ``SELECT … FOR UPDATE SKIP LOCKED`` so several relays (and the API's fast path) never
publish one row twice nor lose one; while the broker is down each row backs off.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from beacon.db import Database, Write, bound_insert
from beacon.messaging.events import publish_events
from beacon.messaging.tracing import continued_trace
from beacon.models import OutboxMessage
from beacon.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60
# Rows the API has not reported on for this long are the relay's (its fast path has failed or died).
FAST_PATH_GRACE_SECONDS = 2
Publisher = Callable[[OutboxMessage], None]
BatchPublisher = Callable[[list[OutboxMessage]], None]

_TABLE = OutboxMessage.__table__
_INSERT = bound_insert(OutboxMessage, "outbox_", ("task", "queue", "args", "headers", "created_at", "attempts")
                       ).returning(_TABLE.c.id)
_MARK_PUBLISHED = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(bindparam("outbox_ids", expanding=True)), _TABLE.c.published_at.is_(None))
    .values(published_at=bindparam("now"))
)
# Postgres: the same, autocommitted without waiting for the disk (``set_config(…, true)`` is the
# statement's own ``SET LOCAL synchronous_commit = off``, still in force when it commits).
_MARK_PUBLISHED_LAZILY = _MARK_PUBLISHED.where(
    select(func.set_config("synchronous_commit", "off", True)).scalar_subquery().isnot(None))


def new_message(task: str, queue: str, args: list, headers: dict | None = None) -> tuple[Write, dict]:
    """A row's write (returning its id: a Core insert, no ORM flush) and its values."""
    values = {"task": task, "queue": queue, "args": args, "headers": headers or {}, "created_at": utcnow(),
              "attempts": 0}
    return Write(_INSERT, {f"outbox_{name}": value for name, value in values.items()}), values


def enqueue(session: Session, task: str, queue: str, args: list, headers: dict | None = None) -> OutboxMessage:
    """Add a row in the caller's transaction.

    Returns a detached copy with its id, for publishing; change the row itself with an UPDATE.
    """
    write, values = new_message(task, queue, args, headers)
    return OutboxMessage(id=session.execute(write.statement, write.params).scalar_one(), **values)


def celery_batch_publisher(celery_app) -> BatchPublisher:  # noqa: ANN001
    """Publish rows as Celery task messages through one pooled producer, as one batch, each in the
    trace stored with it (a ``publish <task>`` transaction; none when tracing is off); no retry (a
    failure leaves the rows to the relay)."""

    def publish(messages: list[OutboxMessage]) -> None:
        with celery_app.producer_or_acquire() as producer, producer.batch():
            for message in messages:
                headers = dict(message.headers or {})
                with continued_trace(headers, f"publish {message.task}") if headers else nullcontext():
                    celery_app.send_task(message.task, args=list(message.args), queue=message.queue,
                                         headers=headers, producer=producer, retry=False)

    return publish


def celery_publisher(celery_app, retries: int = 1) -> Publisher:  # noqa: ANN001
    """Publish outbox rows as Celery task messages (retrying ``retries`` times briefly, then giving
    up: the row stays unpublished for the relay)."""

    def publish(message: OutboxMessage) -> None:
        celery_app.send_task(
            message.task,
            args=list(message.args),
            queue=message.queue,
            headers=dict(message.headers or {}),
            retry=retries > 0,
            retry_policy={"max_retries": retries, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )

    return publish


@dataclass(frozen=True)
class RelayResult:
    published: int
    failed: int


def backoff_seconds(attempts: int) -> int:
    return min(2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def _back_off(message: OutboxMessage, exc: Exception, now) -> None:  # noqa: ANN001
    message.attempts += 1
    message.next_attempt_at = now + timedelta(seconds=backoff_seconds(message.attempts))
    message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    log.warning(
        "outbox publish failed; will retry",
        extra={"outbox_id": message.id, "attempts": message.attempts, "error": message.last_error},
    )


class FastPath:
    """Publishes the rows the API just committed, off the request: a background thread takes every
    row added while its previous batch went out, fans out the events announcing them, publishes
    the rows through one producer in one batch (one pipeline on Redis) and marks them published in
    one UPDATE committed without waiting for the disk.

    Nothing is lost: a row is committed before it is added. When the broker fails, the batch's
    rows back off and the relay publishes them; for ``pause`` seconds after a failure batches are
    left to the relay at once. A lost mark (a crash, a failed write) means one harmless republish
    by the relay after FAST_PATH_GRACE_SECONDS: the tasks are idempotent."""

    def __init__(self, db: Database, publish: BatchPublisher, pause: float = 5.0):
        self.db = db
        self.publish = publish
        self.pause = pause
        self._pending: list[tuple[OutboxMessage, list[dict]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._owner: int | None = None  # the process whose thread publishes (a fork starts its own)
        self._down_until = 0.0

    def add(self, message: OutboxMessage, events: list[dict]) -> None:
        with self._lock:
            self._pending.append((message, events))
            if self._owner != os.getpid():
                self._owner = os.getpid()
                threading.Thread(target=self._run, name="outbox-fast-path", daemon=True).start()
        self._wake.set()

    def flush(self) -> int:
        """Publish the rows added so far; returns how many went to the broker."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._wake.clear()
        if not pending:
            return 0
        publish_events([event for _, events in pending for event in events])
        messages = [message for message, _ in pending]
        now = utcnow()
        paused = time.monotonic() < self._down_until
        try:
            if paused:
                raise ConnectionError("the broker failed a moment ago; the outbox relay will publish these rows")
            self.publish(messages)
        except Exception as exc:  # noqa: BLE001  (the rows stay for the relay)
            if not paused:
                self._down_until = time.monotonic() + self.pause
            with self.db.session() as session:
                for message in messages:
                    _back_off(session.merge(message), exc, now)
            return 0
        with self.db.autocommitted() as connection:  # one round trip: no BEGIN, SET LOCAL or COMMIT
            connection.execute(_MARK_PUBLISHED_LAZILY if self.db.is_postgres else _MARK_PUBLISHED,
                               {"outbox_ids": [message.id for message in messages], "now": now})
        return len(messages)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001  (the relay publishes or republishes these rows)
                log.warning("outbox fast path failed; the relay takes its rows", extra={"error": str(exc)})


def relay(db: Database, publish: Publisher, *, ids: Iterable[int] | None = None, batch: int = 100) -> RelayResult:
    """Publish due unpublished rows (``ids``: these rows, due or not); stop at the first broker failure."""
    now = utcnow()
    published = failed = 0
    if ids is not None:
        due = OutboxMessage.id.in_(list(ids))
    else:
        due = or_(
            OutboxMessage.next_attempt_at <= now,
            and_(OutboxMessage.next_attempt_at.is_(None),
                 OutboxMessage.created_at <= now - timedelta(seconds=FAST_PATH_GRACE_SECONDS)),
        )
    with db.session() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None), due)
            .order_by(OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        for message in session.scalars(query):
            try:
                publish(message)
            except Exception as exc:  # the broker is down or refused: back off, keep the row
                _back_off(message, exc, now)
                failed += 1
                break
            message.published_at = now
            published += 1
    return RelayResult(published, failed)


def pending_stats(session: Session) -> tuple[int, float | None]:
    """Unpublished row count and the age in seconds of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.published_at.is_(None))
    ).one()
    return count, (utcnow() - oldest).total_seconds() if oldest else None


def purge_published(session: Session, older_than: timedelta) -> int:
    result = session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < utcnow() - older_than
        )
    )
    return result.rowcount or 0
