"""Execution receipts: each execution record, signed by the runner's key at finalisation.

A receipt is the execution resource (``beacon.resources.executions.execution_resource``: with the
answer's bias score, the hybrid router's provider, region flag and receipt, and an OpenAI-compatible
endpoint's finish reason and token usage) plus ``kind``,
``receipt_version``, ``runner_key_id``, ``issued_at`` and ``generation`` (the job generation
sealed), signed over its canonical JSON (the
JobSpec signing form: ``signature`` and ``public_key`` blanked). The exact canonical text goes
into the job's bundle and into the ``receipts`` table, so the API serves what was bundled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import delete
from sqlalchemy.orm import Session

from beacon.crypto.canonical import canonical_json
from beacon.errors import InvalidState
from beacon.evidence.identity import RECEIPT_KIND, RunnerIdentity
from beacon.models import Execution, Receipt
from beacon.resources.executions import execution_resource, get_execution
from beacon.timeutil import isoformat

RECEIPT_VERSION = 1


def build_receipt(identity: RunnerIdentity, execution: Execution, issued_at: datetime,
                  generation: int = 1) -> dict[str, Any]:
    """``generation``: the job generation being sealed (the unit's own run is ``ran_in_generation``)."""
    doc = {
        **execution_resource(execution),
        "kind": RECEIPT_KIND,
        "receipt_version": RECEIPT_VERSION,
        "runner_key_id": identity.key_id,
        "issued_at": isoformat(issued_at),
        "generation": generation,
    }
    return identity.sign(doc)


def store_receipts(session: Session, job_id: str, bundle_cid: str, receipts: Iterable[dict[str, Any]],
                   replace: bool = True) -> None:
    """Keep the job's receipts as bundled: a later generation's receipts replace the earlier ones
    here (which stay, signed, in the earlier generation's bundle). ``replace=False``: the job has
    none stored yet (its first bundle), so there is nothing to delete."""
    if replace:
        session.execute(delete(Receipt).where(Receipt.job_id == job_id))
    rows = [{"execution_id": doc["id"], "job_id": job_id, "bundle_cid": bundle_cid,
             "document": canonical_json(doc).decode()} for doc in receipts]
    if rows:  # one Core INSERT of every row: no ORM objects to track and flush
        session.execute(Receipt.__table__.insert(), rows)


def receipt_text(session: Session, execution_id: str) -> str:
    """The canonical JSON of an execution's receipt; 404 unknown execution, 409 not finalised yet."""
    execution = get_execution(session, execution_id)
    receipt = session.get(Receipt, execution.id)
    if receipt is None:
        raise InvalidState("invalid_state", f"execution {execution.id} has no receipt yet: its job is not finalised",
                       {"status": execution.status})
    return receipt.document
