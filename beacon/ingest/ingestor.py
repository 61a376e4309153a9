"""Ingest of signed JobSpecs: the ordered checks of DESIGN.md and the one transaction after.

Order: Content-Type, size, JSON, schema, signature-failure rate limit, trusted key (or an
allowlisted wallet), timestamp window, signature (which fixes the matched form and the
submission's identity), wallet_auth, then what is stored: a known identity answers 200 with its
job; an Idempotency-Key (per submitting key) seen with another identity → 409; the same (key,
nonce) with another identity → ``replay_detected``; a signed job id held by another identity →
409 ``job_exists``; an uncovered id held by another → a generated id. Every rejection raises a
domain error (``beacon.errors``) before anything is written; acceptance writes job, nonce,
idempotency key, the ``job.queued`` event and the outbox row atomically, in one statement on Postgres.

What runs is what was signed: the job row keeps the matched form's projection (as text, in the
form's own serialisation, and parsed for execution) and never a field the signature did not cover.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from beacon.crypto.signing import Verified, canonical_public_key, verify
from beacon.db import Database, Write, bound_insert
from beacon.errors import (
    Conflict,
    Forbidden,
    Invalid,
    RateLimited,
    TooLarge,
    Unavailable,
    UnsupportedMedia,
    ValidationError,
)
from beacon.ids import is_job_id
from beacon.ingest.jobspec import JobSpec, parse_jobspec
from beacon.ingest.ratelimit import SignatureFailureLimiter
from beacon.ingest.rawjson import parse_body
from beacon.ingest.trust import TrustStore
from beacon.ingest.wallet import WalletAuthInvalid, verify_wallet_auth
from beacon.messaging.celery_app import JOBS_QUEUE, RUN_JOB
from beacon.messaging.events import first_event
from beacon.messaging.outbox import FastPath, new_message
from beacon.messaging.tracing import trace_headers
from beacon.models import IdempotencyKey, Job, Nonce, OutboxMessage
from beacon.region_names import canonical_region
from beacon.settings import Settings
from beacon.statuses import JobStatus
from beacon.timeutil import parse_rfc3339, utcnow

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 256
_IDEMPOTENCY_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}")
# Built once: the hot path only binds values (Core statements, no ORM flush).
INSERT_JOB = bound_insert(Job, "job_", (
    "id", "status", "raw_body", "spec", "public_key", "created_at", "updated_at", "signed_spec", "signature_form",
    "identity", "submitter_wallet", "requested", "generation", "event_seq"))
INSERT_NONCE = bound_insert(Nonce, "nonce_", ("public_key", "nonce", "job_id", "created_at", "expires_at"))
INSERT_IDEMPOTENCY_KEY = bound_insert(IdempotencyKey, "key_", ("key", "identity", "job_id", "created_at"))


@dataclass(frozen=True)
class Accepted:
    """The outcome of a submission: a new job (``created``) or the one the same signed content made."""

    job_id: str
    created: bool
    created_at: datetime
    spec: JobSpec


@dataclass(frozen=True)
class Submission:
    """A document whose checks passed, ready to store."""

    spec: JobSpec  # the executed projection, parsed
    verified: Verified
    public_key: str  # canonical spelling
    signed_text: str
    signed_id: str | None  # the id the signature covers (``jobspec_id``, or ``id`` when covered)
    offered_id: str | None  # an id the signature does not cover: used unless another submission holds it
    wallet: str | None
    requested: dict[str, Any] | None


def generated_job_id(benchmark_name: str, signature: str, now: datetime) -> str:
    """``<slug of benchmark.name>-<unix ms>-<8 hex of the signature's hash>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", benchmark_name.lower()).strip("-")[:64].strip("-") or "job"
    digest = hashlib.sha256(signature.encode()).hexdigest()[:8]
    return f"{slug}-{int(now.timestamp() * 1000)}-{digest}"


