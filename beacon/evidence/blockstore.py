"""Content-addressed block stores and reading a UnixFS file back out of one.

Blocks are keyed by their canonical CIDv0 string. On Postgres they live in the ``blocks`` table
(written in the caller's transaction); in the embedded default, one file per block under
``<data dir>/blocks``, named by that string and nothing else. Every CID that reaches a store has
been through :func:`beacon.evidence.cid.parse_cid`, so no request text ever becomes a path.

:func:`read_file` reassembles a file from its root CID and checks every block against its CID.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Protocol

from sqlalchemy.orm import Session

from beacon.db import Database, insert_ignore
from beacon.evidence.cid import CODEC_DAG_PB, Block, parse_cid, read_file_node
from beacon.models import StoredBlock


class BlockMissing(LookupError):
    """A block of the requested DAG is not in the store."""


class BlockCorrupt(ValueError):
    """A stored block does not hash to its CID, or is not a UnixFS file node."""


def block_key(cid: str) -> str:
    """The store key of a dag-pb CID (v0 or v1): its canonical CIDv0. ValueError when malformed."""
    parsed = parse_cid(cid)
    if parsed.codec != CODEC_DAG_PB:
        raise BlockMissing(f"{cid} is a raw-codec CID; this store holds dag-pb blocks only")
    return parsed.v0


class BlockStore(Protocol):
    def put(self, session: Session, blocks: Iterable[Block]) -> None: ...

    def get(self, key: str) -> bytes | None: ...


class SqlBlockStore:
    """Blocks in the ``blocks`` table; ``put`` joins the caller's transaction."""

    def __init__(self, db: Database):
        self.db = db

    def put(self, session: Session, blocks: Iterable[Block]) -> None:
        rows = [{"cid": block.cid, "data": block.data} for block in blocks]
        if rows:
            session.execute(insert_ignore(session, StoredBlock, "cid"), rows)

    def get(self, key: str) -> bytes | None:
        with self.db.session() as session:
            block = session.get(StoredBlock, block_key(key))
            return None if block is None else block.data


class DirBlockStore:
    """One file per block, ``<root>/<2 characters of the CID>/<CID>``, written atomically."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        canonical = block_key(key)
        return self.root / canonical[-3:-1] / canonical

    def put(self, session: Session, blocks: Iterable[Block]) -> None:
        for block in blocks:
            path = self._path(block.cid)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            tmp.write_bytes(block.data)
            os.replace(tmp, path)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None


def block_store(db: Database, data_dir: Path) -> BlockStore:
    """The Postgres store on Postgres, the directory store in the embedded default."""
    return SqlBlockStore(db) if db.is_postgres else DirBlockStore(data_dir / "blocks")


def _verified(store: BlockStore, key: str) -> bytes:
    data = store.get(key)
    if data is None:
        raise BlockMissing(f"block {key} is not in the store")
    if hashlib.sha256(data).digest() != parse_cid(key).digest:
        raise BlockCorrupt(f"block {key} does not hash to its CID")
    return data


def read_file(store: BlockStore, cid: str) -> bytes:
    """The bytes of the UnixFS file with root ``cid``, every block checked against its CID.

    Raises ValueError for a malformed CID, BlockMissing when the root (or a child) is absent and
    BlockCorrupt when a block does not match its CID or is not a file node.
    """
    pending = [block_key(cid)]
    parts: list[bytes] = []
    while pending:
        key = pending.pop()
        block = _verified(store, key)
        try:
            children, data = read_file_node(block)
        except ValueError as exc:
            raise BlockCorrupt(f"block {key}: {exc}") from None
        parts.append(data)
        pending.extend(reversed(children))
    return b"".join(parts)
