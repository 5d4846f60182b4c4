"""Merkle tree hashing, proofs and their verification as RFC 6962 and RFC 9162 define them.

Pure functions over 32-byte SHA-256 hashes, with no database and no configuration, so that an
auditor can run them on an export on a machine of their own.

- leaf hash  = SHA-256(0x00 || leaf data)
- node hash  = SHA-256(0x01 || left || right)
- the root of n leaves splits at k, the largest power of two smaller than n (RFC 6962 2.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of leaves[start:end], given as leaf hashes."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[start]
    k = split_point(n)
    return node_hash(subtree_root(leaves, start, start + k), subtree_root(leaves, start + k, end))


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head hash of all the given leaf hashes."""
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier = frontier_append(frontier, size, leaf)
    return frontier_root(frontier)


# --- compact ranges: the roots of the perfect subtrees that make up a tree of any size ------


def frontier_append(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """Add one leaf to a tree of `size` leaves, given by its frontier (the roots of its perfect
    subtrees, largest first); returns the frontier of the tree of size + 1."""
    frontier = list(frontier)
    node = leaf
    while size & 1:
        node = node_hash(frontier.pop(), node)
        size >>= 1
    frontier.append(node)
    return frontier


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    node = frontier[-1]
    for left in reversed(frontier[:-1]):
        node = node_hash(left, node)
    return node


# --- proofs (RFC 6962 2.1.1 and 2.1.2) --------------------------------------------------------


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path of leaf `index` in the tree of the first `size` leaves."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            proof.append(subtree_root(leaves, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(leaves, start, start + k))
            start += k
    proof.reverse()  # RFC order: the sibling nearest the leaf first
    return proof


def consistency_proof(
    leaves: Sequence[bytes], first: int, second: int | None = None
) -> list[bytes]:
    """The proof that the tree of `first` leaves is a prefix of the tree of `second` leaves."""
    second = len(leaves) if second is None else second
    if not 0 <= first <= second <= len(leaves):
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    proof: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(subtree_root(leaves, start, end))
            break
        k = split_point(n)
        if m <= k:
            proof.append(subtree_root(leaves, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(leaves, start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ----------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to, or None when the proof has the wrong shape."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    return root_from_inclusion(index, size, leaf, proof) == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if first > second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is itself a node of the path
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
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- signed tree heads (RFC 6962 3.5, TreeHeadSignature) --------------------------------------


def tree_head_message(timestamp_ms: int, tree_size: int, root_hash: bytes) -> bytes:
    """The bytes an Ed25519 tree head signature covers: version v1 (0), signature type
    tree_hash (1), uint64 timestamp in milliseconds, uint64 tree size, the 32-byte root."""
    if len(root_hash) != 32:
        raise ValueError("a root hash is 32 bytes")
    return b"\x00\x01" + timestamp_ms.to_bytes(8, "big") + tree_size.to_bytes(8, "big") + root_hash


ENTRY_SIGNATURE_CONTEXT = b"prescreen-audit-entry/1\n"


def entry_signature_message(leaf: bytes) -> bytes:
    """The bytes an entry signature covers (a prefix that no tree head message starts with)."""
    return ENTRY_SIGNATURE_CONTEXT + leaf
