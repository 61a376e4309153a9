"""The transactional outbox: messages written with the data they announce, published after.

``enqueue`` adds a row inside the caller's transaction. ``relay`` publishes unpublished rows
under ``SELECT … FOR UPDATE SKIP LOCKED`` so several relays (and the API's fast path) never
publish one row twice nor lose one; while the broker is down each row backs off.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from beacon.db import Database
from beacon.models import OutboxMessage
from beacon.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60
# Rows the API has not reported on for this long are the relay's (its fast path has failed or died).
FAST_PATH_GRACE_SECONDS = 2
Publisher = Callable[[OutboxMessage], None]

_TABLE = OutboxMessage.__table__
_INSERT = insert(_TABLE).returning(_TABLE.c.id)
_MARK_PUBLISHED = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("outbox_id"), _TABLE.c.published_at.is_(None))
    .values(published_at=bindparam("now"))
)


def enqueue(session: Session, task: str, queue: str, args: list, headers: dict | None = None) -> OutboxMessage:
    """Add a row in the caller's transaction (a Core insert, no ORM flush).

    Returns a detached copy with its id, for publishing; change the row itself with an UPDATE.
    """
    values = {"task": task, "queue": queue, "args": args, "headers": headers or {}, "created_at": utcnow(),
              "attempts": 0}
    ident = session.execute(_INSERT, values).scalar_one()
    return OutboxMessage(id=ident, **values)


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


def paused_after_failure(publish: Publisher, seconds: float = 5.0) -> Publisher:
    """``publish``, except that after a failure it refuses at once for ``seconds``: the rows wait
    for the relay, and a hung broker costs one request its timeout instead of every request."""
    lock = threading.Lock()
    down_until = 0.0

    def guarded(message: OutboxMessage) -> None:
        nonlocal down_until
        if time.monotonic() < down_until:
            raise ConnectionError("the broker failed a moment ago; the outbox relay will publish this row")
        try:
            publish(message)
        except Exception:
            with lock:
                down_until = time.monotonic() + seconds
            raise

    return guarded


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


def publish_fresh(db: Database, publish: Publisher, message: OutboxMessage) -> bool:
    """The fast path for a row just committed: publish it, then mark it published.

    No lock is taken: the relay leaves rows alone for FAST_PATH_GRACE_SECONDS, and should both
    ever publish one row, the tasks are idempotent.
    """
    now = utcnow()
    try:
        publish(message)
    except Exception as exc:  # never fail an accepted submission over the broker
        with db.session() as session:
            _back_off(session.merge(message), exc, now)
        return False
    with db.session() as session:
        if db.is_postgres:  # losing this mark in a crash only means one harmless republish by the relay
            session.execute(text("SET LOCAL synchronous_commit = off"))
        session.execute(_MARK_PUBLISHED, {"outbox_id": message.id, "now": now})
    return True


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
