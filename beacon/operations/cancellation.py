"""Who may cancel a job: an operator or admin token, or a request signed by the job's own key.

A signed cancel body is ``{"action": "cancel", "job_id", "nonce", "timestamp", "reason"?,
"public_key", "signature"}``; it is checked as every signed job request is
(``beacon.operations.signed_requests``): the key must be the job's and trusted now, the timestamp
inside the ingest window, and the nonce unused. Either way the body may carry a ``reason``: a
string of at most ``MAX_REASON_CHARS`` characters.
"""

from __future__ import annotations

from typing import Any

from beacon.db import Database
from beacon.errors import Invalid
from beacon.ingest.trust import TrustStore
from beacon.models import Job
from beacon.operations.access import Actor
from beacon.operations.signed_requests import authorize_job_action
from beacon.settings import Settings

MAX_REASON_CHARS = 1000


def authorize_cancel(settings: Settings, db: Database, trust: TrustStore, wallet_allowlist: frozenset[str],
                     job: Job, authorization: str | None, body: Any) -> Actor:
    """Who is cancelling: an operator (or admin) token, or the job's own key; raises otherwise."""
    return authorize_job_action(settings, db, trust, wallet_allowlist, job, authorization, body, "cancel")


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
