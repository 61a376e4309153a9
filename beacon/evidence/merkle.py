"""RFC 6962 (Certificate Transparency) Merkle tree math, as pure functions.

* leaf hash  = SHA-256(0x00 || entry)
* node hash  = SHA-256(0x01 || left || right)
* MTH of n > 1 leaves splits at k, the largest power of two strictly below n
  (RFC 6962 §2.1); MTH of the empty tree is SHA-256(b"").

The log keeps leaf hashes, so the tree functions take a sequence of LEAF HASHES
(already ``leaf_hash``-ed), not raw entries.

Error policy (deliberate and uniform):

* Generation (``inclusion_proof``, ``consistency_proof``) raises ``ValueError`` for
  an index or size that is out of range; callers map that to a client error.
* Verification (``verify_inclusion``, ``verify_consistency``) never raises on bad
  input: any out-of-range index/size, wrong proof length or malformed hash makes it
  return ``False``.  They implement the iterative algorithms of RFC 9162
  §2.1.3.2 and §2.1.4.2 and only need hashes (no leaves).

Edge cases outside RFC 9162's ``0 < first < second`` for consistency:

* ``first == second``: the proof is empty; it verifies iff the two roots are equal.
* ``first == 0``: the proof is empty (the empty tree is a prefix of every tree); it
  verifies iff ``first_root`` is the empty-tree root ``EMPTY_ROOT``.

Public API::

    EMPTY_ROOT
    leaf_hash(entry) -> bytes
    node_hash(left, right) -> bytes
    root(leaf_hashes) -> bytes
    inclusion_proof(leaf_hashes, index) -> list[bytes]
    consistency_proof(leaf_hashes, first, second) -> list[bytes]
    verify_inclusion(leaf_hash, index, tree_size, proof, root) -> bool
    verify_consistency(first, second, first_root, second_root, proof) -> bool
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Sequence

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root",
    "inclusion_proof",
    "consistency_proof",
    "verify_inclusion",
    "verify_consistency",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    h = _sha256(b"\x00")
    h.update(entry)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of hashes[lo:hi] (hi > lo), bottom-up without slicing.

    Pairing adjacent nodes level by level and carrying an odd last node up
    unchanged yields exactly the RFC 6962 left-balanced split tree.
    """
    if hi - lo == 1:
        return hashes[lo]
    level = [node_hash(hashes[i], hashes[i + 1]) for i in range(lo, hi - 1, 2)]
    if (hi - lo) & 1:
        level.append(hashes[hi - 1])
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash over the given leaf hashes (EMPTY_ROOT for none)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, n)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[n]) for the tree over all of ``leaf_hashes``.

    Ordered from the leaf's sibling up to the child of the root.  Raises
    ValueError unless 0 <= index < len(leaf_hashes).  O(n) hashing.
    """
    n = len(leaf_hashes)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError("index must be an int")
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} out of range for tree size {n}")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    # Walk down from the root, recording the sibling subtree at each split.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(first, D[second]) over the first ``second`` leaf hashes.

    Raises ValueError unless 0 <= first <= second <= len(leaf_hashes).  For
    first == 0 or first == second the proof is empty.  O(second) hashing.
    """
    for name, value in (("first", first), ("second", second)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int")
    if not 0 <= first <= second <= len(leaf_hashes):
        raise ValueError(
            f"need 0 <= first <= second <= {len(leaf_hashes)}, got first={first} second={second}"
        )
    if first == 0 or first == second:
        return []
    # SUBPROOF(m, D[lo:hi], b), unrolled into a walk down the right spine.
    proof: list[bytes] = []
    lo, hi, m, complete = 0, second, first, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(_mth(leaf_hashes, lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def _is_hash(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and len(value) == HASH_SIZE


def _valid_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show ``leaf_hash`` at ``index`` in a tree of
    ``tree_size`` leaves with root hash ``root``?  Returns False on any bad input."""
    if not (_valid_size(index) and _valid_size(tree_size)) or index >= tree_size:
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    if isinstance(proof, (bytes, bytearray, str)) or not all(_is_hash(p) for p in proof):
        return False
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, bytes(root))


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``first`` leaves (``first_root``) a prefix of
    the tree of ``second`` leaves (``second_root``)?  Returns False on any bad input.

    See the module docstring for first == 0 and first == second.
    """
    if not (_valid_size(first) and _valid_size(second)) or first > second:
        return False
    if not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    if isinstance(proof, (bytes, bytearray, str)) or not all(_is_hash(p) for p in proof):
        return False
    first_root, second_root = bytes(first_root), bytes(second_root)
    if first == 0:
        return len(proof) == 0 and hmac.compare_digest(first_root, EMPTY_ROOT)
    if first == second:
        return len(proof) == 0 and hmac.compare_digest(first_root, second_root)
    # 0 < first < second from here on: the RFC 9162 algorithm.
    path = [bytes(p) for p in proof]
    if not path:
        return False
    if first & (first - 1) == 0:  # first is an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return (
        sn == 0
        and hmac.compare_digest(fr, first_root)
        and hmac.compare_digest(sr, second_root)
    )
