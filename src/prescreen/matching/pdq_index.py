"""Exact Hamming range search over 256-bit PDQ hashes (multi-index hashing).

Multi-index hashing (Norouzi, Punjani & Fleet) splits each code into ``m`` disjoint
substrings of ``b`` bits. If ``d(x, q) <= r`` then, by pigeonhole, at least one substring
``i`` satisfies ``d_i(x, q) <= s_i`` whenever ``sum(s_i + 1) >= r + 1``. Probing every
key within ``s_i`` of the query's substring in table ``i`` and verifying each candidate
with a full popcount therefore returns exactly what a brute-force scan returns.

Layout (all flat numpy arrays, so a snapshot is a handful of ``.npy`` files that can be
memory-mapped):

* ``codes``: unique codes, ``(u, 4)`` uint64, sorted lexicographically. Table 0 indexes the
  top ``b`` bits of word 0, so it needs no permutation: its buckets are contiguous runs.
* ``perms``: for tables 1..m-1, positions into ``codes`` sorted by that table's substring,
  each in as few little-endian bytes as the index needs (3 up to 16M codes): ``(m-1, u, w)``
  uint8. The tables are the largest part of the index (13 x 4 bytes per code at 1M codes
  with 4-byte positions, against 32 bytes for the code itself), and a server holds them in
  memory.
* ``dirs``: per table, ``2**b + 1`` bucket offsets into the table's sorted order.
* ``id_offsets`` / ``id_index``: CSR from each unique code to the indexes of its ids in
  ``id_keys`` (sorted ids), so identical codes are stored and verified once.
* ``alive``: one tombstone flag per id; removal flips it in place.

A candidate found in several tables is reported only from the first table whose substring
is within that table's probe radius, which dedupes without a visited set.

New codes go to an append-only delta buffer that is scanned linearly; ``compact`` (run in a
background thread once the delta grows past ``delta_limit``) folds the delta in and drops
tombstones. Readers take one reference to an immutable state object and never lock.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "DEFAULT_RADIUS",
    "FORMAT_VERSION",
    "PDQIndex",
    "hamming_brute_force",
    "hex_to_words",
    "words_to_hex",
]

CODE_BITS = 256
CODE_WORDS = 4
DEFAULT_RADIUS = 31
FORMAT_NAME = "prescreen-pdq-index"
# 2: positions in the tables packed into as few bytes as they need. A version 1 snapshot
# (4-byte positions) is still read; an older release refuses a version 2 one and rebuilds.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, FORMAT_VERSION)
_MAX_PROBE_RADIUS = 6
_AHEAD = 16  # how many candidates ahead to prefetch
_MIN_TABLE_BITS = 4
_MAX_TABLE_BITS = 24
_FIRST_RESULT_CAP = 1024
_BATCH_RESULT_CAP = 256
_BATCH_CHUNK = 4096
_OVERFLOW_BUDGET = 1 << 24  # result slots per overflow rerun group
# Rough per-operation costs (ns) on a current x86 core; only their ratios matter. They
# decide between probing the tables and scanning every code sequentially.
_COST_LINEAR = 1.0
_COST_CANDIDATE = 6.0
_COST_PROBE_SMALL = 4.0
_COST_PROBE_LARGE = 25.0

# Numba's default "workqueue" threading layer aborts on concurrent parallel regions, so
# parallel kernels are entered one caller at a time. Single-query search never takes it.
_PARALLEL_LOCK = threading.Lock()


# --------------------------------------------------------------------------- kernels


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    """Hardware popcount of a uint64 (numba exposes no builtin for it)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


def _prefetch_codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = [
        context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:], strict=True)
    ]
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
    i8p = ir.IntType(8).as_pointer()
    # The intrinsic's mangled name depends on whether the IR uses opaque pointers.
    name = "llvm.prefetch.p0" if str(i8p) == "ptr" else "llvm.prefetch.p0i8"
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    # read, high temporal locality, data cache
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch1(typingctx, arr, i):  # type: ignore[no-untyped-def]
    """Software prefetch of ``arr[i]``: candidates are random reads, and issuing them
    well ahead keeps many cache misses in flight at once."""
    return types.void(arr, i), _prefetch_codegen


@intrinsic
def _prefetch2(typingctx, arr, i, j):  # type: ignore[no-untyped-def]
    """Software prefetch of ``arr[i, j]``."""
    return types.void(arr, i, j), _prefetch_codegen


@intrinsic
def _prefetch3(typingctx, arr, i, j, k):  # type: ignore[no-untyped-def]
    """Software prefetch of ``arr[i, j, k]``."""
    return types.void(arr, i, j, k), _prefetch_codegen


@njit(inline="always", nogil=True)
def _position(perms, t, p):  # type: ignore[no-untyped-def]
    """Entry ``p`` of table ``t``'s order: a position into ``codes``, little-endian bytes."""
    value = np.int64(0)
    for b in range(perms.shape[2]):
        value |= np.int64(perms[t, p, b]) << (8 * b)
    return value


@njit(inline="always", nogil=True)
def _key(words, row, start, bits):  # type: ignore[no-untyped-def]
    """Bits ``[start, start + bits)`` of a row of big-endian 64-bit words, as uint64."""
    w = start >> 6
    off = start & 63
    if off + bits <= 64:
        return (words[row, w] >> np.uint64(64 - off - bits)) & np.uint64((1 << bits) - 1)
    hi = 64 - off
    lo = bits - hi
    head = (words[row, w] & np.uint64((1 << hi) - 1)) << np.uint64(lo)
    return head | (words[row, w + 1] >> np.uint64(64 - lo))


