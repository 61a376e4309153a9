"""Evidence bundles: sealed at finalisation, stored by CID, pinned to IPFS after commit.

``seal_job`` runs inside ``engine.finalize_job``'s transaction, once per job generation: it signs
every execution's receipt, builds the job's bundle (the verbatim signed JobSpec, the receipts, the
analysis, the runner's identity, the generation and the CID of the bundle it supersedes; canonical
JSON signed by the runner key), computes its CIDv0/CIDv1 with
``beacon.evidence.cid``, writes its blocks to the block store, stores the bundle row and receipts, and
appends the transparency entry; the caller writes their ``bundle.stored`` and ``transparency.appended``
events in the same transaction. ``after_seal`` runs after commit: pinning when ``IPFS_API_URL`` is set. A bundle whose pin failed stays ``pending``
and ``retry_pins`` (beat) tries again with exponential backoff; a node that computes another CID
for the same bytes is recorded as ``mismatch`` and never pinned.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from beacon.crypto.canonical import canonical_json
from beacon.db import Database
from beacon.errors import Corrupt, DomainError, Invalid, not_found
from beacon.evidence import receipts, transparency
from beacon.evidence.blockstore import BlockCorrupt, BlockMissing, block_key, block_store, read_file
from beacon.evidence.cid import build_dag, cid_v0
from beacon.evidence.identity import BUNDLE_KIND, RunnerIdentity, runner_identity
from beacon.evidence.ipfs_rpc import IpfsError, IpfsRpc
from beacon.messaging.events import emit
from beacon.models import Bundle, Execution, Job
from beacon.settings import Settings
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

BUNDLE_VERSION = 1
_BUNDLES = Bundle.__table__


def bundle_bytes(identity: RunnerIdentity, job: Job, receipt_docs: list[dict[str, Any]], sealed_at: datetime,
                 supersedes: str | None = None) -> bytes:
    """The signed bundle's canonical JSON: the bytes whose CID is the bundle's CID.

    ``generation`` is the job generation sealed; ``supersedes`` names the CID of the bundle of the
    generation before (``None`` for the first), which stays stored and verifiable.
    """
    doc = {
        "kind": BUNDLE_KIND,
        "bundle_version": BUNDLE_VERSION,
        "job_id": job.id,
        "status": job.status,
        "status_reason": job.status_reason,
        "jobspec": job.raw_body,  # the verbatim request body
        "signature_form": job.signature_form,  # the form the submission's signature matched
        "signed_jobspec": job.signed_spec,  # what ran: the signed projection, in that form's serialisation
        "submitter_wallet": job.submitter_wallet,
        "requested": job.requested,  # the cross-region wrapper's unsigned values, never used by the verdict
        "receipts": receipt_docs,
        "analysis": job.analysis,
        "runner": identity.describe(),
        "sealed_at": isoformat(sealed_at),
        "generation": job.generation or 1,
        "supersedes": supersedes,
    }
    return canonical_json(identity.sign(doc))


@dataclass(frozen=True)
class Sealed:
    job_id: str
    status: str
    cid: str
    cid_v1: str
    sha256: str
    appended: transparency.Appended
    events: list[tuple[str, dict]]  # bundle.stored and transparency.appended, for the caller's transaction


def seal_job(session: Session, db: Database, settings: Settings, job: Job, units: Iterable[Execution],
             now: datetime) -> Sealed:
    """Receipts, bundle, blocks and the log entry of a job being finalised, in the caller's transaction;
    their events (``Sealed.events``) are the caller's to write with its own."""
    identity = runner_identity(settings)
    generation = job.generation or 1
    previous = job_bundle(session, job.id)
    supersedes = previous.cid if previous is not None and previous.generation < generation else None
    receipt_docs = [receipts.build_receipt(identity, unit, now, generation) for unit in sorted(units, key=lambda u: u.id)]
    data = bundle_bytes(identity, job, receipt_docs, now, supersedes)
    dag = build_dag(data)
    digest = hashlib.sha256(data).hexdigest()
    block_store(db, settings.data_dir).put(session, dag.blocks)
    if previous is None or session.get(Bundle, dag.root) is None:  # a job's first bundle is new (its id is in it)
        session.execute(_BUNDLES.insert().values(
            cid=dag.root, cid_v1=dag.root_v1, job_id=job.id, sha256=digest, size=len(data), created_at=now,
            pin_state="pending", pin_attempts=0, pin_next_attempt_at=now + timedelta(seconds=settings.pin_retry_base_seconds),
            generation=generation, supersedes=supersedes))
    receipts.store_receipts(session, job.id, dag.root, receipt_docs, replace=previous is not None)
    appended = transparency.append(session, identity, job.id, dag.root, digest, job.status, generation)
    events = [
        ("bundle.stored", {"bundle_cid": dag.root, "cid_v1": dag.root_v1, "sha256": digest, "size": len(data),
                           "generation": generation, "supersedes": supersedes}),
        ("transparency.appended", {"status": job.status, "bundle_cid": dag.root, "leaf_index": appended.leaf_index,
                                   "tree_size": appended.tree_size, "root_hash": appended.root_hash}),
    ]
    return Sealed(job.id, job.status, dag.root, dag.root_v1, digest, appended, events)