def _has_proto_key(value: Any) -> bool:
    """JavaScript drops ``__proto__`` keys when the portal signs, so such a key is never covered."""
    if isinstance(value, dict):
        return "__proto__" in value or any(_has_proto_key(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_proto_key(v) for v in value)
    return False


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
        raise UnsupportedMedia("unsupported_media_type", "Content-Type must be application/json")


def check_timestamp_window(settings: Settings, timestamp: str) -> None:
    """Raise ``timestamp_invalid`` unless the signed timestamp is within the accepted window."""
    try:
        stamp = parse_rfc3339(timestamp)
    except ValueError:
        raise Invalid("timestamp_invalid", "metadata.timestamp is not an RFC 3339 time", {"reason": "format_invalid"}
        ) from None
    now = utcnow()
    if now - stamp > timedelta(minutes=settings.timestamp_max_age_minutes):
        raise Invalid("timestamp_invalid",
            f"metadata.timestamp is older than {settings.timestamp_max_age_minutes} minutes", {"reason": "too_old"},
        )
    if stamp - now > timedelta(minutes=settings.timestamp_max_skew_minutes):
        raise Invalid("timestamp_invalid",
            f"metadata.timestamp is more than {settings.timestamp_max_skew_minutes} minutes in the future",
            {"reason": "too_far_in_future"},
        )


def nonce_write(settings: Settings, public_key: str, nonce: str, job_id: str, now: datetime) -> Write:
    """The row that spends (key, nonce) until NONCE_TTL_MINUTES from ``now`` (unique: a second use fails)."""
    return Write(INSERT_NONCE, {
        "nonce_public_key": public_key, "nonce_nonce": nonce, "nonce_job_id": job_id, "nonce_created_at": now,
        "nonce_expires_at": now + timedelta(minutes=settings.nonce_ttl_minutes)})


class Ingestor:
    """The ingest service the HTTP views call."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        trust: TrustStore,
        limiter: SignatureFailureLimiter,
        fast_path: FastPath,
        catalogue: dict[str, Any],
        regions: list[str],
        wallet_allowlist: frozenset[str] = frozenset(),
    ):
        self.settings = settings
        self.db = db
        self.trust = trust
        self.limiter = limiter
        self.fast_path = fast_path
        self.catalogue = catalogue
        self.regions = regions
        self.wallet_allowlist = wallet_allowlist

    def parse(self, doc: Any) -> JobSpec:
        return parse_jobspec(
            doc,
            default_model=self.settings.default_model,
            catalogue=self.catalogue,
            known_regions=self.regions,
            max_units=self.settings.max_units_per_job,
        )

    # ------------------------------------------------------------------ the two entry points

    def submit(self, raw: bytes, client_ip: str, idempotency_key: str | None) -> Accepted:
        """``POST /api/v1/jobs``: every check after the Content-Type (``require_json_content_type``)."""
        doc = self._decode(raw)
        return self._accept(self.check(doc, client_ip, idempotency_key), raw, idempotency_key)

    def submit_cross_region(self, raw: bytes, client_ip: str, idempotency_key: str | None) -> Accepted:
        """``POST /api/v1/jobs/cross-region``: ``{jobspec, target_regions, min_regions, min_success_rate,
        enable_analysis}``. The jobspec goes through exactly the checks of :meth:`submit`; the outer
        fields are not signed, so they never change what runs: ``target_regions`` must name the signed
        regions, the others are recorded as requested."""
        wrapper = self._decode(raw)
        if not isinstance(wrapper, dict) or not isinstance(wrapper.get("jobspec"), dict):
            raise ValidationError("the body must be an object with a jobspec object", "jobspec",
                                  missing=isinstance(wrapper, dict) and "jobspec" not in wrapper)
        unknown = sorted(set(wrapper) - CROSS_REGION_FIELDS)
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]} (allowed: {', '.join(sorted(CROSS_REGION_FIELDS))})",
                                  unknown[0])
        requested = _requested(wrapper)
        submission = self.check(wrapper["jobspec"], client_ip, idempotency_key, requested=requested)
        targets = wrapper.get("target_regions")
        if targets is not None and sorted({canonical_region(r) for r in targets}) != sorted(submission.spec.regions):
            raise ValidationError(
                f"target_regions {targets} differ from the signed regions {list(submission.spec.regions)}",
                "target_regions")
        return self._accept(submission, raw, idempotency_key)

    # ------------------------------------------------------------------ checks, in DESIGN's order

    def _decode(self, raw: bytes) -> Any:
        if len(raw) > self.settings.max_body_bytes:
            raise TooLarge("payload_too_large", f"request body exceeds {self.settings.max_body_bytes} bytes")
        return decode_json(raw)

    def check(self, doc: Any, client_ip: str, idempotency_key: str | None,
              requested: dict[str, Any] | None = None) -> Submission:
        """Schema, rate limit, trust, timestamp, signature, wallet: a submission ready to store."""
        schema = self.parse(doc)
        if _has_proto_key(doc):
            raise ValidationError("a __proto__ key is never covered by a portal signature", "__proto__")
        check_idempotency_key(idempotency_key)
        limited = self.limiter.blocked(client_ip, _key_name(schema.public_key))
        if limited:
            raise RateLimited("rate_limit_exceeded", "too many signature failures; try again in a minute",
                              {"limit": limited})
        now = utcnow()
        wallet = self._check_trust(doc, schema, now)
        check_timestamp_window(self.settings, schema.timestamp)
        verified = self._check_signature(doc, schema, client_ip)
        wallet = wallet or self._check_wallet(doc, now)
        form = verified.form
        projection = form.projection(doc)
        signature, public_key = doc["signature"], doc["public_key"]
        # What runs is what was signed: the projection, parsed again, unless the form covers every field
        # (then the projection is the document already parsed).
        spec = self.parse({**projection, "signature": signature, "public_key": public_key}) if form.uncovered else schema
        signed_id = projection.get("jobspec_id") or (projection.get("id") if form.covers("id") else None)
        offered = None if form.covers("id") else doc.get("id")
        return Submission(
            spec=spec, verified=verified, public_key=canonical_public_key(public_key),
            signed_text=form.render(projection, signature, public_key),
            signed_id=signed_id or None, offered_id=offered if is_job_id(offered) else None,
            wallet=wallet, requested=requested,
        )

    def _check_trust(self, doc: dict[str, Any], spec: JobSpec, now: datetime) -> str | None:
        """The trusted keys file decides; a key it does not know may still submit when its
        ``wallet_auth`` recovers an allowlisted address (WALLET_ALLOWLIST_FILE). Returns that address."""
        try:
            self.trust.check(spec.public_key, now)
            return None
        except Invalid as refused:
            if refused.code != "trust_violation:unknown" or not self.wallet_allowlist or doc.get("wallet_auth") is None:
                raise
        address = self._check_wallet(doc, now)
        if address not in self.wallet_allowlist:
            raise Forbidden("wallet_not_allowed", f"wallet {address} is not on the allowlist", {"address": address})
        return address

    def _check_signature(self, doc: dict[str, Any], spec: JobSpec, client_ip: str) -> Verified:
        try:
            verified = verify(doc)
        except ValueError as exc:
            verified, reason = None, str(exc)
        else:
            reason = "the signature matches no accepted form of the document"
        if verified is None:
            self.limiter.record_failure(client_ip, _key_name(spec.public_key))
            raise Invalid("signature_mismatch", f"signature verification failed: {reason}")
        return verified

    def _check_wallet(self, doc: dict[str, Any], now: datetime) -> str | None:
        """The address ``wallet_auth`` recovers, when present; a signed metadata.wallet_address must match."""
        wallet_auth = doc.get("wallet_auth")
        if wallet_auth is None:
            return None
        try:
            address = verify_wallet_auth(wallet_auth, doc.get("public_key"), now)
        except WalletAuthInvalid as exc:
            raise Invalid(f"wallet_auth_invalid:{exc.reason}", f"wallet_auth refused: {exc}") from None
        claimed = (doc.get("metadata") or {}).get("wallet_address")
        if isinstance(claimed, str) and claimed.lower() != address:
            raise Invalid("wallet_auth_invalid:address_mismatch",
                          f"metadata.wallet_address {claimed} is not the wallet that authorised the key ({address})")
        return address

    # ------------------------------------------------------------------ storing

    def _accept(self, submission: Submission, raw: bytes, idempotency_key: str | None) -> Accepted:
        accepted, written = self._store(submission, raw, idempotency_key)
        if written is not None:
            message, event = written
            self.fast_path.add(message, [event])
            log.info("job accepted", extra={"job_id": accepted.job_id, "signature_form": submission.verified.form.name})
        return accepted

    def _store(self, sub: Submission, raw: bytes, idempotency_key: str | None
               ) -> tuple[Accepted, tuple[OutboxMessage, dict] | None]:
        """Insert optimistically; a unique-key conflict is then explained in DESIGN's order."""
        now = utcnow()
        job_id = sub.signed_id or sub.offered_id or generated_job_id(
            str(sub.spec.document["benchmark"]["name"]), sub.spec.signature, now)
        for _ in range(4):
            try:
                return Accepted(job_id, True, now, sub.spec), self._insert(sub, job_id, raw, idempotency_key, now)
            except IntegrityError:
                known, id_taken = self._conflict(sub, job_id, idempotency_key)
                if known is not None:
                    return known, None
                if id_taken:
                    if job_id == sub.signed_id:
                        raise Conflict("job_exists", f"job {job_id} already exists", {"job_id": job_id})
                    job_id = generated_job_id(str(sub.spec.document["benchmark"]["name"]), sub.spec.signature, now)
                # otherwise the conflicting transaction rolled back in the meantime: try again
        raise Unavailable("service_unavailable", "could not store the job; try again")

    def _conflict(self, sub: Submission, job_id: str, idempotency_key: str | None) -> tuple[Accepted | None, bool]:
        """Which stored row the submission collides with: the same submission, an idempotency key,
        a nonce, or the job id (returned as ``id_taken``)."""
        identity = sub.verified.identity
        with self.db.session() as session:
            known = session.scalar(select(Job).where(Job.identity == identity))
            if known is not None:
                return Accepted(known.id, False, known.created_at, sub.spec), False
            if idempotency_key is not None:
                seen = session.get(IdempotencyKey, _scoped(sub.public_key, idempotency_key))
                if seen is not None:
                    raise Conflict("idempotency_key_reused",
                                   "this Idempotency-Key was used with a different signed JobSpec",
                                   {"job_id": seen.job_id})
            replay = session.scalar(
                select(Nonce.job_id).where(Nonce.public_key == sub.public_key, Nonce.nonce == sub.spec.nonce)
            )
            if replay is not None:
                raise Invalid("replay_detected", "this nonce was already used with this key")
            return None, session.get(Job, job_id) is not None

    def _insert(self, sub: Submission, job_id: str, raw: bytes, idempotency_key: str | None,
                now: datetime) -> tuple[OutboxMessage, dict]:
        """Job, nonce, idempotency key, the job's first event and the outbox row, written together
        (one statement on Postgres); returns the row to publish and the event to fan out."""
        identity = sub.verified.identity
        queued, event = first_event(job_id, "job.queued",
                                    {"status": JobStatus.QUEUED, "submitter": sub.wallet or sub.public_key}, now)
        run_job, message = new_message(RUN_JOB, JOBS_QUEUE, [job_id], trace_headers())  # the request's trace
        writes = [
            Write(INSERT_JOB, {
                "job_id": job_id, "job_status": JobStatus.QUEUED, "job_raw_body": raw.decode("utf-8"),
                "job_spec": {**sub.spec.document, "id": job_id}, "job_public_key": sub.public_key,
                "job_created_at": now, "job_updated_at": now, "job_signed_spec": sub.signed_text,
                "job_signature_form": sub.verified.form.name, "job_identity": identity,
                "job_submitter_wallet": sub.wallet, "job_requested": sub.requested, "job_generation": 1,
                "job_event_seq": 1}),
            nonce_write(self.settings, sub.public_key, sub.spec.nonce, job_id, now),
            *([Write(INSERT_IDEMPOTENCY_KEY, {
                "key_key": _scoped(sub.public_key, idempotency_key), "key_identity": identity, "key_job_id": job_id,
                "key_created_at": now})] if idempotency_key is not None else []),
            queued, run_job,
        ]
        *_, event["id"], message_id = self.db.write_together(writes)
        return OutboxMessage(id=message_id, **message), event


CROSS_REGION_FIELDS = {"jobspec", "target_regions", "min_regions", "min_success_rate", "enable_analysis"}


def _requested(wrapper: dict[str, Any]) -> dict[str, Any]:
    """The wrapper's unsigned values, type-checked, recorded beside the verdict (never used by it)."""
    targets = wrapper.get("target_regions")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(r, str) and r for r in targets)
                                or len(targets) > 16):
        raise ValidationError("target_regions must be an array of region names", "target_regions")
    min_regions, rate, analysis = (wrapper.get(k) for k in ("min_regions", "min_success_rate", "enable_analysis"))
    if min_regions is not None and (isinstance(min_regions, bool) or not isinstance(min_regions, int)
                                    or not 0 <= min_regions <= 16):
        raise ValidationError("min_regions must be an integer from 0 to 16", "min_regions")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise ValidationError("min_success_rate must be a number from 0 to 1", "min_success_rate")
    if analysis is not None and not isinstance(analysis, bool):
        raise ValidationError("enable_analysis must be true or false", "enable_analysis")
    return {"target_regions": targets, "min_regions": min_regions, "min_success_rate": rate,
            "enable_analysis": analysis}


def _scoped(public_key: str, idempotency_key: str) -> str:
    """Idempotency keys belong to the submitting key: another key holder's key never collides."""
    return f"{public_key}:{idempotency_key}"


def _key_name(public_key: str) -> str:
    """A key's one spelling for counters (its canonical base64), or the text when it is no key at all."""
    try:
        return canonical_public_key(public_key)
    except ValueError:
        return public_key