@njit(inline="always", nogil=True)
def _distance(codes, u, q0, q1, q2, q3):  # type: ignore[no-untyped-def]
    return (
        _popcount(codes[u, 0] ^ q0)
        + _popcount(codes[u, 1] ^ q1)
        + _popcount(codes[u, 2] ^ q2)
        + _popcount(codes[u, 3] ^ q3)
    )


@njit(nogil=True, cache=True)
def _mih_candidates(perms, dirs, bits, sub_radii, masks, mask_ends, qs, qi):  # type: ignore[no-untyped-def]
    """Positions (and source table) of every code in a probed bucket, plus query keys.

    Bucket ranges and candidate positions are gathered in separate passes so each pass
    is a tight loop of independent loads the CPU can overlap; one nested loop would
    stall on a chain of dependent cache misses per probe."""
    m = dirs.shape[0]
    qkeys = np.empty(m, np.uint64)
    n_probes = 0
    for t in range(m):
        qkeys[t] = _key(qs, qi, t * bits, bits)
        if sub_radii[t] >= 0:
            n_probes += mask_ends[sub_radii[t]]
    lo = np.empty(n_probes, np.int64)
    hi = np.empty(n_probes, np.int64)
    tab = np.empty(n_probes, np.int64)
    c = 0
    for t in range(m):
        s = sub_radii[t]
        if s < 0:
            continue
        for j in range(mask_ends[s]):
            k = np.int64(qkeys[t] ^ masks[j])
            _prefetch2(dirs, t, k)
            lo[c] = k
            tab[c] = t
            c += 1
    for j in range(n_probes):
        k = lo[j]
        lo[j] = dirs[tab[j], k]
        hi[j] = dirs[tab[j], k + 1]
        if j + _AHEAD < n_probes and tab[j + _AHEAD] > 0:
            _prefetch3(perms, tab[j + _AHEAD] - 1, dirs[tab[j + _AHEAD], lo[j + _AHEAD]], 0)
    n_cand = 0
    for j in range(n_probes):
        n_cand += hi[j] - lo[j]
    cand = np.empty(n_cand, np.int64)
    ctab = np.empty(n_cand, np.int64)
    c = 0
    for j in range(n_probes):
        t = tab[j]
        if t == 0:
            for p in range(lo[j], hi[j]):
                cand[c] = p
                ctab[c] = 0
                c += 1
        else:
            for p in range(lo[j], hi[j]):
                cand[c] = _position(perms, t - 1, p)
                ctab[c] = t
                c += 1
    return cand, ctab, qkeys


@njit(nogil=True, cache=True)
def _mih_verify(codes, bits, sub_radii, cand, ctab, qkeys, qs, qi, radius, out_pos, out_dist):  # type: ignore[no-untyped-def]
    """Popcount-verify candidates; a code is reported only from the first table whose
    substring is within that table's probe radius, so no visited set is needed.
    Returns the match count (writes at most len(out_pos))."""
    q0, q1, q2, q3 = qs[qi, 0], qs[qi, 1], qs[qi, 2], qs[qi, 3]
    cap = out_pos.shape[0]
    count = 0
    n = cand.shape[0]
    for j in range(min(_AHEAD, n)):
        _prefetch2(codes, cand[j], 0)
    for j in range(n):
        if j + _AHEAD < n:
            _prefetch2(codes, cand[j + _AHEAD], 0)
        u = cand[j]
        d = _distance(codes, u, q0, q1, q2, q3)
        if d > radius:
            continue
        seen = False
        for t2 in range(ctab[j]):
            s2 = sub_radii[t2]
            if s2 >= 0 and _popcount(_key(codes, u, t2 * bits, bits) ^ qkeys[t2]) <= s2:
                seen = True
                break
        if seen:
            continue
        if count < cap:
            out_pos[count] = u
            out_dist[count] = d
        count += 1
    return count


@njit(nogil=True, cache=True)
def _mih_search(codes, perms, dirs, bits, sub_radii, masks, mask_ends, qs, qi, radius):  # type: ignore[no-untyped-def]
    """One query: matched unique-code positions and distances (never overflows)."""
    cand, ctab, qkeys = _mih_candidates(perms, dirs, bits, sub_radii, masks, mask_ends, qs, qi)
    pos = np.empty(cand.shape[0], np.int64)
    dist = np.empty(cand.shape[0], np.int32)
    count = _mih_verify(codes, bits, sub_radii, cand, ctab, qkeys, qs, qi, radius, pos, dist)
    return pos[:count], dist[:count]


@njit(nogil=True, cache=True)
def _mih_into(
    codes, perms, dirs, bits, sub_radii, masks, mask_ends, qs, qi, radius, out_pos, out_dist
):  # type: ignore[no-untyped-def]
    cand, ctab, qkeys = _mih_candidates(perms, dirs, bits, sub_radii, masks, mask_ends, qs, qi)
    return _mih_verify(codes, bits, sub_radii, cand, ctab, qkeys, qs, qi, radius, out_pos, out_dist)


@njit(nogil=True, cache=True)
def _scan_into(codes, n, qs, qi, radius, out_pos, out_dist):  # type: ignore[no-untyped-def]
    """Sequential popcount scan of the first ``n`` codes for one query."""
    q0, q1, q2, q3 = qs[qi, 0], qs[qi, 1], qs[qi, 2], qs[qi, 3]
    cap = out_pos.shape[0]
    count = 0
    for u in range(n):
        d = _distance(codes, u, q0, q1, q2, q3)
        if d <= radius:
            if count < cap:
                out_pos[count] = u
                out_dist[count] = d
            count += 1
    return count


