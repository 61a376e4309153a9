"""Who may cancel a job: an operator or admin token, or a request signed by the job's own key.

A signed cancel body is ``{"action": "cancel", "job_id", "timestamp", "public_key",
"signature"}``, signed like a JobSpec (canonical JSON with ``signature`` and ``public_key``
blank), with a timestamp inside the ingest window. Either way the body may carry a ``reason``:
a string of at most ``MAX_REASON_CHARS`` characters.
"""

from __future__ import annotations

from typing import Any

from beacon.crypto.signing import verify_document
from beacon.errors import Forbidden, Invalid, Unauthorized
from beacon.ingest.ingestor import check_timestamp_window
from beacon.models import Job
from beacon.operations.access import Actor, bearer_token, require_role
from beacon.settings import Settings

CANCEL_FIELDS = {"action", "job_id", "timestamp", "reason", "public_key", "signature"}
MAX_REASON_CHARS = 1000


def authorize_cancel(settings: Settings, job: Job, authorization: str | None, body: Any) -> Actor:
    """Who is cancelling: an operator (or admin) token, or the job's own key; raises otherwise."""
    token = bearer_token(authorization)
    if token is not None:
        return Actor.for_role(require_role(settings, authorization, "operator"), token)
    if not isinstance(body, dict) or not body.get("signature"):
        raise Unauthorized("unauthorized", "cancel needs an operator token or a body signed by the job's key")
    unknown = sorted(set(body) - CANCEL_FIELDS)
    if unknown:
        raise Invalid("validation_error", f"unknown field {unknown[0]} in the cancel request",
                       {"field": unknown[0]})
    if body.get("action") != "cancel" or body.get("job_id") != job.id:
        raise Invalid("validation_error", "a signed cancel must say action 'cancel' and this job_id",
                       {"field": "job_id"})
    try:
        form = verify_document(body)
    except ValueError as exc:
        raise Unauthorized("unauthorized", f"cancel signature invalid: {exc}") from None
    if form != "current":
        raise Unauthorized("unauthorized", "cancel signature does not verify")
    if body.get("public_key") != job.public_key:
        raise Forbidden("forbidden", "only the key that submitted the job may cancel it")
    check_timestamp_window(settings, body.get("timestamp"))
    return Actor.for_key(job.public_key)


def cancel_reason(body: Any, actor: Actor) -> str:
    """The stated reason of an authorised cancel (``actor`` names the default); 400 for a bad body."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise Invalid("validation_error", "the cancel body must be a JSON object, e.g. {\"reason\": \"...\"}")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS or "\x00" in reason):
        raise Invalid("validation_error",
                      f"reason must be a string of at most {MAX_REASON_CHARS} characters, without U+0000",
                       {"field": "reason"})
    return reason or f"cancelled by {actor.kind}"
