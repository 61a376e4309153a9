"""The transparency log: an append-only RFC 6962 Merkle log of finalised jobs, in the database.

* One entry per finalised job generation: ``{job_id, bundle_cid, bundle_sha256, status, logged_at,
  generation}`` (entries logged before generations existed have no ``generation``: it was 1); the
  leaf's bytes are the entry's canonical JSON, its hash ``merkle.leaf_hash`` of them.
* Appends run inside the finalisation transaction and serialise on the single log-head row
  (``SELECT … FOR UPDATE`` on Postgres; SQLite's write lock does the same), so indices are
  gapless and ordered: the new index is the previous size.
* The head row keeps the roots of the log's perfect subtrees (at most log2 n hashes), so an
  append computes the new root in O(log n) and signs a tree head ``{tree_size, root_hash,
  timestamp, key_id}`` with the runner key. Each entry row keeps the signed head of the log it
  completed, so every tree size has a signed head.
* Proofs load the leaf hashes in order (O(n) per request) and use ``beacon.evidence.merkle``.
  :func:`verify_proof_document` checks what the proof endpoints return, offline.

:func:`beacon.messaging.events.publish_event` fans ``transparency.appended`` out to live clients.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from beacon.crypto.canonical import canonical_json, loads
from beacon.db import insert_ignore
from beacon.errors import Corrupt, ValidationError
from beacon.evidence import merkle
from beacon.evidence.identity import TREE_HEAD_KIND, RunnerIdentity, verify_runner_document
from beacon.ids import bigint
from beacon.models import TransparencyEntry, TransparencyHead
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

INCLUSION_KIND = "inclusion_proof"
CONSISTENCY_KIND = "consistency_proof"


# --------------------------------------------------------------------------- appending


def _push(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The perfect-subtree roots after appending ``leaf`` to a log of ``size`` leaves."""
    nodes, carry = list(frontier), leaf
    while size & 1:
        carry = merkle.node_hash(nodes.pop(), carry)
        size >>= 1
    nodes.append(carry)
    return nodes


def frontier_root(frontier: list[bytes]) -> bytes:
    """RFC 6962 root of a log given its perfect-subtree roots, largest first."""
    if not frontier:
        return merkle.EMPTY_ROOT
    root = frontier[-1]
    for node in reversed(frontier[:-1]):
        root = merkle.node_hash(node, root)
    return root


_HEAD = TransparencyHead.__table__
_LOCK_HEAD = select(_HEAD.c.size, _HEAD.c.frontier).where(_HEAD.c.id == 1).with_for_update()
_ENTRIES = TransparencyEntry.__table__


def _locked_head(session: Session) -> tuple[int, list[str]]:
    """The log's size and frontier, its head row locked until the transaction ends (the row is
    created on the first append)."""
    head = session.execute(_LOCK_HEAD).one_or_none()
    if head is None:
        session.execute(insert_ignore(session, TransparencyHead, "id").values(id=1, size=0, frontier=[], updated_at=utcnow()))
        head = session.execute(_LOCK_HEAD).one()
    return head.size, head.frontier


@dataclass(frozen=True)
class Appended:
    leaf_index: int
    tree_size: int
    root_hash: str
    entry: dict[str, Any]


