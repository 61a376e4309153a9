"""IPFS content identifiers, computed exactly as Kubo's ``ipfs add`` does by default.

The DAG is the one Kubo builds with its default settings for a CIDv0 add:

* the input is cut into fixed 262144-byte (256 KiB) chunks (the last may be short);
* every chunk becomes a dag-pb leaf whose Data is a UnixFS ``File`` message
  ``{Type: File, Data: chunk, filesize: len(chunk)}`` (no raw leaves);
* leaves are combined by the balanced layout, at most 174 links per node.  An
  intermediate node is a dag-pb node with UnixFS Data
  ``{Type: File, filesize: total, blocksizes: [...]}`` and one link per child,
  ``{Hash: child multihash, Name: "", Tsize: cumulative encoded size of the child's subtree}``;
* a single-chunk file is just its leaf; an empty file is the leaf of zero bytes
  (``QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH``).

Block hashes are sha2-256 multihashes.  The root is reported as a CIDv0 (base58btc
``Qm...``) and as the CIDv1 of the same DAG (codec dag-pb, multibase base32 lower
case without padding, ``bafybei...``).

Protobuf is written by hand.  dag-pb's canonical form puts the Links (field 2)
before the Data (field 1) in the serialized bytes; UnixFS ``blocksizes`` is a
non-packed repeated field (proto2), as go-unixfs writes it.

Public API::

    Block(cid, data)                                  # cid is the block's CIDv0 string
    Dag(root, size, blocks)                           # .root_v1 for the CIDv1
    build_dag(data) -> Dag                            # all blocks, in memory
    add_stream(fp, sink=None, keep_blocks=True) -> Dag
    add_file(path, sink=None, keep_blocks=True) -> Dag
    cid_v0(data) -> str, cid_v1(data) -> str          # root only, no blocks kept
    cid_v0_to_v1(cid) -> str
    parse_cid(text) -> Cid                            # ValueError on anything malformed
    read_file_node(block) -> (child CIDv0s, file bytes)  # decode one block of such a DAG
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "CODEC_DAG_PB",
    "CODEC_RAW",
    "Block",
    "Dag",
    "Cid",
    "build_dag",
    "add_stream",
    "add_file",
    "cid_v0",
    "cid_v1",
    "cid_v0_to_v1",
    "parse_cid",
    "read_file_node",
]

CHUNK_SIZE = 262144  # Kubo's default fixed-size chunker (size-262144)
MAX_LINKS = 174  # go-unixfs balanced layout: DefaultLinksPerBlock

CODEC_DAG_PB = 0x70
CODEC_RAW = 0x55
_SHA2_256 = 0x12
_SHA2_256_LEN = 32
_MH_PREFIX = bytes((_SHA2_256, _SHA2_256_LEN))

# UnixFS Data.DataType
_UNIXFS_FILE = 2


# --------------------------------------------------------------------------- varints


def _varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use it."""
    if n < 0:
        raise ValueError("varint must be non-negative")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a minimally encoded unsigned varint at ``pos``; returns (value, new_pos)."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
    if pos - start > 1 and buf[pos - 1] == 0:
        raise ValueError("varint is not minimally encoded")
    return value, pos


# --------------------------------------------------------------------------- multibase


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    chars = []
    while n:
        n, r = divmod(n, 58)
        chars.append(_B58_ALPHABET[r])
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(chars))


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58btc character {c!r}") from None
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError(f"invalid base32 data: {exc}") from None


# --------------------------------------------------------------------------- CIDs


def _v0_string(digest: bytes) -> str:
    return _b58encode(_MH_PREFIX + digest)


def _v1_string(digest: bytes, codec: int = CODEC_DAG_PB) -> str:
    return "b" + _b32encode(b"\x01" + _varint(codec) + _MH_PREFIX + digest)


_V0_RE = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}")
_V1_RE = re.compile(r"b[a-z2-7]+")
_MAX_CID_TEXT = 128


@dataclass(frozen=True)
class Cid:
    """A validated CID: sha2-256 multihash, codec dag-pb or raw, version 0 or 1."""

    version: int
    codec: int
    digest: bytes  # the 32-byte sha2-256 digest

    @property
    def multihash(self) -> bytes:
        return _MH_PREFIX + self.digest

    @property
    def v1(self) -> str:
        return _v1_string(self.digest, self.codec)

    @property
    def v0(self) -> str:
        if self.codec != CODEC_DAG_PB:
            raise ValueError("only dag-pb CIDs have a CIDv0 form")
        return _v0_string(self.digest)

    def __str__(self) -> str:
        return self.v0 if self.version == 0 else self.v1


