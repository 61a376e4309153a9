"""SQLAlchemy models: the schema Postgres (or the embedded SQLite) holds.

Schema changes go through Alembic migrations in ``beacon/migrations``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from beacon.statuses import JobStatus, PinState, UnitStatus
from beacon.timeutil import utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the application stamps time in UTC")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", tuple(JobStatus)), name="ck_jobs_status"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_identity", "identity", unique=True),
    )

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    raw_body: Mapped[str] = mapped_column(Text, nullable=False)
    spec: Mapped[dict] = mapped_column(JSONType, nullable=False)
    public_key: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_timeout_ms: Mapped[int | None] = mapped_column(Integer)
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_reason: Mapped[str | None] = mapped_column(Text)
    analysis: Mapped[dict | None] = mapped_column(JSONType)
    # The signed projection serialised the matched form's own way (text: JSONB would rewrite -0 and
    # 1e21); ``spec`` above is the executed projection with the server's id, for reading.
    signed_spec: Mapped[str | None] = mapped_column(Text)
    signature_form: Mapped[str | None] = mapped_column(String(32))
    identity: Mapped[str | None] = mapped_column(String(64))  # beacon.crypto.signing.Verified.identity
    submitter_wallet: Mapped[str | None] = mapped_column(String(42))  # recovered from wallet_auth
    requested: Mapped[dict | None] = mapped_column(JSONType)  # the cross-region wrapper's unsigned values
    # 1, then + 1 for each manual retry (``engine.start_generation``); finalised once per generation.
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    # The last event's per-job sequence number (``beacon.messaging.events.emit`` bumps it in the
    # transaction of the change it announces).
    event_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("job_id", "region", "model_id", "question_id", name="uq_executions_unit"),
        CheckConstraint(_in("status", tuple(UnitStatus)), name="ck_executions_status"),
        Index("ix_executions_job_status", "job_id", "status"),
        Index("ix_executions_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    region: Mapped[str] = mapped_column(String(64), nullable=False)
    model_id: Mapped[str] = mapped_column(String(256), nullable=False)
    question_id: Mapped[str] = mapped_column(String(256), nullable=False)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    provider: Mapped[str | None] = mapped_column(String(64))
    served_region: Mapped[str | None] = mapped_column(String(64))
    classification: Mapped[str | None] = mapped_column(String(32))
    output: Mapped[str | None] = mapped_column(Text)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # claims taken
    # Claims that ended with a transient provider failure recorded (the unit went back to pending
    # for another call): attempts - provider_retries claims ended without any outcome (poison).
    provider_retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(255))  # the worker (Celery node) of the last claim
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    failure: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The job generation whose run this row holds; ``history`` keeps the row as each earlier
    # generation left it (a manual retry re-runs the unit in place).
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    history: Mapped[list | None] = mapped_column(JSONType)
    bias_score: Mapped[dict | None] = mapped_column(JSONType)  # beacon.execution.bias.score_answer, at record time
    region_flag: Mapped[str | None] = mapped_column(String(16))  # the hybrid router's: mismatch | unknown
    provider_receipt: Mapped[dict | None] = mapped_column(JSONType)  # the hybrid router's metadata.receipt
    # What an OpenAI-compatible endpoint reported: why the model stopped ("length": cut at max_tokens)
    # and its token counts; null when the provider reported nothing.
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)


class Nonce(Base):
    __tablename__ = "nonces"
    __table_args__ = (
        UniqueConstraint("public_key", "nonce", name="uq_nonces_key_nonce"),
        Index("ix_nonces_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_key: Mapped[str] = mapped_column(String(64), nullable=False)
    nonce: Mapped[str] = mapped_column(String(512), nullable=False)
    job_id: Mapped[str] = mapped_column(String(256), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    key: Mapped[str] = mapped_column(String(320), primary_key=True)  # <submitting key>:<Idempotency-Key>
    identity: Mapped[str] = mapped_column(String(64), nullable=False)
    job_id: Mapped[str] = mapped_column(String(256), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "published_at", "next_attempt_at"),
        Index("ix_outbox_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(128), nullable=False)
    queue: Mapped[str] = mapped_column(String(128), nullable=False)
    args: Mapped[list] = mapped_column(JSONType, nullable=False)
    headers: Mapped[dict] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- evidence



class Bundle(Base):
    """One signed evidence bundle per finalised job; its bytes live in the block store."""

    __tablename__ = "bundles"
    __table_args__ = (
        CheckConstraint(_in("pin_state", tuple(PinState)), name="ck_bundles_pin_state"),
        Index("ix_bundles_job_id", "job_id"),
        Index("ix_bundles_pin_due", "pin_state", "pin_next_attempt_at"),
    )

    cid: Mapped[str] = mapped_column(String(64), primary_key=True)  # CIDv0 of the bundle bytes
    cid_v1: Mapped[str] = mapped_column(String(128), nullable=False)
    job_id: Mapped[str] = mapped_column(String(256), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    pin_state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    pin_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pin_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pin_error: Mapped[str | None] = mapped_column(Text)
    pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    supersedes: Mapped[str | None] = mapped_column(String(64))  # CID of the job's previous generation's bundle


class StoredBlock(Base):
    """A content-addressed dag-pb block (the Postgres block store), keyed by its CIDv0."""

    __tablename__ = "blocks"

    cid: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Receipt(Base):
    """The signed receipt of one execution, exactly as it went into its job's bundle."""

    __tablename__ = "receipts"
    __table_args__ = (Index("ix_receipts_job_id", "job_id"),)

    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(256), nullable=False)
    bundle_cid: Mapped[str] = mapped_column(String(64), nullable=False)
    document: Mapped[str] = mapped_column(Text, nullable=False)  # canonical JSON


class TransparencyEntry(Base):
    """One append-only log leaf per finalised job, with the signed tree head of the log it ended."""

    __tablename__ = "transparency_entries"
    __table_args__ = (Index("ix_transparency_entries_job_id", "job_id"),)

    leaf_index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    job_id: Mapped[str] = mapped_column(String(256), nullable=False)
    bundle_cid: Mapped[str] = mapped_column(String(64), nullable=False)
    entry: Mapped[str] = mapped_column(Text, nullable=False)  # canonical JSON, the leaf's bytes
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    tree_head: Mapped[str] = mapped_column(Text, nullable=False)  # signed head of size leaf_index + 1
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")


class TransparencyHead(Base):
    """The single log-head row: appends lock it, so indices are gapless and ordered."""

    __tablename__ = "transparency_head"
    __table_args__ = (CheckConstraint("id = 1", name="ck_transparency_head_single"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    frontier: Mapped[list] = mapped_column(JSONType, nullable=False)  # hex roots of the perfect subtrees
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class WorkerHeartbeat(Base):
    """A worker's last sign of life and the units whose messages it holds (received, not yet done).

    The sweeper (``beacon.execution.engine.sweep``) tells a lost unit from a queued one by it:
    units held by a worker whose heartbeat stopped are re-dispatched at once.
    """

    __tablename__ = "worker_heartbeats"

    worker: Mapped[str] = mapped_column(String(255), primary_key=True)  # the Celery node name
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    units: Mapped[list] = mapped_column(JSONType, nullable=False, default=list)  # execution ids held


class Event(Base):
    """One state change, written in the transaction that made it (``beacon.messaging.events``)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="uq_events_job_seq"),
        Index("ix_events_time", "time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    type: Mapped[str] = mapped_column(String(48), nullable=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    data: Mapped[dict] = mapped_column(JSONType, nullable=False)