def after_seal(db: Database, settings: Settings, sealed: Sealed) -> None:
    """After commit (its ``bundle.stored`` and ``transparency.appended`` events committed with the
    seal): pin (failures are left to ``retry_pins``)."""
    if settings.ipfs_api_url:
        try:
            pin_bundle(db, settings, sealed.cid)
        except Exception:  # the job is committed; beat retries the pin
            log.exception("pinning failed unexpectedly", extra={"bundle_cid": sealed.cid})


# --------------------------------------------------------------------------- reading


def bundle_view(bundle: Bundle) -> dict[str, Any]:
    return {
        "cid": bundle.cid, "cid_v1": bundle.cid_v1, "job_id": bundle.job_id, "sha256": bundle.sha256,
        "size": bundle.size, "created_at": isoformat(bundle.created_at),
        "generation": bundle.generation, "supersedes": bundle.supersedes,
        "pin": {"state": bundle.pin_state, "attempts": bundle.pin_attempts, "error": bundle.pin_error,
                "next_attempt_at": isoformat(bundle.pin_next_attempt_at), "pinned_at": isoformat(bundle.pinned_at)},
    }


def job_bundle(session: Session, job_id: str) -> Bundle | None:
    """The job's latest bundle: the one of its latest sealed generation."""
    return session.scalars(
        select(Bundle).where(Bundle.job_id == job_id)
        .order_by(Bundle.generation.desc(), Bundle.created_at.desc()).limit(1)
    ).first()


def job_bundles(session: Session, job_id: str) -> list[Bundle]:
    """Every bundle of the job, first generation first."""
    return list(session.scalars(
        select(Bundle).where(Bundle.job_id == job_id).order_by(Bundle.generation, Bundle.created_at)))


def find_bundle(session: Session, cid: str) -> Bundle:
    """The bundle of a CID (v0 or v1); 400 malformed, 404 unknown."""
    try:
        key = block_key(cid)
    except ValueError as exc:
        raise Invalid("invalid_cid", str(exc)) from None
    except BlockMissing:
        raise not_found("bundle", cid) from None
    bundle = session.get(Bundle, key)
    if bundle is None:
        raise not_found("bundle", cid)
    return bundle


