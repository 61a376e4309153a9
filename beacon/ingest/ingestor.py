"""Ingest of signed JobSpecs: the ordered checks of DESIGN.md and the one transaction after.

Order: Content-Type, size, JSON, schema, signature-failure rate limit, trusted key, timestamp
window, signature, Idempotency-Key, nonce (replay), job id. Every rejection raises an ApiError
before anything is written; acceptance writes job, nonce, idempotency key and outbox row in one
transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from beacon.messaging.celery_app import JOBS_QUEUE, RUN_JOB
from beacon.db import Database
from beacon.errors import ApiError, ValidationError
from beacon.ingest.jobspec import JobSpec, parse_jobspec
from beacon.ingest.rawjson import parse_body
from beacon.models import IdempotencyKey, Job, Nonce, OutboxMessage
from beacon.messaging.tracing import trace_headers
from beacon.messaging.outbox import Publisher, enqueue, publish_fresh
from beacon.ingest.ratelimit import SignatureFailureLimiter
from beacon.settings import Settings
from beacon.crypto.signing import verify_document
from beacon.timeutil import parse_rfc3339, utcnow
from beacon.ingest.trust import TrustStore

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 256
_IDEMPOTENCY_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}")
# Built once: the hot path only binds values (Core statements on the tables, no ORM flush).
INSERT_JOB = insert(Job.__table__)
INSERT_NONCE = insert(Nonce.__table__)
INSERT_IDEMPOTENCY_KEY = insert(IdempotencyKey.__table__)


@dataclass(frozen=True)
class Accepted:
    status: int
    body: dict[str, Any]


def decode_json(raw: bytes) -> Any:
    """The JSON value of a raw request body, hostile bodies refused (``beacon.ingest.rawjson``)."""
    return parse_body(raw)


def check_idempotency_key(key: str | None) -> None:
    """1 to 256 printable ASCII characters (it is a varchar primary key; no NUL, no control bytes)."""
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters", "Idempotency-Key"
        )


def require_json_content_type(content_type: str | None) -> None:
    """The first check, made before the body is read."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")


def check_timestamp_window(settings: Settings, timestamp: str) -> None:
    """Raise ``timestamp_invalid`` unless the signed timestamp is within the accepted window."""
    try:
        stamp = parse_rfc3339(timestamp)
    except ValueError:
        raise ApiError(
            400, "timestamp_invalid", "metadata.timestamp is not an RFC 3339 time", {"reason": "format_invalid"}
        ) from None
    now = utcnow()
    if now - stamp > timedelta(minutes=settings.timestamp_max_age_minutes):
        raise ApiError(
            400, "timestamp_invalid",
            f"metadata.timestamp is older than {settings.timestamp_max_age_minutes} minutes", {"reason": "too_old"},
        )
    if stamp - now > timedelta(minutes=settings.timestamp_max_skew_minutes):
        raise ApiError(
            400, "timestamp_invalid",
            f"metadata.timestamp is more than {settings.timestamp_max_skew_minutes} minutes in the future",
            {"reason": "too_far_in_future"},
        )