def parse_cid(text: str) -> Cid:
    """Validate a CID string and return its parts; raise ValueError if malformed.

    Accepted: CIDv0 (46 base58btc characters starting ``Qm``, sha2-256) and CIDv1 in
    multibase base32 lower case without padding (prefix ``b``) with codec dag-pb
    (0x70) or raw (0x55) and a sha2-256 multihash.  Only the canonical spelling is
    accepted (re-encoding the parsed CID gives back ``text`` exactly), so the
    string is safe to use as a file or URL path component.
    """
    if not isinstance(text, str):
        raise ValueError(f"CID must be a string, not {type(text).__name__}")
    if not text:
        raise ValueError("CID is empty")
    if len(text) > _MAX_CID_TEXT or not text.isascii():
        raise ValueError("CID is not a valid CIDv0 or base32 CIDv1 string")
    if text.startswith("Qm"):
        if not _V0_RE.fullmatch(text):
            raise ValueError("invalid CIDv0: expected 46 base58btc characters starting with 'Qm'")
        raw = _b58decode(text)
        if len(raw) != 34 or raw[:2] != _MH_PREFIX:
            raise ValueError("invalid CIDv0: not a sha2-256 multihash")
        cid = Cid(0, CODEC_DAG_PB, raw[2:])
    elif text.startswith("b"):
        if not _V1_RE.fullmatch(text):
            raise ValueError("invalid CIDv1: expected lower-case base32 characters after 'b'")
        raw = _b32decode(text[1:])
        version, pos = _read_varint(raw, 0)
        if version != 1:
            raise ValueError(f"invalid CIDv1: version {version} is not 1")
        codec, pos = _read_varint(raw, pos)
        if codec not in (CODEC_DAG_PB, CODEC_RAW):
            raise ValueError(f"unsupported CID codec 0x{codec:x} (only dag-pb 0x70 and raw 0x55)")
        mh_code, pos = _read_varint(raw, pos)
        if mh_code != _SHA2_256:
            raise ValueError(f"unsupported multihash 0x{mh_code:x} (only sha2-256)")
        mh_len, pos = _read_varint(raw, pos)
        if mh_len != _SHA2_256_LEN or len(raw) - pos != _SHA2_256_LEN:
            raise ValueError("invalid CIDv1: sha2-256 digest must be exactly 32 bytes")
        cid = Cid(1, codec, raw[pos:])
    else:
        raise ValueError("not a CID: expected a CIDv0 ('Qm...') or a base32 CIDv1 ('b...')")
    if str(cid) != text:
        raise ValueError("CID is not canonically encoded")
    return cid


def cid_v0_to_v1(cid: str) -> str:
    """Convert a dag-pb CID (v0, or v1 which is returned canonicalised) to CIDv1 base32."""
    parsed = parse_cid(cid)
    if parsed.codec != CODEC_DAG_PB:
        raise ValueError("only dag-pb CIDs convert between v0 and v1")
    return parsed.v1


# --------------------------------------------------------------------------- DAG building


@dataclass(frozen=True)
class Block:
    """One encoded dag-pb block; ``cid`` is its CIDv0 string."""

    cid: str
    data: bytes


@dataclass
class Dag:
    """The result of adding a file: root CID, file size, and (optionally) all blocks.

    Blocks are in creation order (leaves before their parents, root last).
    """

    root: str
    size: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def root_v1(self) -> str:
        return cid_v0_to_v1(self.root)


# A link as the builder carries it: (multihash bytes, Tsize, file bytes under it).
_Link = tuple[bytes, int, int]

_LINK_FIXED = b"\x0a\x22"  # PBLink field 1 (Hash), length 34
_LINK_NAME = b"\x12\x00"  # PBLink field 2 (Name) = ""