def verified_bytes(db: Database, settings: Settings, bundle: Bundle) -> bytes:
    """The bundle's bytes from the block store, re-checked against its CID and SHA-256."""
    try:
        data = read_file(block_store(db, settings.data_dir), bundle.cid)
    except (BlockMissing, BlockCorrupt) as exc:
        log.error("stored bundle unreadable", extra={"bundle_cid": bundle.cid, "error": str(exc)})
        raise Corrupt("evidence_corrupt", f"bundle {bundle.cid} cannot be read back intact: {exc}") from None
    if hashlib.sha256(data).hexdigest() != bundle.sha256 or cid_v0(data) != bundle.cid:
        log.error("stored bundle does not match its hash", extra={"bundle_cid": bundle.cid})
        raise Corrupt("evidence_corrupt", f"bundle {bundle.cid} does not match its recorded hash")
    return data


# --------------------------------------------------------------------------- pinning


def pin_backoff(settings: Settings, attempts: int) -> float:
    return min(settings.pin_retry_max_seconds, settings.pin_retry_base_seconds * 2 ** max(attempts - 1, 0))


def _record(db: Database, cid: str, **values: Any) -> None:
    with db.session() as session:
        moved = session.execute(update(Bundle).where(Bundle.cid == cid, Bundle.pin_state == "pending")
                                .values(**values).returning(Bundle.job_id)).all()
        for (job_id,) in moved if values.get("pin_state") == "pinned" else ():
            emit(session, job_id, "bundle.pinned", {"bundle_cid": cid, "pin_attempts": values.get("pin_attempts")})


def pin_bundle(db: Database, settings: Settings, cid: str, now: datetime | None = None) -> str:
    """Add the bundle to the IPFS node, check the node's CID equals ours, pin it. Returns the pin state."""
    now = now or utcnow()
    with db.session() as session:
        bundle = session.get(Bundle, cid)
        attempts = bundle.pin_attempts + 1
    node = IpfsRpc(settings.ipfs_api_url, settings.ipfs_timeout_seconds)
    try:
        data = verified_bytes(db, settings, bundle)
        node_cid = node.add(data)
        if node_cid != cid:
            error = f"the IPFS node computed {node_cid} for bundle {cid}; not pinned"
            log.error("IPFS CID mismatch", extra={"bundle_cid": cid, "node_cid": node_cid})
            _record(db, cid, pin_state="mismatch", pin_attempts=attempts, pin_error=error, pin_next_attempt_at=None)
            return "mismatch"
        node.pin(cid)
    except (IpfsError, DomainError) as exc:
        retry_at = now + timedelta(seconds=pin_backoff(settings, attempts))
        log.warning("IPFS pin failed; will retry", extra={"bundle_cid": cid, "error": str(exc),
                                                          "attempts": attempts, "retry_at": isoformat(retry_at)})
        _record(db, cid, pin_attempts=attempts, pin_error=str(exc), pin_next_attempt_at=retry_at)
        return "pending"
    _record(db, cid, pin_state="pinned", pin_attempts=attempts, pin_error=None, pin_next_attempt_at=None, pinned_at=now)
    log.info("bundle pinned", extra={"bundle_cid": cid, "attempts": attempts})
    return "pinned"


def retry_pins(db: Database, settings: Settings, now: datetime | None = None, limit: int = 20) -> dict[str, int]:
    """Pin the bundles whose retry is due (beat). Claims them first so concurrent runs do not overlap."""
    counts = {"pinned": 0, "pending": 0, "mismatch": 0}
    if not settings.ipfs_api_url:
        return counts
    now = now or utcnow()
    with db.session() as session:
        due = (
            select(Bundle.cid)
            .where(Bundle.pin_state == "pending",
                   or_(Bundle.pin_next_attempt_at.is_(None), Bundle.pin_next_attempt_at <= now))
            .order_by(Bundle.created_at).limit(limit)
        )
        if db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        cids = list(session.scalars(due))
        lease = now + timedelta(seconds=3 * settings.ipfs_timeout_seconds)
        session.execute(update(Bundle).where(Bundle.cid.in_(cids)).values(pin_next_attempt_at=lease))
    for cid in cids:
        counts[pin_bundle(db, settings, cid, now)] += 1
    return counts
