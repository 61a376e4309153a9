"""Who may act on a job: an operator (or admin) token, or a request signed by the job's own key.

A signed request body is ``{"action", "job_id", "nonce", "timestamp", "public_key", "signature",
…the action's own fields}``, signed like a JobSpec (any accepted form covering every field; the
runner's ``current`` form is canonical JSON with ``signature`` and ``public_key`` blank). It is
checked in this order: known fields, action and job id, signature, the key is the job's (compared
by its bytes), the key is trusted *now* (the trusted keys file; or, for a key the file does not
know, the wallet that authorised it at submission is still on the wallet allowlist), timestamp
window, and the nonce, which is single-use per key in the ``nonces`` table (the one JobSpecs use):
a replayed body answers ``replay_detected``. The nonce is used up once the checks before it pass,
whatever the action then finds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from beacon.crypto.signing import canonical_public_key, verify
from beacon.db import Database
from beacon.errors import Forbidden, Invalid, Unauthorized, ValidationError
from beacon.ingest.ingestor import check_timestamp_window, nonce_write
from beacon.ingest.trust import TrustStore
from beacon.models import Job
from beacon.operations.access import Actor, bearer_token, require_role
from beacon.settings import Settings
from beacon.timeutil import utcnow

SIGNED_FIELDS = frozenset({"action", "job_id", "nonce", "timestamp", "public_key", "signature"})
#: Each action's own optional fields.
ACTION_FIELDS = {"cancel": frozenset({"reason"}), "retry": frozenset({"execution_id", "reason"})}
MAX_NONCE_LENGTH = 512


def check_current_trust(trust: TrustStore, wallet_allowlist: frozenset[str], job: Job, now: datetime) -> None:
    """The job's key may act now: trusted by the file, or unknown to it with the job's submitting
    wallet still allowlisted. Raises ``trust_violation:<reason>`` otherwise."""
    try:
        trust.check(job.public_key, now)
    except Invalid as refused:
        allowed = (refused.code == "trust_violation:unknown" and job.submitter_wallet is not None
                   and job.submitter_wallet.lower() in wallet_allowlist)
        if not allowed:
            raise


def consume_nonce(db: Database, settings: Settings, public_key: str, nonce: str, job_id: str, now: datetime) -> None:
    """Record (key, nonce) once; a second use is ``replay_detected``."""
    try:
        db.write_together([nonce_write(settings, public_key, nonce, job_id, now)])
    except IntegrityError:
        raise Invalid("replay_detected", "this nonce was already used with this key") from None


def authorize_job_action(settings: Settings, db: Database, trust: TrustStore, wallet_allowlist: frozenset[str],
                         job: Job, authorization: str | None, body: Any, action: str) -> Actor:
    """Who is acting on ``job``: an operator (or admin) token, or the job's own key; raises otherwise."""
    token = bearer_token(authorization)
    if token is not None:
        return Actor.for_role(require_role(settings, authorization, "operator"), token)
    if not isinstance(body, dict) or not body.get("signature"):
        raise Unauthorized("unauthorized", f"{action} needs an operator token or a body signed by the job's key")
    unknown = sorted(set(body) - SIGNED_FIELDS - ACTION_FIELDS[action])
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]} in the {action} request", unknown[0])
    if body.get("action") != action or body.get("job_id") != job.id:
        raise ValidationError(f"a signed {action} must say action {action!r} and this job_id", "job_id")
    nonce = body.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise ValidationError(f"a signed {action} needs a nonce of 1 to {MAX_NONCE_LENGTH} characters", "nonce",
                              missing=nonce is None)
    try:
        verified = verify(body)
    except ValueError as exc:
        raise Unauthorized("unauthorized", f"{action} signature invalid: {exc}") from None
    if verified is None:
        raise Unauthorized("unauthorized", f"{action} signature does not verify")
    if canonical_public_key(body["public_key"]) != canonical_public_key(job.public_key):
        raise Forbidden("forbidden", f"only the key that submitted the job may {action} it")
    now = utcnow()
    check_current_trust(trust, wallet_allowlist, job, now)
    check_timestamp_window(settings, body.get("timestamp"))
    consume_nonce(db, settings, canonical_public_key(job.public_key), nonce, job.id, now)
    return Actor.for_key(job.public_key)