def _leaf_frame(n: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) such that prefix + chunk + suffix is the leaf block for a chunk of n bytes."""
    if n == 0:
        # go-unixfs leaves Data unset for an empty file: {Type: File, filesize: 0}
        unixfs_head = b"\x08\x02"
    else:
        unixfs_head = b"\x08\x02\x12" + _varint(n)
    unixfs_tail = b"\x18" + _varint(n)
    unixfs_len = len(unixfs_head) + n + len(unixfs_tail)
    return b"\x0a" + _varint(unixfs_len) + unixfs_head, unixfs_tail


_FULL_PREFIX, _FULL_SUFFIX = _leaf_frame(CHUNK_SIZE)


def _internal_node(links: list[_Link]) -> tuple[bytes, int]:
    """Encode an intermediate node; returns (block bytes, file size under it)."""
    parts: list[bytes] = []
    total = 0
    sizes: list[bytes] = []
    for mh, tsize, fsize in links:
        link = _LINK_FIXED + mh + _LINK_NAME + b"\x18" + _varint(tsize)
        parts.append(b"\x12" + _varint(len(link)) + link)
        total += fsize
        sizes.append(b"\x20" + _varint(fsize))
    unixfs = b"\x08\x02\x18" + _varint(total) + b"".join(sizes)
    parts.append(b"\x0a" + _varint(len(unixfs)) + unixfs)
    return b"".join(parts), total


class _Builder:
    """Balanced-layout builder fed one chunk at a time.

    ``levels[k]`` holds the pending links of the node being filled at height k+1.
    A node is emitted as soon as it has MAX_LINKS links; at the end the partial
    nodes are closed bottom-up, which reproduces go-unixfs' balanced layout
    (a short last subtree is still wrapped to full depth).
    """

    def __init__(self, emit: Callable[[bytes, bytes | None], None] | None) -> None:
        # emit(multihash, block_bytes_or_None); None means "don't keep blocks"
        self._emit = emit
        self._levels: list[list[_Link]] = []
        self.size = 0
        self._leaves = 0

    def _push(self, height: int, link: _Link) -> None:
        while True:
            if height == len(self._levels):
                self._levels.append([])
            level = self._levels[height]
            level.append(link)
            if len(level) < MAX_LINKS:
                return
            link = self._close(level)
            self._levels[height] = []
            height += 1

    def _close(self, links: list[_Link]) -> _Link:
        block, total = _internal_node(links)
        digest = hashlib.sha256(block).digest()
        mh = _MH_PREFIX + digest
        if self._emit is not None:
            self._emit(mh, block)
        return mh, len(block) + sum(t for _, t, _ in links), total

    def add_chunk(self, chunk: bytes | memoryview, keep: bool) -> None:
        n = len(chunk)
        if n == CHUNK_SIZE:
            prefix, suffix = _FULL_PREFIX, _FULL_SUFFIX
        else:
            prefix, suffix = _leaf_frame(n)
        if keep:
            block = b"".join((prefix, chunk, suffix))
            digest = hashlib.sha256(block).digest()
        else:
            block = None
            h = hashlib.sha256(prefix)
            h.update(chunk)
            h.update(suffix)
            digest = h.digest()
        mh = _MH_PREFIX + digest
        if self._emit is not None:
            self._emit(mh, block)
        self.size += n
        self._leaves += 1
        self._push(0, (mh, len(prefix) + n + len(suffix), n))

    def finish(self, keep: bool) -> bytes:
        """Close pending nodes and return the root multihash."""
        if self._leaves == 0:
            self.add_chunk(b"", keep)
        levels = self._levels
        height = 0
        while height < len(levels):
            pending = levels[height]
            higher = any(levels[h] for h in range(height + 1, len(levels)))
            if not higher and len(pending) == 1:
                return pending[0][0]
            if pending:
                link = self._close(pending)
                levels[height] = []
                if height + 1 == len(levels):
                    levels.append([])
                levels[height + 1].append(link)
            height += 1
        raise AssertionError("unreachable: builder ended without a root")


def _run(
    chunks: Iterable[bytes | memoryview],
    sink: Callable[[Block], None] | None,
    keep_blocks: bool,
) -> Dag:
    blocks: list[Block] = []
    deliver = sink if sink is not None else (blocks.append if keep_blocks else None)

    def emit(mh: bytes, block: bytes | None) -> None:
        assert deliver is not None and block is not None
        deliver(Block(_b58encode(mh), block))

    keep = deliver is not None
    builder = _Builder(emit if keep else None)
    for chunk in chunks:
        builder.add_chunk(chunk, keep)
    root_mh = builder.finish(keep)
    return Dag(root=_b58encode(root_mh), size=builder.size, blocks=blocks)


def _memory_chunks(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    view = memoryview(data).cast("B")
    for off in range(0, len(view), CHUNK_SIZE):
        yield view[off : off + CHUNK_SIZE]


def _stream_chunks(fp: BinaryIO) -> Iterator[memoryview]:
    """Full CHUNK_SIZE chunks (short reads are topped up, like io.ReadFull), last one short."""
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    readinto = getattr(fp, "readinto", None)
    while True:
        filled = 0
        while filled < CHUNK_SIZE:
            if readinto is not None:
                got = readinto(view[filled:])
            else:
                piece = fp.read(CHUNK_SIZE - filled)
                got = len(piece) if piece else 0
                view[filled : filled + got] = piece if piece else b""
            if not got:
                break
            filled += got
        if filled:
            # The consumer hashes/copies the chunk before asking for the next one,
            # so the single buffer can be reused.
            yield view[:filled]
        if filled < CHUNK_SIZE:
            return


def build_dag(data: bytes | bytearray | memoryview) -> Dag:
    """Build the whole DAG for ``data`` in memory; ``Dag.blocks`` holds every block."""
    return _run(_memory_chunks(data), None, True)


def add_stream(
    fp: BinaryIO,
    sink: Callable[[Block], None] | None = None,
    keep_blocks: bool = True,
) -> Dag:
    """Add a binary file object, reading 256 KiB at a time into one reused buffer.

    Each block is passed to ``sink`` as soon as it is built if a sink is given (then
    ``Dag.blocks`` stays empty); otherwise blocks are collected in ``Dag.blocks``
    unless ``keep_blocks`` is False (then only the root is computed).
    """
    return _run(_stream_chunks(fp), sink, keep_blocks)


def add_file(
    path: str | os.PathLike[str],
    sink: Callable[[Block], None] | None = None,
    keep_blocks: bool = True,
) -> Dag:
    """``add_stream`` over the file at ``path``."""
    with open(path, "rb", buffering=0) as fp:
        return add_stream(fp, sink=sink, keep_blocks=keep_blocks)


def cid_v0(data: bytes | bytearray | memoryview) -> str:
    """Kubo's default CIDv0 for ``data`` (no blocks are materialised)."""
    return _run(_memory_chunks(data), None, False).root