def append(session: Session, identity: RunnerIdentity, job_id: str, bundle_cid: str, bundle_sha256: str,
           status: str, generation: int = 1) -> Appended:
    """Append a finalised job generation's entry in the caller's transaction (which then holds the
    log lock). Core statements: the caller's pending ORM changes are flushed first, so the lock is
    taken as late as it can be."""
    session.flush()
    index, frontier_hex = _locked_head(session)
    now = utcnow()
    entry = {"job_id": job_id, "bundle_cid": bundle_cid, "bundle_sha256": bundle_sha256, "status": status,
             "logged_at": isoformat(now), "generation": generation}
    entry_bytes = canonical_json(entry)
    leaf = merkle.leaf_hash(entry_bytes)
    frontier = _push([bytes.fromhex(h) for h in frontier_hex], index, leaf)
    root = frontier_root(frontier)
    signed_head = identity.sign({"kind": TREE_HEAD_KIND, "tree_size": index + 1, "root_hash": root.hex(),
                                 "timestamp": isoformat(now), "key_id": identity.key_id})
    session.execute(_ENTRIES.insert().values(
        leaf_index=index, job_id=job_id, bundle_cid=bundle_cid, entry=entry_bytes.decode(), leaf_hash=leaf,
        tree_head=canonical_json(signed_head).decode(), created_at=now, generation=generation))
    session.execute(_HEAD.update().where(_HEAD.c.id == 1).values(
        size=index + 1, frontier=[node.hex() for node in frontier], updated_at=now))
    return Appended(index, index + 1, root.hex(), entry)


# --------------------------------------------------------------------------- reading


def log_size(session: Session) -> int:
    head = session.get(TransparencyHead, 1)
    return head.size if head else 0


def stored_tree_head(session: Session, tree_size: int) -> dict[str, Any]:
    """The signed head stored when the log reached ``tree_size`` (> 0) leaves."""
    row = session.get(TransparencyEntry, tree_size - 1)
    if row is None:
        raise Corrupt("evidence_corrupt", f"the transparency log has no entry {tree_size - 1}")
    return loads(row.tree_head)


def current_tree_head(session: Session, identity: RunnerIdentity) -> dict[str, Any]:
    """The signed head of the whole log; the empty log's is signed on the spot."""
    size = log_size(session)
    if size:
        return stored_tree_head(session, size)
    return identity.sign({"kind": TREE_HEAD_KIND, "tree_size": 0, "root_hash": merkle.EMPTY_ROOT.hex(),
                          "timestamp": isoformat(utcnow()), "key_id": identity.key_id})


def _leaf_hashes(session: Session, tree_size: int) -> list[bytes]:
    hashes = list(session.scalars(
        select(TransparencyEntry.leaf_hash).where(TransparencyEntry.leaf_index < tree_size)
        .order_by(TransparencyEntry.leaf_index)
    ))
    if len(hashes) != tree_size:
        raise Corrupt("evidence_corrupt", f"the transparency log has {len(hashes)} of {tree_size} leaves")
    return [bytes(h) for h in hashes]


