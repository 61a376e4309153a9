"""The invariants every fault case checks, read straight from the database.

The transparency log is recomputed here with :mod:`hashlib` per RFC 6962 (leaf hash
``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``, split at the largest
power of two below n), independently of ``beacon.evidence.merkle``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import create_engine, text

TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Check:
    invariant: str
    ok: bool
    detail: str = ""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def tree_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + tree_root(leaves[:split]) + tree_root(leaves[split:])).digest()


class Reader:
    """Plain SQL on its own engine (no beacon code between the test and the rows)."""

    def __init__(self, url: str):
        self.engine = create_engine(url, pool_pre_ping=True)

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def statuses(self, job_ids: list[str]) -> dict[str, str]:
        found = self.rows("SELECT id, status FROM jobs WHERE id = ANY(:ids)", ids=list(job_ids))
        return {row.id: row.status for row in found}

    def close(self) -> None:
        self.engine.dispose()


def unit_rows(reader: Reader, jobs: dict[str, int]) -> Check:
    bad = []
    for job_id, expected in jobs.items():
        rows = reader.rows("SELECT region, model_id, question_id, status FROM executions WHERE job_id = :j", j=job_id)
        distinct = {(r.region, r.model_id, r.question_id) for r in rows}
        still_open = [r for r in rows if r.status in ("pending", "running")]
        if len(rows) != expected or len(distinct) != expected or still_open:
            bad.append(f"{job_id}: {len(rows)} rows, {len(distinct)} distinct, {len(still_open)} open, {expected} expected")
    return Check("one_execution_row_per_unit", not bad, "; ".join(bad[:5]))


def evidence(reader: Reader, jobs: dict[str, int]) -> Check:
    bad = []
    for job_id, status in reader.statuses(list(jobs)).items():
        bundles = reader.rows("SELECT count(*) AS n FROM bundles WHERE job_id = :j", j=job_id)[0].n
        entries = reader.rows("SELECT count(*) AS n FROM transparency_entries WHERE job_id = :j", j=job_id)[0].n
        wanted = 1 if status in ("completed", "failed") else 0
        if bundles != wanted or entries != wanted:
            bad.append(f"{job_id} ({status}): {bundles} bundles, {entries} log entries")
    return Check("one_bundle_and_log_entry_per_finalised_job", not bad, "; ".join(bad[:5]))


def outbox(reader: Reader) -> Check:
    left = reader.rows("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")[0].n
    return Check("outbox_drained", left == 0, f"{left} unpublished" if left else "")


def log_gapless(reader: Reader) -> Check:
    entries = reader.rows("SELECT leaf_index, entry, leaf_hash, tree_head FROM transparency_entries ORDER BY leaf_index")
    head = reader.rows("SELECT size FROM transparency_head WHERE id = 1")
    size = head[0].size if head else 0
    problems = []
    if [e.leaf_index for e in entries] != list(range(len(entries))):
        problems.append("leaf indices are not 0..n-1")
    if size != len(entries):
        problems.append(f"head size {size} but {len(entries)} entries")
    leaves = []
    for e in entries:
        computed = leaf_hash(e.entry.encode())
        if computed != bytes(e.leaf_hash):
            problems.append(f"leaf {e.leaf_index}: stored hash differs from SHA-256(0x00 || entry)")
        leaves.append(computed)
    for e in entries:  # every signed head names the root of the log up to its entry
        signed = json.loads(e.tree_head)
        if signed["tree_size"] != e.leaf_index + 1 or signed["root_hash"] != tree_root(leaves[:e.leaf_index + 1]).hex():
            problems.append(f"signed head of size {e.leaf_index + 1} does not match the recomputed root")
            break
    return Check("log_gapless", not problems, "; ".join(problems[:3]) or f"{len(entries)} leaves")


def check_all(reader: Reader, jobs: dict[str, int]) -> list[Check]:
    return [unit_rows(reader, jobs), evidence(reader, jobs), outbox(reader), log_gapless(reader)]