def cid_v1(data: bytes | bytearray | memoryview) -> str:
    """The CIDv1 (dag-pb, base32) of the same DAG as ``cid_v0``."""
    return cid_v0_to_v1(cid_v0(data))


# --------------------------------------------------------------------------- DAG reading


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) of a protobuf message with only varint and length-delimited fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated protobuf field")
            yield number, buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")


def read_file_node(block: bytes) -> tuple[list[str], bytes]:
    """Decode one dag-pb block of a UnixFS file: (child CIDv0 strings in order, the file bytes it holds).

    A leaf has no children and holds its chunk; an intermediate node holds no bytes itself.
    Raises ValueError for anything that is not a UnixFS ``File`` node with sha2-256 links.
    """
    children: list[str] = []
    unixfs: bytes | None = None
    for number, value in _fields(block):
        if number == 2 and isinstance(value, bytes):
            hashes = [v for n, v in _fields(value) if n == 1]
            if len(hashes) != 1 or not isinstance(hashes[0], bytes) or hashes[0][:2] != _MH_PREFIX \
                    or len(hashes[0]) != 2 + _SHA2_256_LEN:
                raise ValueError("dag-pb link without a sha2-256 multihash")
            children.append(_b58encode(hashes[0]))
        elif number == 1 and isinstance(value, bytes):
            unixfs = value
        else:
            raise ValueError(f"unexpected dag-pb field {number}")
    if unixfs is None:
        raise ValueError("dag-pb node without UnixFS data")
    kind, data = None, b""
    for number, value in _fields(unixfs):
        if number == 1:
            kind = value
        elif number == 2 and isinstance(value, bytes):
            data = value
    if kind != _UNIXFS_FILE:
        raise ValueError("not a UnixFS file node")
    if children and data:
        raise ValueError("a UnixFS node with links must not hold data itself")
    return children, data