def parse_size(raw: str | None, name: str, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise ValidationError(f"{name} is required", name, missing=True)
        return default
    size = bigint(raw)  # plain ASCII digits below 2**63: "²" passes str.isdigit but not int()
    if size is None:
        raise ValidationError(f"{name} must be a non-negative integer below 2**63, got {raw[:32]!r}", name)
    return size


def inclusion(session: Session, index: int, tree_size: int | None = None) -> dict[str, Any]:
    """Inclusion proof of leaf ``index`` in the log of ``tree_size`` leaves (default: all)."""
    size = log_size(session)
    tree_size = size if tree_size is None else tree_size
    if not 0 < tree_size <= size:
        raise ValidationError(f"tree_size must be from 1 to the log size {size}, got {tree_size}", "tree_size")
    if not 0 <= index < tree_size:
        raise ValidationError(f"index must be from 0 to {tree_size - 1}, got {index}", "index")
    hashes = _leaf_hashes(session, tree_size)
    head = stored_tree_head(session, tree_size)
    path = merkle.inclusion_proof(hashes, index)
    if not merkle.verify_inclusion(hashes[index], index, tree_size, path, bytes.fromhex(head["root_hash"])):
        raise Corrupt("evidence_corrupt", f"the stored tree head of size {tree_size} does not match the leaves")
    entry = session.get(TransparencyEntry, index)
    return {
        "kind": INCLUSION_KIND,
        "leaf_index": index,
        "tree_size": tree_size,
        "entry": loads(entry.entry),
        "leaf_hash": hashes[index].hex(),
        "audit_path": [node.hex() for node in path],
        "root_hash": head["root_hash"],
        "tree_head": head,
    }


def consistency(session: Session, first: int, second: int) -> dict[str, Any]:
    """Consistency proof that the log of ``first`` leaves is a prefix of the log of ``second``."""
    size = log_size(session)
    if not 0 < second <= size:
        raise ValidationError(f"second must be from 1 to the log size {size}, got {second}", "second")
    if not 0 <= first <= second:
        raise ValidationError(f"first must be from 0 to second ({second}), got {first}", "first")
    hashes = _leaf_hashes(session, second)
    second_head = stored_tree_head(session, second)
    first_head = stored_tree_head(session, first) if first else None
    return {
        "kind": CONSISTENCY_KIND,
        "first": first,
        "second": second,
        "first_root": first_head["root_hash"] if first_head else merkle.EMPTY_ROOT.hex(),
        "second_root": second_head["root_hash"],
        "proof": [node.hex() for node in merkle.consistency_proof(hashes, first, second)],
        "first_tree_head": first_head,
        "second_tree_head": second_head,
    }


# --------------------------------------------------------------------------- offline verification


def _hash(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != merkle.HASH_SIZE:
        raise ValueError(f"{name} must be a {merkle.HASH_SIZE}-byte hash in hex")
    return raw


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _check_head(head: Any, size: int, root: bytes, public_key: str | None, label: str) -> str:
    try:
        kid = verify_runner_document(head, TREE_HEAD_KIND, public_key)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    if head.get("tree_size") != size or head.get("root_hash") != root.hex():
        raise ValueError(f"{label} is for size {head.get('tree_size')} root {head.get('root_hash')}, "
                         f"not size {size} root {root.hex()}")
    return kid


def verify_proof_document(doc: Any, public_key: str | None = None) -> str:
    """Check an inclusion or consistency proof as the API returns it; a summary, or ValueError."""
    if not isinstance(doc, dict):
        raise ValueError("a proof must be a JSON object")
    if doc.get("kind") == INCLUSION_KIND:
        index, size, root = _int(doc, "leaf_index"), _int(doc, "tree_size"), _hash(doc, "root_hash")
        if not isinstance(doc.get("entry"), dict):
            raise ValueError("entry must be a JSON object")
        leaf = merkle.leaf_hash(canonical_json(doc["entry"]))
        if not hmac.compare_digest(leaf, _hash(doc, "leaf_hash")):
            raise ValueError("leaf_hash is not the hash of entry")
        path = [_hash({"node": node}, "node") for node in doc.get("audit_path") or []]
        if not merkle.verify_inclusion(leaf, index, size, path, root):
            raise ValueError(f"the audit path does not lead from leaf {index} to the root of size {size}")
        kid = _check_head(doc.get("tree_head"), size, root, public_key, "tree_head")
        return f"entry {index} is in the log of size {size} (tree head signed by key {kid})"
    if doc.get("kind") == CONSISTENCY_KIND:
        first, second = _int(doc, "first"), _int(doc, "second")
        first_root, second_root = _hash(doc, "first_root"), _hash(doc, "second_root")
        proof = [_hash({"node": node}, "node") for node in doc.get("proof") or []]
        if not merkle.verify_consistency(first, second, first_root, second_root, proof):
            raise ValueError(f"the proof does not show size {first} is a prefix of size {second}")
        kid = _check_head(doc.get("second_tree_head"), second, second_root, public_key, "second_tree_head")
        if first:
            _check_head(doc.get("first_tree_head"), first, first_root, public_key, "first_tree_head")
        return f"the log of size {first} is a prefix of the log of size {second} (tree heads signed by key {kid})"
    raise ValueError(f"unknown proof kind {doc.get('kind')!r} (expected {INCLUSION_KIND} or {CONSISTENCY_KIND})")