@njit(nogil=True, cache=True, parallel=True)
def _mih_batch(
    codes, perms, dirs, bits, sub_radii, masks, mask_ends, qs, radius, out_pos, out_dist, counts
):  # type: ignore[no-untyped-def]
    for i in prange(qs.shape[0]):
        counts[i] = _mih_into(
            codes,
            perms,
            dirs,
            bits,
            sub_radii,
            masks,
            mask_ends,
            qs,
            i,
            radius,
            out_pos[i],
            out_dist[i],
        )


@njit(nogil=True, cache=True, parallel=True)
def _scan_batch(codes, n, qs, radius, out_pos, out_dist, counts):  # type: ignore[no-untyped-def]
    for i in prange(qs.shape[0]):
        counts[i] = _scan_into(codes, n, qs, i, radius, out_pos[i], out_dist[i])


@njit(nogil=True, cache=True)
def _expand_ids(pos, dist, id_offsets, id_index, id_keys, alive):  # type: ignore[no-untyped-def]
    """Map matched unique-code positions to their live ids (one row per id)."""
    total = 0
    for j in range(pos.shape[0]):
        total += np.int64(id_offsets[pos[j] + 1]) - np.int64(id_offsets[pos[j]])
    ids = np.empty(total, np.int64)
    out = np.empty(total, np.int32)
    c = 0
    for j in range(pos.shape[0]):
        for e in range(np.int64(id_offsets[pos[j]]), np.int64(id_offsets[pos[j] + 1])):
            x = id_index[e]
            if alive[x]:
                ids[c] = id_keys[x]
                out[c] = dist[j]
                c += 1
    return ids[:c], out[:c]


@njit(inline="always", nogil=True)
def _row_less(codes, a, b):  # type: ignore[no-untyped-def]
    for w in range(4):
        if codes[a, w] != codes[b, w]:
            return codes[a, w] < codes[b, w]
    return False


@njit(nogil=True, cache=True)
def _sort_bucket(rows, order, lo, hi):  # type: ignore[no-untyped-def]
    """Sort ``rows[lo:hi]`` (and ``order`` alongside) lexicographically: insertion sort for
    the usual tiny bucket, LSD stable sorts (word 3 first) for a big one (clusters)."""
    if hi - lo <= 32:
        tmp = np.empty((1, 4), np.uint64)
        for i in range(lo + 1, hi):
            tmp[0, :] = rows[i, :]
            x = order[i]
            j = i - 1
            while j >= lo and _row_less_pair(tmp, rows, j):
                rows[j + 1, :] = rows[j, :]
                order[j + 1] = order[j]
                j -= 1
            rows[j + 1, :] = tmp[0, :]
            order[j + 1] = x
        return
    perm = np.arange(hi - lo)
    for w in range(3, -1, -1):
        vals = np.empty(hi - lo, np.uint64)
        for r in range(hi - lo):
            vals[r] = rows[lo + perm[r], w]
        perm = perm[np.argsort(vals, kind="mergesort")]
    block = rows[lo:hi].copy()
    idx = order[lo:hi].copy()
    for r in range(hi - lo):
        rows[lo + r, :] = block[perm[r], :]
        order[lo + r] = idx[perm[r]]


@njit(inline="always", nogil=True)
def _row_less_pair(tmp, rows, j):  # type: ignore[no-untyped-def]
    for w in range(4):
        if tmp[0, w] != rows[j, w]:
            return tmp[0, w] < rows[j, w]
    return False


@njit(nogil=True, cache=True)
def _lex_sort(codes, top_bits):  # type: ignore[no-untyped-def]
    """Codes sorted lexicographically and the source row of each: a counting-sort
    scatter on the top bits of word 0 (sequential reads, buffered writes), then each
    small bucket sorted in place. Much faster than argsort + gather at 10M rows."""
    n = codes.shape[0]
    offsets = np.zeros((1 << top_bits) + 1, np.int64)
    shift = np.uint64(64 - top_bits)
    for i in range(n):
        offsets[np.int64(codes[i, 0] >> shift) + 1] += 1
    for k in range(1 << top_bits):
        offsets[k + 1] += offsets[k]
    nxt = offsets[:-1].copy()
    rows = np.empty((n, 4), np.uint64)
    order = np.empty(n, np.int64)
    for i in range(n):
        k = np.int64(codes[i, 0] >> shift)
        rows[nxt[k], :] = codes[i, :]
        order[nxt[k]] = i
        nxt[k] += 1
    for k in range(1 << top_bits):
        if offsets[k + 1] - offsets[k] > 1:
            _sort_bucket(rows, order, offsets[k], offsets[k + 1])
    return rows, order


@njit(nogil=True, cache=True)
def _unique_sorted(rows):  # type: ignore[no-untyped-def]
    """Compact a sorted code array to its distinct rows in place; return how many there
    are and where each run started (in place saves a full copy at 100M codes)."""
    n = rows.shape[0]
    starts = np.empty(n, np.int64)
    u = 0
    for i in range(n):
        if (
            i == 0
            or rows[i, 0] != rows[u - 1, 0]
            or rows[i, 1] != rows[u - 1, 1]
            or rows[i, 2] != rows[u - 1, 2]
            or rows[i, 3] != rows[u - 1, 3]
        ):
            if u != i:
                rows[u, :] = rows[i, :]
            starts[u] = i
            u += 1
    return u, starts[:u].copy()


