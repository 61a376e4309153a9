"""beacon.evidence.cid against Debian's ``ipfs_cid`` (Kubo-default CIDv0 / CIDv1 of a file).

``ipfs_cid FILE`` prints one JSON object on stdout,
``{"CIDv0":"Qm...","CIDv1":"bafy..."}``, and timing chatter on stderr.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from beacon.evidence import cid

C = cid.CHUNK_SIZE
EMPTY_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
EMPTY_V1 = "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
EMPTY_RAW_V1 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # raw block b""

_V0_TOKEN = re.compile(r"\bQm[1-9A-HJ-NP-Za-km-z]{44}\b")
_V1_TOKEN = re.compile(r"\bb[a-z2-7]{58}\b")


# ----------------------------------------------------------------- reference tool


def require_ipfs_cid() -> str:
    """Path of ``ipfs_cid``; a missing tool FAILS the calling test (it never skips)."""
    path = shutil.which("ipfs_cid")
    if path is None:
        pytest.fail(
            "the reference tool `ipfs_cid` is not on PATH; install it with "
            "`apt-get update && apt-get install -y ipfs-cid`"
        )
    return path


def parse_ipfs_cid_output(stdout: str) -> tuple[str, str]:
    """(CIDv0, CIDv1) from ipfs_cid's stdout: the JSON object, else the two CID tokens."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "CIDv0" in obj and "CIDv1" in obj:
                return str(obj["CIDv0"]), str(obj["CIDv1"])
    v0, v1 = _V0_TOKEN.findall(stdout), _V1_TOKEN.findall(stdout)
    if len(v0) == 1 and len(v1) == 1:
        return v0[0], v1[0]
    raise AssertionError(f"cannot parse ipfs_cid output: {stdout!r}")