class Ingestor:
    """The ingest service the HTTP view calls."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        trust: TrustStore,
        limiter: SignatureFailureLimiter,
        publish: Publisher,
        catalogue: dict[str, Any],
        regions: list[str],
    ):
        self.settings = settings
        self.db = db
        self.trust = trust
        self.limiter = limiter
        self.publish = publish
        self.catalogue = catalogue
        self.regions = regions

    def parse(self, doc: Any) -> JobSpec:
        return parse_jobspec(
            doc,
            default_model=self.settings.default_model,
            catalogue=self.catalogue,
            known_regions=self.regions,
            max_units=self.settings.max_units_per_job,
        )

    def check_signature(self, spec: JobSpec, client_ip: str) -> str:
        try:
            form = verify_document(spec.document)
        except ValueError as exc:
            form, reason = None, str(exc)
        else:
            reason = "the signature does not match the document"
        if form is None:
            self.limiter.record_failure(client_ip, spec.public_key)
            raise ApiError(400, "signature_mismatch", f"signature verification failed: {reason}")
        return form

    def submit(self, raw: bytes, client_ip: str, idempotency_key: str | None) -> Accepted:
        """Every check after the Content-Type (``require_json_content_type``), then the write."""
        if len(raw) > self.settings.max_body_bytes:
            raise ApiError(
                413, "payload_too_large", f"request body exceeds {self.settings.max_body_bytes} bytes"
            )
        spec = self.parse(parse_body(raw))
        check_idempotency_key(idempotency_key)
        limited = self.limiter.blocked(client_ip, spec.public_key)
        if limited:
            raise ApiError(
                429, "rate_limit_exceeded", "too many signature failures; try again in a minute",
                {"limit": limited},
            )
        now = utcnow()
        self.trust.check(spec.public_key, now)
        check_timestamp_window(self.settings, spec.timestamp)
        form = self.check_signature(spec, client_ip)
        body_sha256 = hashlib.sha256(raw).hexdigest()
        accepted, message = self._store(spec, raw, body_sha256, idempotency_key)
        if message is not None:
            publish_fresh(self.db, self.publish, message)
            log.info("job accepted", extra={"job_id": spec.id, "signature_form": form})
        return accepted

    def _store(
        self, spec: JobSpec, raw: bytes, body_sha256: str, idempotency_key: str | None
    ) -> tuple[Accepted, OutboxMessage | None]:
        """Insert optimistically; a unique-constraint conflict is then explained in DESIGN's order."""
        for _ in range(3):
            try:
                return Accepted(202, {"id": spec.id, "status": "enqueued"}), self._insert(
                    spec, raw, body_sha256, idempotency_key
                )
            except IntegrityError:
                known = self._conflict(spec, body_sha256, idempotency_key)
                if known is not None:
                    return known, None
                # the conflicting transaction rolled back in the meantime: try again
        raise ApiError(503, "service_unavailable", "could not store the job; try again")

    def _conflict(self, spec: JobSpec, body_sha256: str, idempotency_key: str | None) -> Accepted | None:
        """Which stored row the submission collides with: idempotent replay, nonce or job id."""
        with self.db.session() as session:
            if idempotency_key is not None:
                known = session.get(IdempotencyKey, idempotency_key)
                if known is not None:
                    if known.body_sha256 == body_sha256:
                        return Accepted(200, {"id": known.job_id, "idempotent": True})
                    raise ApiError(
                        409, "idempotency_key_reused",
                        "this Idempotency-Key was used with a different request body",
                        {"job_id": known.job_id},
                    )
            replay = session.scalar(
                select(Nonce.job_id).where(Nonce.public_key == spec.public_key, Nonce.nonce == spec.nonce)
            )
            if replay is not None:
                raise ApiError(400, "replay_detected", "this nonce was already used with this key")
            if session.get(Job, spec.id) is not None:
                raise ApiError(409, "job_exists", f"job {spec.id} already exists", {"job_id": spec.id})
        return None

    def _insert(self, spec: JobSpec, raw: bytes, body_sha256: str, idempotency_key: str | None) -> OutboxMessage:
        """Job, nonce, idempotency key and outbox row in one transaction."""
        now = utcnow()
        with self.db.session() as session:
            session.execute(INSERT_JOB, {
                "id": spec.id, "status": "queued", "raw_body": raw.decode("utf-8"), "spec": spec.document,
                "public_key": spec.public_key, "created_at": now, "updated_at": now,
            })
            session.execute(INSERT_NONCE, {
                "public_key": spec.public_key, "nonce": spec.nonce, "job_id": spec.id, "created_at": now,
                "expires_at": now + timedelta(minutes=self.settings.nonce_ttl_minutes),
            })
            if idempotency_key is not None:
                session.execute(INSERT_IDEMPOTENCY_KEY, {
                    "key": idempotency_key, "body_sha256": body_sha256, "job_id": spec.id, "created_at": now,
                })
            return enqueue(session, RUN_JOB, JOBS_QUEUE, [spec.id], trace_headers())  # the request's trace