@njit(nogil=True, cache=True)
def _table_dir(codes, start, bits):  # type: ignore[no-untyped-def]
    """Bucket offsets (counting-sort prefix sums) of one substring table."""
    u = codes.shape[0]
    offsets = np.zeros((1 << bits) + 1, np.int64)
    for i in range(u):
        offsets[np.int64(_key(codes, i, start, bits)) + 1] += 1
    for k in range(1 << bits):
        offsets[k + 1] += offsets[k]
    return offsets


@njit(nogil=True, cache=True)
def _table_perm(codes, start, bits, offsets, perm):  # type: ignore[no-untyped-def]
    """Stable counting-sort scatter: within a bucket, positions ascend (friendlier reads).
    Each position is written as ``perm.shape[1]`` little-endian bytes."""
    nxt = offsets[:-1].copy()
    for i in range(codes.shape[0]):
        k = np.int64(_key(codes, i, start, bits))
        for b in range(perm.shape[1]):
            perm[nxt[k], b] = (i >> (8 * b)) & 0xFF
        nxt[k] += 1


@njit(nogil=True, cache=True)
def _live_rows(codes, id_offsets, id_index, id_keys, alive):  # type: ignore[no-untyped-def]
    """(code, id) rows of every live id, for compaction."""
    n_live = 0
    for x in range(alive.shape[0]):
        if alive[x]:
            n_live += 1
    out_codes = np.empty((n_live, 4), np.uint64)
    out_ids = np.empty(n_live, np.int64)
    c = 0
    for u in range(codes.shape[0]):
        for e in range(np.int64(id_offsets[u]), np.int64(id_offsets[u + 1])):
            x = id_index[e]
            if alive[x]:
                out_codes[c, :] = codes[u, :]
                out_ids[c] = id_keys[x]
                c += 1
    return out_codes, out_ids


# --------------------------------------------------------------------------- helpers


def hex_to_words(hex_strings: Iterable[str] | str) -> np.ndarray:
    """64-char hex PDQ hashes -> ``(n, 4)`` uint64, word 0 = first 16 hex chars."""
    if isinstance(hex_strings, str):
        hex_strings = [hex_strings]
    items = list(hex_strings)
    if any(len(h) != 64 for h in items):
        raise ValueError("PDQ hashes must be 64 hex characters")
    raw = bytes.fromhex("".join(items))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(items), CODE_WORDS)


def words_to_hex(words: np.ndarray) -> list[str]:
    """Inverse of :func:`hex_to_words`."""
    arr = np.asarray(words, dtype=np.uint64).reshape(-1, CODE_WORDS)
    text = arr.astype(">u8").tobytes().hex()
    return [text[i : i + 64] for i in range(0, len(text), 64)]


