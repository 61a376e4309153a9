"""Who may cancel a job: an operator or admin token, or a request signed by the job's own key.

A signed cancel body is ``{"action": "cancel", "job_id", "nonce", "timestamp", "reason"?,
"public_key", "signature"}``; it is checked as every signed job request is
(``beacon.operations.signed_requests``): the key must be the job's and trusted now, the timestamp
inside the ingest window, and the nonce unused.
"""

from __future__ import annotations

from typing import Any

from beacon.db import Database
from beacon.ingest.trust import TrustStore
from beacon.models import Job
from beacon.operations.access import Actor
from beacon.operations.signed_requests import authorize_job_action
from beacon.settings import Settings


def authorize_cancel(settings: Settings, db: Database, trust: TrustStore, wallet_allowlist: frozenset[str],
                     job: Job, authorization: str | None, body: Any) -> Actor:
    """Who is cancelling: an operator (or admin) token, or the job's own key; raises otherwise."""
    return authorize_job_action(settings, db, trust, wallet_allowlist, job, authorization, body, "cancel")