def reference(bin_path: str, path: Path) -> tuple[str, str]:
    proc = subprocess.run([bin_path, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ipfs_cid failed ({proc.returncode}): {proc.stderr}"
    return parse_ipfs_cid_output(proc.stdout)


def test_parse_ipfs_cid_output_formats():
    json_out = '{"CIDv0":"%s","CIDv1":"%s"}\n' % (EMPTY_V0, EMPTY_V1)
    assert parse_ipfs_cid_output(json_out) == (EMPTY_V0, EMPTY_V1)
    assert parse_ipfs_cid_output(f"CIDv0: {EMPTY_V0}\nCIDv1: {EMPTY_V1}\n") == (EMPTY_V0, EMPTY_V1)
    with pytest.raises(AssertionError):
        parse_ipfs_cid_output("Application error: No such file or directory (os error 2)")


# ----------------------------------------------------------------- a minimal dag-pb reader (test side)


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _uvarint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _uvarint(buf, pos)
            out.append((num, val))
        elif wire == 2:
            n, pos = _uvarint(buf, pos)
            out.append((num, buf[pos : pos + n]))
            pos += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    assert pos == len(buf)
    return out


def decode_node(block: bytes):
    """-> (links [(multihash, name, tsize)], unixfs fields dict-of-lists, field order)"""
    fields = _fields(block)
    order = [num for num, _ in fields]
    links = []
    data = None
    for num, val in fields:
        if num == 2:
            lf = dict(_fields(val))
            links.append((lf[1], lf[2], lf[3]))
        elif num == 1:
            data = val
    assert data is not None
    unixfs: dict[int, list] = {}
    for num, val in _fields(data):
        unixfs.setdefault(num, []).append(val)
    return links, unixfs, order


def b58_multihash(block: bytes) -> str:
    return cid.Cid(0, cid.CODEC_DAG_PB, hashlib.sha256(block).digest()).v0


def check_dag(dag: cid.Dag, original: bytes) -> None:
    """Every block hashes to its CID; walking from the root reassembles the input."""
    by_cid = {}
    for block in dag.blocks:
        assert b58_multihash(block.data) == block.cid
        by_cid[block.cid] = block.data
    assert dag.blocks[-1].cid == dag.root

    def walk(c: str) -> tuple[bytes, int]:
        block = by_cid[c]
        links, unixfs, order = decode_node(block)
        assert unixfs[1] == [2]  # UnixFS File
        if not links:
            payload = unixfs.get(2, [b""])[0]
            assert unixfs[3] == [len(payload)]
            assert len(payload) <= C
            return payload, len(block)
        # Links (field 2) precede Data (field 1) in the serialized node
        assert order == [2] * len(links) + [1]
        assert len(links) <= cid.MAX_LINKS
        assert 2 not in unixfs
        parts, tsize_total = [], len(block)
        for (mh, name, tsize), blocksize in zip(links, unixfs[4], strict=True):
            assert name == b""
            child = cid.Cid(0, cid.CODEC_DAG_PB, bytes(mh[2:])).v0
            assert bytes(mh[:2]) == b"\x12\x20"
            data, child_tsize = walk(child)
            assert tsize == child_tsize
            assert blocksize == len(data)
            parts.append(data)
            tsize_total += child_tsize
        data = b"".join(parts)
        assert unixfs[3] == [len(data)]
        return data, tsize_total

    rebuilt, _ = walk(dag.root)
    assert rebuilt == original


# ----------------------------------------------------------------- against ipfs_cid

FIXED_SIZES = [
    0,
    1,
    C - 1,
    C,
    C + 1,
    2 * C,
    174 * C,
    174 * C + 1,
    175 * C + 1,  # root is a second tree level: [174 leaves] + [1 leaf, wrapped]
]


@pytest.mark.parametrize("size", FIXED_SIZES)
def test_matches_ipfs_cid_fixed_sizes(size, tmp_path):
    ipfs_cid_bin = require_ipfs_cid()
    data = random.Random(size).randbytes(size)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    ref_v0, ref_v1 = reference(ipfs_cid_bin, path)

    assert cid.cid_v0(data) == ref_v0
    assert cid.cid_v1(data) == ref_v1
    assert cid.cid_v0_to_v1(ref_v0) == ref_v1
    streamed = cid.add_file(path)
    assert (streamed.root, streamed.root_v1, streamed.size) == (ref_v0, ref_v1, size)
    check_dag(streamed, data)
    if size <= 2 * C + 1:
        in_memory = cid.build_dag(data)
        assert in_memory == streamed


def test_known_answers_without_tool():
    assert cid.cid_v0(b"") == EMPTY_V0
    assert cid.cid_v1(b"") == EMPTY_V1
    assert cid.cid_v0(b"hello world\n") == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    dag = cid.build_dag(b"")
    assert dag.blocks == [cid.Block(EMPTY_V0, bytes.fromhex("0a0408021800"))]
    # {Data: {Type: File, Data: "a", filesize: 1}}
    assert cid.build_dag(b"a").blocks[0].data == bytes.fromhex("0a0708021201611801")


def test_matches_ipfs_cid_50_mib(tmp_path):
    ipfs_cid_bin = require_ipfs_cid()
    data = random.Random(50).randbytes(50 * 1024 * 1024)
    path = tmp_path / "fifty.bin"
    path.write_bytes(data)
    ref_v0, ref_v1 = reference(ipfs_cid_bin, path)
    assert cid.cid_v0(data) == ref_v0
    assert cid.cid_v1(data) == ref_v1
    stored: dict[str, bytes] = {}

    def sink(block: cid.Block) -> None:
        stored[block.cid] = block.data

    dag = cid.add_file(path, sink=sink)
    assert (dag.root, dag.root_v1, dag.size, dag.blocks) == (ref_v0, ref_v1, len(data), [])
    assert len(stored) == 200 + 2 + 1  # 200 leaves, 2 level-one nodes, the root
    for c, block in stored.items():
        assert b58_multihash(block) == c


def test_matches_ipfs_cid_random_sizes(tmp_path):
    ipfs_cid_bin = require_ipfs_cid()
    rng = random.Random(0xC1D)
    sizes = [rng.randrange(0, 4096) for _ in range(4)]
    sizes += [rng.randrange(C - 64, C + 64) for _ in range(4)]
    sizes += [rng.randrange(1, 6 * C) for _ in range(8)]
    for size in sizes:
        data = rng.randbytes(size)
        path = tmp_path / f"r{size}.bin"
        path.write_bytes(data)
        ref_v0, ref_v1 = reference(ipfs_cid_bin, path)
        dag = cid.build_dag(data)
        assert (dag.root, dag.root_v1) == (ref_v0, ref_v1), size
        assert cid.cid_v0(data) == ref_v0, size
        check_dag(dag, data)


def test_low_entropy_data_matches(tmp_path):
    ipfs_cid_bin = require_ipfs_cid()
    for size, fill in ((3 * C, b"\0"), (C + 7, b"ab")):
        data = (fill * size)[:size]
        path = tmp_path / "fill.bin"
        path.write_bytes(data)
        assert (cid.cid_v0(data), cid.cid_v1(data)) == reference(ipfs_cid_bin, path)


# ----------------------------------------------------------------- streaming


class TrickleReader(io.RawIOBase):
    """A real readable stream that returns at most ``step`` bytes per call."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class ReadOnlyStream:
    """Exposes only read(), no readinto()."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def read(self, n: int) -> bytes:
        n = min(n, self._step)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


@pytest.mark.parametrize("size", [0, 5, C, 3 * C + 11])
def test_short_reads_do_not_change_chunking(size):
    data = random.Random(size + 1).randbytes(size)
    expected = cid.build_dag(data)
    for stream in (TrickleReader(data, 100_003), ReadOnlyStream(data, 77_777), io.BytesIO(data)):
        assert cid.add_stream(stream) == expected
    root_only = cid.add_stream(io.BytesIO(data), keep_blocks=False)
    assert (root_only.root, root_only.size, root_only.blocks) == (expected.root, size, [])


def test_blocks_are_independent_copies():
    data = bytearray(random.Random(3).randbytes(2 * C + 5))
    dag = cid.build_dag(data)
    before = [b.data for b in dag.blocks]
    data[:] = b"\xff" * len(data)
    assert [b.data for b in dag.blocks] == before
    for block in dag.blocks:
        assert isinstance(block.data, bytes)
        assert b58_multihash(block.data) == block.cid


# ----------------------------------------------------------------- parse_cid


def test_parse_cid_accepts_v0_and_v1():
    v0 = cid.parse_cid(EMPTY_V0)
    assert (v0.version, v0.codec, str(v0)) == (0, cid.CODEC_DAG_PB, EMPTY_V0)
    assert v0.v1 == EMPTY_V1
    v1 = cid.parse_cid(EMPTY_V1)
    assert (v1.version, v1.codec, v1.digest, str(v1)) == (1, cid.CODEC_DAG_PB, v0.digest, EMPTY_V1)
    assert v1.v0 == EMPTY_V0
    raw = cid.parse_cid(EMPTY_RAW_V1)
    assert (raw.version, raw.codec) == (1, cid.CODEC_RAW)
    assert raw.digest == hashlib.sha256(b"").digest()
    assert raw.multihash == b"\x12\x20" + hashlib.sha256(b"").digest()
    with pytest.raises(ValueError):
        raw.v0
    for data in (b"x", random.Random(9).randbytes(C + 1)):
        assert str(cid.parse_cid(cid.cid_v0(data))) == cid.cid_v0(data)
        assert str(cid.parse_cid(cid.cid_v1(data))) == cid.cid_v1(data)


def _v1_from(raw: bytes) -> str:
    import base64

    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def _bad_cids() -> list[object]:
    digest = hashlib.sha256(b"").digest()
    return [
        "",
        " ",
        "../etc/passwd",
        "..",
        "/",
        "Qm/",
        EMPTY_V0 + "/..",
        "../" + EMPTY_V0,
        EMPTY_V0 + "/",
        EMPTY_V1 + "/../x",
        EMPTY_V0[:-1],  # 45 chars
        EMPTY_V0 + "a",  # 47 chars
        EMPTY_V0[:-1] + "0",  # not base58
        EMPTY_V0[:-1] + "l",
        EMPTY_V0[:-1] + "I",
        EMPTY_V0[:-1] + "O",
        " " + EMPTY_V0,
        EMPTY_V0 + "\n",
        EMPTY_V0 + "\0",
        "Qm" + "z" * 44,  # base58 but not a sha2-256 multihash
        "qm" + EMPTY_V0[2:],
        "zdj7W" + EMPTY_V0,  # base58btc multibase v1 is not accepted
        EMPTY_V1.upper(),
        "B" + EMPTY_V1[1:].upper(),
        EMPTY_V1[:-1],
        EMPTY_V1 + "a",
        EMPTY_V1 + "====",
        EMPTY_V1[:-1] + "1",  # '1' is not base32
        EMPTY_V1[:-1] + "z",  # non-zero trailing bits: non-canonical
        EMPTY_V1[:10] + "\u0430" + EMPTY_V1[11:],  # Cyrillic look-alike
        "b",
        "bafy",
        _v1_from(b"\x02\x70\x12\x20" + digest),  # version 2
        _v1_from(b"\x00\x70\x12\x20" + digest),  # version 0 inside v1 framing
        _v1_from(b"\x01\x71\x12\x20" + digest),  # dag-cbor
        _v1_from(b"\x01\x70\x16\x20" + digest),  # sha3-256
        _v1_from(b"\x01\x70\x00\x20" + digest),  # identity hash
        _v1_from(b"\x01\x70\x12\x1f" + digest[:31]),  # short digest
        _v1_from(b"\x01\x70\x12\x20" + digest + b"\0"),  # trailing byte
        _v1_from(b"\x01\x70\x12\x20" + digest[:31]),  # truncated
        _v1_from(b"\x81\x00\x70\x12\x20" + digest),  # non-minimal varint
        "b" + "a" * 5000,
        "Qm" + "1" * 10000,
        b"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
        None,
        46,
    ]


@pytest.mark.parametrize("bad", _bad_cids())
def test_parse_cid_rejects_malformed(bad):
    with pytest.raises(ValueError) as excinfo:
        cid.parse_cid(bad)  # type: ignore[arg-type]
    assert str(excinfo.value)


def test_cid_v0_to_v1():
    assert cid.cid_v0_to_v1(EMPTY_V0) == EMPTY_V1
    assert cid.cid_v0_to_v1(EMPTY_V1) == EMPTY_V1
    with pytest.raises(ValueError):
        cid.cid_v0_to_v1(EMPTY_RAW_V1)
    with pytest.raises(ValueError):
        cid.cid_v0_to_v1("../etc/passwd")