def hamming_brute_force(
    codes: np.ndarray, query: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: row indexes of ``codes`` within ``radius`` of ``query`` and distances."""
    codes = _as_codes(codes)
    q = _as_codes(query)
    if q.shape[0] != 1:
        raise ValueError("query must be a single code")
    dist = np.bitwise_count(codes ^ q).sum(axis=1, dtype=np.int32)
    rows = np.flatnonzero(dist <= radius)
    return rows.astype(np.int64), dist[rows]


def _as_codes(codes: np.ndarray | str | Sequence[str]) -> np.ndarray:
    """Accept ``(n, 4)``/``(4,)`` integer arrays or hex strings; return ``(n, 4)`` uint64."""
    if isinstance(codes, str) or (
        isinstance(codes, Sequence) and len(codes) > 0 and isinstance(codes[0], str)
    ):
        return hex_to_words(codes)  # type: ignore[arg-type]
    arr = np.asarray(codes)
    if arr.dtype != np.uint64:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"codes must be integers, got {arr.dtype}")
        arr = arr.astype(np.uint64)
    if arr.ndim == 1 and arr.shape[0] == CODE_WORDS:
        arr = arr.reshape(1, CODE_WORDS)
    if arr.ndim != 2 or arr.shape[1] != CODE_WORDS:
        raise ValueError(f"codes must have shape (n, 4), got {arr.shape}")
    return np.ascontiguousarray(arr)


def _readonly(a: np.ndarray) -> np.ndarray:
    """Read-only view, so numba compiles one specialisation for built and mmapped arrays."""
    v = a.view()
    v.flags.writeable = False
    return v


def _sub_radii(radius: int, n_tables: int) -> np.ndarray:
    """Per-table probe radii with ``sum(s_i + 1) == radius + 1`` (generalised pigeonhole)."""
    base, rem = divmod(radius + 1, n_tables)
    return np.array([base - 1 + (i < rem) for i in range(n_tables)], dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _flip_masks(bits: int, max_flips: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``bits``-bit masks with popcount <= max_flips, ordered by popcount, and the
    cumulative count per popcount (``ends[s]`` masks have popcount <= s)."""
    masks: list[int] = []
    ends = []
    for k in range(max_flips + 1):
        for combo in itertools.combinations(range(bits), k):
            masks.append(sum(1 << b for b in combo))
        ends.append(len(masks))
    return _readonly(np.array(masks, np.uint64)), _readonly(np.array(ends, np.int64))


_Plan = tuple[np.ndarray, np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=256)
def _plan(n_tables: int, bits: int, n_unique: int, radius: int, strategy: str) -> _Plan | None:
    """(probe radii, flip masks, mask ends) if probing beats a scan (or is forced), else
    None for a linear scan. Cached: it sits on the per-query path."""
    if strategy not in ("auto", "mih", "linear"):
        raise ValueError(f"unknown strategy {strategy!r}")
    sub = _sub_radii(radius, n_tables)
    if strategy == "linear" or int(sub.max()) > min(_MAX_PROBE_RADIUS, bits - 1):
        return None
    if strategy == "auto":
        probes = _probe_count(bits, sub)
        per_probe = _COST_PROBE_SMALL if bits <= 18 else _COST_PROBE_LARGE
        cands = probes * n_unique / float(1 << bits)
        if probes * per_probe + cands * _COST_CANDIDATE >= n_unique * _COST_LINEAR:
            return None
    masks, ends = _flip_masks(bits, int(sub.max()))
    sub.flags.writeable = False
    return sub, masks, ends


def _probe_count(bits: int, sub_radii: np.ndarray) -> int:
    return sum(sum(math.comb(bits, k) for k in range(int(s) + 1)) for s in sub_radii if s >= 0)


def _choose_table_bits(n_unique: int) -> int:
    """Substring width: about log2(n) so buckets hold a few codes, capped so the bucket
    directories stay a small share of memory (<= ~20 bytes per code)."""
    if n_unique <= 0:
        return 16
    bits = max(16, min(23, round(math.log2(n_unique)) - 1))
    while bits > 16 and (CODE_BITS // bits) * ((1 << bits) + 1) * 4 > 20 * n_unique:
        bits -= 1
    return bits


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class _Main:
    """Immutable compacted index (the arrays are read-only except ``alive``)."""

    bits: int
    codes: np.ndarray  # (u, 4) uint64, lexicographic
    perms: np.ndarray  # (m - 1, u, w) uint8: positions into codes in w little-endian bytes
    dirs: np.ndarray  # (m, 2**bits + 1) uint32/int64 bucket offsets
    id_offsets: np.ndarray  # (u + 1,) uint32/int64 CSR into id_index
    id_index: np.ndarray  # (n,) uint32/int64 indexes into id_keys
    id_keys: np.ndarray  # (n,) int64 sorted ids
    alive: np.ndarray  # (n,) bool, writable

    @property
    def n_tables(self) -> int:
        return int(self.dirs.shape[0])

    @property
    def n_unique(self) -> int:
        return int(self.codes.shape[0])

    def nbytes(self) -> int:
        return sum(int(getattr(self, f).nbytes) for f in _MAIN_ARRAYS)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Indexes into id_keys of the given ids that are stored and alive."""
        if self.id_keys.shape[0] == 0 or ids.shape[0] == 0:
            return np.empty(0, np.int64)
        pos = np.searchsorted(self.id_keys, ids)
        pos = np.minimum(pos, self.id_keys.shape[0] - 1)
        hit = (self.id_keys[pos] == ids) & self.alive[pos]
        return pos[hit]


_MAIN_ARRAYS = ("codes", "perms", "dirs", "id_offsets", "id_index", "id_keys", "alive")


def _offset_dtype(n: int) -> type:
    return np.uint32 if n < 2**32 - 1 else np.int64


def _position_bytes(n: int) -> int:
    """Bytes a position into `n` codes takes in the tables."""
    return 3 if n < 2**24 else 4 if n < 2**32 else 8


def _packed_positions(perms: np.ndarray) -> np.ndarray:
    """The tables as ``(m - 1, u, w)`` bytes; snapshots written before positions were packed
    hold them as ``(m - 1, u)`` integers, which are read as their bytes without a copy."""
    if perms.ndim == 3:
        return perms
    little = perms.astype(perms.dtype.newbyteorder("<"), copy=False)
    return little.view(np.uint8).reshape(*perms.shape, perms.dtype.itemsize)


def _dedupe_ids(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by id, keeping the last row of a repeated id (later adds win)."""
    if ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return codes, ids
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    last = np.ones(ids.shape[0], np.bool_)
    last[:-1] = sorted_ids[1:] != sorted_ids[:-1]
    keep = order[last]
    return codes[keep], sorted_ids[last]


def _lexicographic_sort(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top_bits = max(8, min(22, int(np.log2(max(codes.shape[0], 1)))))
    return _lex_sort(codes, top_bits)  # type: ignore[no-any-return]


def _build_main(codes: np.ndarray, ids: np.ndarray, table_bits: int | None) -> _Main | None:
    codes, ids = _dedupe_ids(codes, ids)
    n = ids.shape[0]
    if n == 0:
        return None
    rows, order = _lexicographic_sort(codes)
    n_unique, starts = _unique_sorted(rows)
    ucodes = rows[:n_unique] if n_unique > 0.9 * n else rows[:n_unique].copy()
    del rows
    u = ucodes.shape[0]
    bits = table_bits or _choose_table_bits(u)
    if not _MIN_TABLE_BITS <= bits <= _MAX_TABLE_BITS:
        raise ValueError(f"table_bits must be in [{_MIN_TABLE_BITS}, {_MAX_TABLE_BITS}]")
    m = CODE_BITS // bits
    pos_dtype = _offset_dtype(max(u, n))
    dirs = np.empty((m, (1 << bits) + 1), pos_dtype)
    perms = np.empty((m - 1, u, _position_bytes(u)), np.uint8)

    def build_table(t: int) -> None:
        offsets = _table_dir(ucodes, t * bits, bits)
        dirs[t] = offsets
        if t:
            _table_perm(ucodes, t * bits, bits, offsets, perms[t - 1])

    # The kernels release the GIL, so plain threads build tables on every core.
    with ThreadPoolExecutor(max_workers=min(m, os.cpu_count() or 1)) as pool:
        list(pool.map(build_table, range(m)))
    id_offsets = np.empty(u + 1, pos_dtype)
    id_offsets[:-1] = starts
    id_offsets[-1] = n
    return _Main(
        bits=bits,
        codes=_readonly(ucodes),
        perms=_readonly(perms),
        dirs=_readonly(dirs),
        id_offsets=_readonly(id_offsets),
        id_index=_readonly(order.astype(pos_dtype)),
        id_keys=_readonly(np.ascontiguousarray(ids, np.int64)),
        alive=np.ones(n, np.bool_),
    )


class _Delta:
    """Append-only buffer of recent adds; slots past the published count are private."""

    def __init__(self, capacity: int = 1024) -> None:
        self.codes = np.zeros((capacity, CODE_WORDS), np.uint64)
        self.ids = np.zeros(capacity, np.int64)
        self.alive = np.zeros(capacity, np.bool_)
        self.slot_of: dict[int, int] = {}

    @property
    def capacity(self) -> int:
        return int(self.ids.shape[0])

    def grown(self, count: int, need: int) -> _Delta:
        """A larger copy; readers keep using the old buffer until the state is swapped."""
        new = _Delta(max(need, 2 * self.capacity))
        new.codes[:count] = self.codes[:count]
        new.ids[:count] = self.ids[:count]
        new.alive[:count] = self.alive[:count]
        new.slot_of = dict(self.slot_of)
        return new


@dataclass(frozen=True)
class _State:
    """What a reader needs, swapped atomically as one reference."""

    main: _Main | None
    delta: _Delta
    delta_count: int


# --------------------------------------------------------------------------- index


class PDQIndex:
    """Exact Hamming range search over 256-bit PDQ codes.

    Thread safety: any number of threads may search while one thread at a time adds,
    removes or compacts (writers serialise on an internal lock; readers never lock).
    """

    def __init__(self, *, delta_limit: int = 65536, background_compaction: bool = True) -> None:
        self.delta_limit = delta_limit
        self.background_compaction = background_compaction
        self._state = _State(None, _Delta(), 0)
        self._write_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._removed_log: list[np.ndarray] | None = None
        self._compactor: threading.Thread | None = None
        self._n_live = 0
        self._table_bits: int | None = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def build(
        cls, codes: np.ndarray, ids: np.ndarray, *, table_bits: int | None = None, **kwargs: object
    ) -> PDQIndex:
        """Bulk-build from ``(n, 4)`` uint64 codes and ``(n,)`` int64 ids (a repeated id
        keeps its last code). ``table_bits`` overrides the substring width."""
        codes, ids = _check_rows(codes, ids)
        index = cls(**kwargs)  # type: ignore[arg-type]
        index._table_bits = table_bits
        main = _build_main(codes, ids, table_bits)
        index._state = _State(main, _Delta(), 0)
        index._n_live = 0 if main is None else int(main.id_keys.shape[0])
        return index

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add (or re-point) ids; visible to searches as soon as this returns."""
        codes, ids = _check_rows(codes, ids)
        if ids.shape[0] == 0:
            return
        codes, ids = _dedupe_ids(codes, ids)
        with self._write_lock:
            st = self._state
            delta = st.delta
            count = st.delta_count
            k = ids.shape[0]
            if count + k > delta.capacity:
                delta = delta.grown(count, count + k)
            delta.codes[count : count + k] = codes
            delta.ids[count : count + k] = ids
            delta.alive[count : count + k] = True
            self._state = _State(st.main, delta, count + k)
            # Tombstone previous versions only after the new rows are visible.
            replaced = self._tombstone(st.main, delta, ids)
            for j, i in enumerate(ids.tolist()):
                delta.slot_of[i] = count + j
            self._n_live += k - replaced
            if self._removed_log is not None:
                self._removed_log.append(ids)
            should_compact = count + k >= self.delta_limit
        if should_compact:
            self._maybe_compact()

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone ids; unknown ids are ignored."""
        ids = np.unique(np.asarray(ids, np.int64).reshape(-1))
        if ids.shape[0] == 0:
            return
        with self._write_lock:
            st = self._state
            removed = self._tombstone(st.main, st.delta, ids)
            for i in ids.tolist():
                st.delta.slot_of.pop(i, None)
            self._n_live -= removed
            if self._removed_log is not None:
                self._removed_log.append(ids)

    @staticmethod
    def _tombstone(main: _Main | None, delta: _Delta, ids: np.ndarray) -> int:
        """Mark live rows with these ids dead (caller holds the write lock)."""
        n = 0
        if main is not None:
            hit = main.lookup(ids)
            main.alive[hit] = False
            n += int(hit.shape[0])
        for i in ids.tolist():
            slot = delta.slot_of.get(i)
            if slot is not None and delta.alive[slot]:
                delta.alive[slot] = False
                n += 1
        return n

    def compact(self) -> None:
        """Fold the delta into a freshly built main index and drop tombstones.

        The rebuild runs without the write lock; adds and removes made meanwhile are
        replayed onto the new index before it is swapped in."""
        with self._compact_lock:
            with self._write_lock:
                st = self._state
                self._removed_log = []
            try:
                new_main = self._rebuild(st)
            except BaseException:
                with self._write_lock:
                    self._removed_log = None
                raise
            with self._write_lock:
                cur = self._state
                if new_main is not None:
                    for ids in self._removed_log:
                        new_main.alive[new_main.lookup(ids)] = False
                self._removed_log = None
                tail = _Delta()
                live = np.flatnonzero(cur.delta.alive[st.delta_count : cur.delta_count])
                live += st.delta_count
                if live.shape[0]:
                    tail = tail.grown(0, live.shape[0])
                    k = live.shape[0]
                    tail.codes[:k] = cur.delta.codes[live]
                    tail.ids[:k] = cur.delta.ids[live]
                    tail.alive[:k] = True
                    tail.slot_of = {i: j for j, i in enumerate(tail.ids[:k].tolist())}
                self._state = _State(new_main, tail, int(live.shape[0]))

    def _rebuild(self, st: _State) -> _Main | None:
        parts_codes = []
        parts_ids = []
        main = st.main
        # Removes keep tombstoning these arrays while they are read without the lock. Counting
        # then collecting (as `_live_rows` and `np.flatnonzero` do) on a changing array leaves
        # uninitialised rows, so both read private copies; later removes are replayed after.
        if main is not None:
            alive = main.alive.copy()
            c, i = _live_rows(main.codes, main.id_offsets, main.id_index, main.id_keys, alive)
            parts_codes.append(c)
            parts_ids.append(i)
        live = np.flatnonzero(st.delta.alive[: st.delta_count].copy())
        parts_codes.append(st.delta.codes[live])
        parts_ids.append(st.delta.ids[live])
        codes = np.concatenate(parts_codes)
        ids = np.concatenate(parts_ids)
        return _build_main(codes, ids, self._table_bits)

    def _maybe_compact(self) -> None:
        if not self.background_compaction:
            self.compact()
            return
        if self._compactor is not None and self._compactor.is_alive():
            return
        self._compactor = threading.Thread(target=self.compact, name="pdq-compact", daemon=True)
        self._compactor.start()

    def wait_for_compaction(self, timeout: float | None = None) -> None:
        """Block until a running background compaction has finished."""
        t = self._compactor
        if t is not None:
            t.join(timeout)

    # ----------------------------------------------------------------- search

    def search(
        self, code: np.ndarray | str, radius: int, *, strategy: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids and distances of every live id whose code is within ``radius``
        (inclusive), nearest first.

        ``strategy``: "auto" (cost model), "mih" (probe tables) or "linear" (scan)."""
        q = _as_codes(code)
        if q.shape[0] != 1:
            raise ValueError("search takes one code; use search_batch")
        st = self._state
        parts = [self._search_main(st.main, q, radius, strategy)]
        parts.append(_search_delta(st, q, radius))
        return _merge(parts)

    def search_batch(
        self, codes: np.ndarray | Sequence[str], radius: int, *, strategy: str = "auto"
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`search` for many codes, spread over all cores."""
        qs = _as_codes(codes)
        st = self._state
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for lo in range(0, qs.shape[0], _BATCH_CHUNK):
            chunk = qs[lo : lo + _BATCH_CHUNK]
            mains = self._batch_main(st.main, chunk, radius, strategy)
            for j in range(chunk.shape[0]):
                delta = _search_delta(st, chunk[j : j + 1], radius)
                out.append(_merge([mains[j], delta]))
        return out

    def search_dihedral(
        self, codes8: np.ndarray | Sequence[str], radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Query the rotation/mirror variants of one image at once.

        Returns ``(ids, distances, variants)``: each matching id once, with its best
        distance over the variants and the index of the (first) variant achieving it."""
        hits = self.search_batch(codes8, radius)
        ids = np.concatenate([h[0] for h in hits])
        dist = np.concatenate([h[1] for h in hits])
        variant = np.concatenate([np.full(h[0].shape[0], v, np.int32) for v, h in enumerate(hits)])
        order = np.lexsort((variant, dist, ids))
        ids, dist, variant = ids[order], dist[order], variant[order]
        first = np.ones(ids.shape[0], np.bool_)
        first[1:] = ids[1:] != ids[:-1]
        ids, dist, variant = ids[first], dist[first], variant[first]
        order = np.lexsort((ids, dist))
        return ids[order], dist[order], variant[order]

    def _search_main(
        self, main: _Main | None, q: np.ndarray, radius: int, strategy: str
    ) -> tuple[np.ndarray, np.ndarray]:
        if main is None or radius < 0:
            return _EMPTY
        plan = _plan(main.n_tables, main.bits, main.n_unique, radius, strategy)
        if plan is not None:
            sub, masks, ends = plan
            pos, dist = _mih_search(
                main.codes, main.perms, main.dirs, main.bits, sub, masks, ends, q, 0, radius
            )
            return _expand_ids(pos, dist, main.id_offsets, main.id_index, main.id_keys, main.alive)
        cap = _FIRST_RESULT_CAP
        while True:
            pos = np.empty(cap, np.int64)
            dist = np.empty(cap, np.int32)
            count = _scan_into(main.codes, main.n_unique, q, 0, radius, pos, dist)
            if count <= cap:
                break
            cap = count
        return _expand_ids(
            pos[:count], dist[:count], main.id_offsets, main.id_index, main.id_keys, main.alive
        )

    def _batch_main(
        self, main: _Main | None, qs: np.ndarray, radius: int, strategy: str
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        nq = qs.shape[0]
        if main is None or radius < 0:
            return [_EMPTY] * nq
        plan = _plan(main.n_tables, main.bits, main.n_unique, radius, strategy)
        pos, dist, counts = _run_batch(main, plan, qs, radius, _BATCH_RESULT_CAP)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for j in range(nq):
            c = int(counts[j])
            if c <= _BATCH_RESULT_CAP:
                found[j] = (pos[j, :c], dist[j, :c])
        # Queries with more matches than the buffer: rerun them in parallel, in groups
        # sized by their (now known) match counts.
        over = [j for j in range(nq) if j not in found]
        while over:
            group, cap = [], 0
            for j in over:
                if group and max(cap, int(counts[j])) * (len(group) + 1) > _OVERFLOW_BUDGET:
                    break
                group.append(j)
                cap = max(cap, int(counts[j]))
            over = over[len(group) :]
            gpos, gdist, gcounts = _run_batch(main, plan, qs[group], radius, cap)
            for r, j in enumerate(group):
                found[j] = (gpos[r, : gcounts[r]], gdist[r, : gcounts[r]])
        return [
            _expand_ids(*found[j], main.id_offsets, main.id_index, main.id_keys, main.alive)
            for j in range(nq)
        ]

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot directory: one ``.npy`` per array plus ``header.json``.

        Written to a sibling temp directory and renamed into place, so a crash never
        leaves a half-written snapshot at ``path``."""
        target = Path(path)
        with self._write_lock:
            st = self._state
            alive = None if st.main is None else st.main.alive.copy()
            live = np.flatnonzero(st.delta.alive[: st.delta_count])
            delta_codes = st.delta.codes[live].copy()
            delta_ids = st.delta.ids[live].copy()
            n_live = self._n_live
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays: dict[str, np.ndarray] = {"delta_codes": delta_codes, "delta_ids": delta_ids}
        if st.main is not None:
            for name in _MAIN_ARRAYS:
                arrays[name] = getattr(st.main, name)
            arrays["alive"] = alive  # type: ignore[assignment]
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "table_bits": None if st.main is None else st.main.bits,
            "forced_table_bits": self._table_bits,
            "n_live": n_live,
            "arrays": {
                k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()
            },
        }
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        (tmp / "header.json").write_text(json.dumps(header, indent=1))
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = True, **kwargs: object) -> PDQIndex:
        """Open a snapshot; with ``mmap`` the big arrays are paged in on demand."""
        root = Path(path)
        header = json.loads((root / "header.json").read_text())
        if header.get("format") != FORMAT_NAME:
            raise ValueError(f"{root} is not a PDQ index snapshot")
        if header.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported PDQ index snapshot version {header.get('version')}")
        specs = header["arrays"]

        def read(name: str, mode: str | None) -> np.ndarray:
            arr = np.load(root / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
            spec = specs[name]
            if arr.dtype.str != spec["dtype"] or list(arr.shape) != spec["shape"]:
                raise ValueError(f"snapshot array {name} does not match its header")
            return np.asarray(arr)

        index = cls(**kwargs)  # type: ignore[arg-type]
        index._table_bits = header.get("forced_table_bits")
        main = None
        if header["table_bits"] is not None:
            mode = "r" if mmap else None
            arrays = {n: _readonly(read(n, mode)) for n in _MAIN_ARRAYS if n != "alive"}
            arrays["perms"] = _packed_positions(arrays["perms"])
            main = _Main(
                bits=int(header["table_bits"]), alive=np.array(read("alive", None)), **arrays
            )
        index._state = _State(main, _Delta(), 0)
        index._n_live = 0 if main is None else int(np.count_nonzero(main.alive))
        delta_ids = read("delta_ids", None)
        if delta_ids.shape[0]:
            index.add(read("delta_codes", None), delta_ids)
        return index

    # ----------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return self._n_live

    def nbytes(self) -> int:
        """Bytes held by the index arrays (main and delta buffer)."""
        st = self._state
        main = 0 if st.main is None else st.main.nbytes()
        d = st.delta
        return main + d.codes.nbytes + d.ids.nbytes + d.alive.nbytes

    def wide_tables(self) -> bool:
        """Whether the tables hold positions in more bytes than they need, as in a snapshot
        from before they were packed; compacting packs them."""
        main = self._state.main
        return main is not None and main.perms.shape[2] > _position_bytes(main.n_unique)

    def stats(self) -> dict[str, int]:
        """Sizes useful for monitoring and benchmarks."""
        st = self._state
        main = st.main
        return {
            "live_ids": self._n_live,
            "unique_codes": 0 if main is None else main.n_unique,
            "table_bits": 0 if main is None else main.bits,
            "tables": 0 if main is None else main.n_tables,
            "delta_rows": st.delta_count,
            "nbytes": self.nbytes(),
        }


_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int32))


def _run_batch(
    main: _Main, plan: _Plan | None, qs: np.ndarray, radius: int, cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parallel search of ``qs`` keeping at most ``cap`` matches per query (true counts)."""
    nq = qs.shape[0]
    pos = np.empty((nq, cap), np.int64)
    dist = np.empty((nq, cap), np.int32)
    counts = np.empty(nq, np.int64)
    with _PARALLEL_LOCK:
        if plan is None:
            _scan_batch(main.codes, main.n_unique, qs, radius, pos, dist, counts)
        else:
            sub, masks, ends = plan
            args = (main.codes, main.perms, main.dirs, main.bits, sub, masks, ends)
            _mih_batch(*args, qs, radius, pos, dist, counts)
    return pos, dist, counts


def _check_rows(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = _as_codes(codes)
    ids = np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int64)
    if codes.shape[0] != ids.shape[0]:
        raise ValueError(f"{codes.shape[0]} codes but {ids.shape[0]} ids")
    return codes, ids


def _search_delta(st: _State, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    n = st.delta_count
    if n == 0 or radius < 0:
        return _EMPTY
    codes = _readonly(st.delta.codes[:n])
    pos = np.empty(n, np.int64)
    dist = np.empty(n, np.int32)
    count = _scan_into(codes, n, q, 0, radius, pos, dist)
    pos, dist = pos[:count], dist[:count]
    live = st.delta.alive[pos]
    return st.delta.ids[pos[live]], dist[live]


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate result parts, nearest first (stable, so ties keep storage order)."""
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    ids = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    dist = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    if ids.shape[0] > 1:
        order = np.argsort(dist, kind="stable")
        ids, dist = ids[order], dist[order]
    return ids, dist
