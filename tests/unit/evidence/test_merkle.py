"""RFC 6962 Merkle tree math: roots, inclusion and consistency proofs, verifiers."""

from __future__ import annotations

import functools
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon.evidence import merkle

MAX_SIZE = 300


# ----------------------------------------------------------------- naive reference
# Written straight from RFC 6962 §2.1 over raw entries, sharing no code with merkle.py.


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 §2.1 states it, by recursive slicing."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return ref_leaf(entries[0])
    k = ref_k(n)
    return ref_node(ref_mth(entries[:k]), ref_mth(entries[k:]))


# The proofs below index ranges [lo, hi) of ENTRIES (same recursion as the RFC's
# D[lo:hi] slices) so that subtree hashes can be memoised and the test stays fast.


@functools.lru_cache(maxsize=None)
def ref_range(lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return ref_leaf(ENTRIES[lo])
    k = ref_k(hi - lo)
    return ref_node(ref_range(lo, lo + k), ref_range(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi])."""
    n = hi - lo
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return ref_path(m, lo, lo + k) + [ref_range(lo + k, hi)]
    return ref_path(m - k, lo + k, hi) + [ref_range(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if b else [ref_range(lo, hi)]
    k = ref_k(n)
    if m <= k:
        return ref_subproof(m, lo, lo + k, b) + [ref_range(lo + k, hi)]
    return ref_subproof(m - k, lo + k, hi, False) + [ref_range(lo, lo + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n])."""
    return ref_subproof(m, 0, n, True)


# ----------------------------------------------------------------- fixtures

ENTRIES = [b"entry-%d" % i for i in range(MAX_SIZE)]
LEAVES = [ref_leaf(e) for e in ENTRIES]
ROOTS = [merkle.root(LEAVES[:n]) for n in range(MAX_SIZE + 1)]


def flip(h: bytes, byte: int = 0) -> bytes:
    b = bytearray(h)
    b[byte] ^= 0x01
    return bytes(b)


# ----------------------------------------------------------------- known answers and hashes


def test_empty_tree_root_is_sha256_of_nothing():
    expected = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert merkle.root([]) == expected
    assert merkle.EMPTY_ROOT == expected


def test_leaf_and_node_hash_domain_separation():
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    l, r = b"L" * 32, b"R" * 32
    assert merkle.node_hash(l, r) == hashlib.sha256(b"\x01" + l + r).digest()
    assert merkle.node_hash(l, r) != merkle.node_hash(r, l)
    # a leaf whose bytes equal "left || right" must not collide with the node
    assert merkle.leaf_hash(l + r) != merkle.node_hash(l, r)


def test_known_small_trees():
    a, b, c = (merkle.leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle.root([a]) == a
    assert merkle.root([a, b]) == merkle.node_hash(a, b)
    # 3 leaves split at 2: ((a b) c), not (a (b c))
    assert merkle.root([a, b, c]) == merkle.node_hash(merkle.node_hash(a, b), c)
    assert merkle.root([a, b, c]) != merkle.node_hash(a, merkle.node_hash(b, c))


def test_roots_match_reference_for_every_size():
    for n in range(0, MAX_SIZE + 1):
        assert ROOTS[n] == ref_mth(ENTRIES[:n]), n
        if n:
            assert ref_range(0, n) == ROOTS[n], n


# ----------------------------------------------------------------- inclusion


def _indices(n: int, rng: random.Random) -> list[int]:
    if n <= 64:
        return list(range(n))
    picked = {0, n - 1, n // 2, ref_k(n) - 1, ref_k(n)}
    picked.update(rng.sample(range(n), 12))
    return sorted(i for i in picked if 0 <= i < n)


def test_inclusion_proofs_for_every_size():
    rng = random.Random(6962)
    for n in range(1, MAX_SIZE + 1):
        leaves, r = LEAVES[:n], ROOTS[n]
        for i in _indices(n, rng):
            proof = merkle.inclusion_proof(leaves, i)
            assert proof == ref_path(i, 0, n), (n, i)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, r), (n, i)


def test_inclusion_tampering_fails():
    rng = random.Random(9162)
    checked = 0
    for n in range(1, MAX_SIZE + 1):
        leaves, r = LEAVES[:n], ROOTS[n]
        for i in _indices(n, rng)[:6]:
            proof = merkle.inclusion_proof(leaves, i)
            ok = merkle.verify_inclusion
            assert not ok(flip(leaves[i]), i, n, proof, r)
            assert not ok(merkle.leaf_hash(b"other"), i, n, proof, r)
            assert not ok(leaves[i], i, n, proof, flip(r, 31))
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = flip(bad[j], j % 32)
                assert not ok(leaves[i], i, n, bad, r), (n, i, j)
            if proof:
                assert not ok(leaves[i], i, n, proof[:-1], r)
                assert not ok(leaves[i], i, n, proof[1:], r)
            if len(proof) > 1:
                assert not ok(leaves[i], i, n, list(reversed(proof)), r)
            assert not ok(leaves[i], i, n, proof + [leaves[0]], r)
            assert not ok(leaves[i], i, n, [r] + proof, r)
            # wrong index (another leaf's position) and wrong size
            for wrong in {i - 1, i + 1, n - 1 - i} - {i}:
                if 0 <= wrong < n:
                    assert not ok(leaves[i], wrong, n, proof, r), (n, i, wrong)
            # wrong size: a claimed (size, root) pair other than the one the proof is for.
            # (RFC 9162 binds the size through the signed root, so the same root with
            # a different size is not a meaningful pairing and is not asserted on.)
            if n + 1 <= MAX_SIZE:
                assert not ok(leaves[i], i, n + 1, proof, ROOTS[n + 1]), (n, i)
            if i < n - 1:
                assert not ok(leaves[i], i, n - 1, proof, ROOTS[n - 1]), (n, i)
            assert not ok(leaves[i], n, n, proof, r)
            assert not ok(leaves[i], i, 0, proof, r)
            checked += 1
    assert checked > 1000


def test_inclusion_single_leaf_tree():
    h = LEAVES[0]
    assert merkle.inclusion_proof([h], 0) == []
    assert merkle.verify_inclusion(h, 0, 1, [], h)
    assert not merkle.verify_inclusion(h, 0, 1, [h], h)
    assert not merkle.verify_inclusion(h, 1, 1, [], h)
    assert not merkle.verify_inclusion(h, 0, 0, [], h)


def test_inclusion_bad_arguments():
    leaves = LEAVES[:5]
    for bad in (-1, 5, 100):
        with pytest.raises(ValueError):
            merkle.inclusion_proof(leaves, bad)
    with pytest.raises(ValueError):
        merkle.inclusion_proof([], 0)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(leaves, True)
    proof = merkle.inclusion_proof(leaves, 2)
    r = ROOTS[5]
    assert merkle.verify_inclusion(leaves[2], 2, 5, proof, r)
    assert not merkle.verify_inclusion(leaves[2], -1, 5, proof, r)
    assert not merkle.verify_inclusion(leaves[2], 2, -5, proof, r)
    assert not merkle.verify_inclusion(leaves[2][:31], 2, 5, proof, r)
    assert not merkle.verify_inclusion(leaves[2], 2, 5, proof, r[:31])
    assert not merkle.verify_inclusion(leaves[2], 2, 5, [p + b"\0" for p in proof], r)
    assert not merkle.verify_inclusion(leaves[2], 2, 5, b"".join(proof), r)


# ----------------------------------------------------------------- consistency


def _check_consistency(m: int, n: int) -> None:
    proof = merkle.consistency_proof(LEAVES[:n], m, n)
    if 0 < m < n:
        assert proof == ref_proof(m, n), (m, n)
    else:
        assert proof == []
    assert merkle.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)
    # proof generated from a longer log (only the first n leaves count)
    assert merkle.consistency_proof(LEAVES, m, n) == proof


def test_consistency_all_pairs_small():
    for n in range(0, 41):
        for m in range(0, n + 1):
            _check_consistency(m, n)


def test_consistency_random_pairs():
    rng = random.Random(20240601)
    for _ in range(2000):
        n = rng.randint(1, MAX_SIZE)
        m = rng.randint(1, n)
        _check_consistency(m, n)
    for n in range(1, MAX_SIZE + 1):  # every size at least with its edge partners
        for m in {1, n - 1, n, ref_k(n)}:
            if 1 <= m <= n:
                _check_consistency(m, n)


def test_consistency_tampering_fails():
    rng = random.Random(42)
    pairs = [(m, n) for n in range(2, 41) for m in range(1, n)]
    pairs += [(rng.randint(1, n - 1), n) for n in (rng.randint(41, MAX_SIZE) for _ in range(400))]
    ok = merkle.verify_consistency
    for m, n in pairs:
        proof = merkle.consistency_proof(LEAVES, m, n)
        r1, r2 = ROOTS[m], ROOTS[n]
        assert ok(m, n, r1, r2, proof)
        assert not ok(m, n, flip(r1), r2, proof), (m, n)
        assert not ok(m, n, r1, flip(r2, 31), proof), (m, n)
        assert not ok(m, n, r2, r1, proof), (m, n)
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = flip(bad[j], j % 32)
            assert not ok(m, n, r1, r2, bad), (m, n, j)
        assert not ok(m, n, r1, r2, proof[:-1]), (m, n)
        assert not ok(m, n, r1, r2, proof[1:]), (m, n)
        assert not ok(m, n, r1, r2, proof + [r1]), (m, n)
        assert not ok(m, n, r1, r2, [r1] + proof), (m, n)
        assert not ok(m, n, r1, r2, []), (m, n)
        # wrong sizes, each paired with the genuine root of the claimed size
        if n + 1 <= MAX_SIZE:
            assert not ok(m, n + 1, r1, ROOTS[n + 1], proof), (m, n)
        if m + 1 < n:
            assert not ok(m + 1, n, ROOTS[m + 1], r2, proof), (m, n)
        if m > 1:
            assert not ok(m - 1, n, ROOTS[m - 1], r2, proof), (m, n)
        if n - 1 > m:
            assert not ok(m, n - 1, r1, ROOTS[n - 1], proof), (m, n)
        # a root of a different log prefix must not verify either
        if m + 1 < n:
            assert not ok(m, n, ROOTS[m + 1], r2, proof), (m, n)
        assert not ok(n, m, r2, r1, proof), (m, n)
        # diverged history: same size, one leaf rewritten
        forked = list(LEAVES[:n])
        forked[rng.randrange(m)] = merkle.leaf_hash(b"forged")
        assert not ok(m, n, merkle.root(forked[:m]), r2, proof), (m, n)
        # the forked log's new head, with its own honest-looking proof, against the old head
        assert not ok(m, n, r1, merkle.root(forked), merkle.consistency_proof(forked, m, n)), (m, n)


def test_consistency_edge_cases():
    ok = merkle.verify_consistency
    r5 = ROOTS[5]
    assert ok(5, 5, r5, r5, [])
    assert not ok(5, 5, r5, ROOTS[4], [])
    assert not ok(5, 5, r5, r5, [r5])
    assert ok(0, 5, merkle.EMPTY_ROOT, r5, [])
    assert not ok(0, 5, ROOTS[1], r5, [])
    assert not ok(0, 5, merkle.EMPTY_ROOT, r5, [r5])
    assert ok(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert not ok(6, 5, ROOTS[6], r5, [])
    assert not ok(-1, 5, ROOTS[1], r5, [])
    assert not ok(2, 5, ROOTS[2][:16], r5, merkle.consistency_proof(LEAVES, 2, 5))
    assert not ok(2, 5, ROOTS[2], r5, b"".join(merkle.consistency_proof(LEAVES, 2, 5)))


def test_consistency_bad_arguments():
    leaves = LEAVES[:10]
    for first, second in ((-1, 5), (6, 5), (3, 11), (0, 11), (11, 11)):
        with pytest.raises(ValueError):
            merkle.consistency_proof(leaves, first, second)
    with pytest.raises(ValueError):
        merkle.consistency_proof(leaves, 1.0, 5)  # type: ignore[arg-type]
    assert merkle.consistency_proof(leaves, 0, 10) == []
    assert merkle.consistency_proof(leaves, 10, 10) == []
    assert merkle.consistency_proof([], 0, 0) == []


# ----------------------------------------------------------------- property-based, larger trees


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 3000), data=st.data())
def test_property_proofs_on_larger_trees(n, data):
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    r = merkle.root(leaves)
    i = data.draw(st.integers(0, n - 1))
    assert merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(leaves, i), r)
    m = data.draw(st.integers(1, n))
    proof = merkle.consistency_proof(leaves, m, n)
    assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), r, proof)
    if m < n:
        assert not merkle.verify_consistency(m, n, merkle.root(leaves[: m - 1]) if m > 1 else flip(r), r, proof)


def test_proofs_on_100k_leaves_are_fast_enough():
    n = 100_000
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    r = merkle.root(leaves)
    for i in (0, 1, 65535, 65536, n - 1):
        assert merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(leaves, i), r)
    first = 70_001
    proof = merkle.consistency_proof(leaves, first, n)
    assert merkle.verify_consistency(first, n, merkle.root(leaves[:first]), r, proof)
