"""MinHash signatures and a banded LSH index over them, for near-duplicate text banks.

A signature is `NUM_PERM` 32-bit minimum hashes; the share of positions two signatures agree on
estimates the Jaccard similarity of the shingle sets they came from. The index cuts each
signature into `bands` bands of `rows` values; texts that agree on a whole band become
candidates, and every candidate's similarity is then re-computed on the full signature, so the
scores returned are the same as a brute-force scan would give for the candidates found.

With 32 bands of 4 rows, a stored text at similarity s is found with probability
1 - (1 - s**4)**32: 0.87 at 0.5, 0.99 at 0.6 and 1.0000 from 0.7 up; texts below
`min_similarity` (default 0.5) are never returned, so bank thresholds should be 0.6 or above.

Storage is columnar: signatures in one uint32 matrix, band keys in one sorted uint64 array
searched with `np.searchsorted` (two calls per lookup, whatever the size). Recent additions sit
in a small dict until they are merged into the sorted array; removals are tombstones, compacted
once they pile up. One lock guards every operation; a lookup holds it for well under a
millisecond, so concurrent readers and an occasional writer do not wait on each other for long.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Sequence

import numpy as np

from prescreen.core.errors import InvalidInput

NUM_PERM = 128
PREFIX = "mh1:"
_SIG_BYTES = NUM_PERM * 4
_ENCODED_LEN = len(PREFIX) + len(base64.urlsafe_b64encode(b"\0" * _SIG_BYTES).rstrip(b"="))
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_BAND_MULT = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25],
    dtype=np.uint64,
)  # fmt: skip


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, element-wise on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def encode_signature(signature: np.ndarray) -> str:
    """`mh1:` + unpadded URL-safe base64 of the signature as little-endian uint32 (687 chars)."""
    raw = np.asarray(signature, dtype="<u4").tobytes()
    if len(raw) != _SIG_BYTES:
        raise ValueError(f"a MinHash signature has {NUM_PERM} values")
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_signature(value: str) -> np.ndarray:
    """The uint32 signature in an encoded value; InvalidInput if it is not one."""
    value = str(value).strip()
    if not value.startswith(PREFIX) or len(value) != _ENCODED_LEN:
        raise InvalidInput(
            f"a text_near signal is {PREFIX!r} followed by the unpadded URL-safe base64 of "
            f"{NUM_PERM} little-endian uint32 MinHash values ({_ENCODED_LEN} characters)",
            signal_type="text_near",
        )
    body = value[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("text_near value is not valid base64", signal_type="text_near") from exc
    if len(raw) != _SIG_BYTES:
        raise InvalidInput("text_near value has the wrong length", signal_type="text_near")
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    """Share of agreeing positions: the MinHash estimate of the Jaccard similarity."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band, salted with the band number so bands never collide."""
    sig = np.asarray(signatures, dtype=np.uint32).reshape(-1, bands, rows).astype(np.uint64)
    acc = np.zeros(sig.shape[:2], dtype=np.uint64)
    for r in range(rows):
        acc = acc + sig[:, :, r] * _BAND_MULT[r % len(_BAND_MULT)]
        acc = mix64(acc)
    salt = mix64(np.arange(1, bands + 1, dtype=np.uint64))
    return mix64(acc ^ salt)


class MinHashIndex:
    """Near-duplicate search over MinHash signatures; `search` returns (id, similarity 0..1)."""

    def __init__(
        self,
        bands: int = 32,
        rows: int = 4,
        min_similarity: float = 0.5,
        merge_threshold: int = 50_000,
    ) -> None:
        if bands * rows != NUM_PERM:
            raise ValueError(f"bands x rows must be {NUM_PERM}")
        self.bands, self.rows = bands, rows
        self.min_similarity = min_similarity
        self.merge_threshold = merge_threshold
        self._lock = threading.RLock()
        self._sigs = np.zeros((0, NUM_PERM), dtype=np.uint32)
        self._ids = np.zeros(0, dtype=np.int64)  # signal id per row
        self._alive = np.zeros(0, dtype=bool)
        self._n = 0  # rows in use
        self._row_of: dict[int, int] = {}
        # Rows [0, _merged) are in the sorted arrays; later rows are in `_tail`.
        self._merged = 0
        self._keys = np.zeros(0, dtype=np.uint64)
        self._key_rows = np.zeros(0, dtype=np.int64)
        self._tail: dict[int, list[int]] = {}
        self._dead = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._row_of)

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        if len(ids) != len(values):
            raise ValueError("ids and values differ in length")
        if not len(ids):
            return
        sigs = np.stack([decode_signature(v) for v in values])
        keys = band_keys(sigs, self.bands, self.rows)
        with self._lock:
            self.remove(ids)
            start = self._n
            self._grow(start + len(ids))
            self._sigs[start : start + len(ids)] = sigs
            self._ids[start : start + len(ids)] = np.asarray(ids, dtype=np.int64)
            self._alive[start : start + len(ids)] = True
            self._n += len(ids)
            for offset, signal_id in enumerate(ids):
                self._row_of[int(signal_id)] = start + offset
            if self._n - self._merged >= self.merge_threshold or self._merged == 0:
                self._merge()
            else:
                for offset, row_keys in enumerate(keys.tolist()):
                    for key in row_keys:
                        self._tail.setdefault(key, []).append(start + offset)

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            for signal_id in ids:
                row = self._row_of.pop(int(signal_id), None)
                if row is not None:
                    self._alive[row] = False
                    self._dead += 1
            if self._dead > max(self.merge_threshold, len(self._row_of) // 4):
                self._compact()

    def search(self, value: str, radius: int = 0) -> list[tuple[int, float]]:
        """Every stored signature at estimated Jaccard similarity >= `min_similarity`.

        `radius` is accepted for the SignalIndex protocol and ignored: the per-bank similarity
        threshold is applied by the signal type's `accepts`.
        """
        query = decode_signature(value)
        qkeys = band_keys(query[None, :], self.bands, self.rows)[0]
        with self._lock:
            parts = []
            if len(self._keys):
                lo = np.searchsorted(self._keys, qkeys, side="left")
                hi = np.searchsorted(self._keys, qkeys, side="right")
                parts.extend(self._key_rows[a:b] for a, b in zip(lo, hi, strict=True) if b > a)
            if self._tail:
                tail_rows = [r for k in qkeys.tolist() for r in self._tail.get(k, ())]
                if tail_rows:
                    parts.append(np.asarray(tail_rows, dtype=np.int64))
            if not parts:
                return []
            rows = np.unique(np.concatenate(parts))
            rows = rows[self._alive[rows]]
            if not len(rows):
                return []
            sims = np.count_nonzero(self._sigs[rows] == query, axis=1) / NUM_PERM
            hits = sims >= self.min_similarity
            return [
                (int(i), float(s)) for i, s in zip(self._ids[rows[hits]], sims[hits], strict=True)
            ]

    # --- internals (called with the lock held) -----------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= len(self._sigs):
            return
        cap = max(needed, 2 * len(self._sigs), 1024)
        for name in ("_sigs", "_ids", "_alive"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def _merge(self) -> None:
        """Move tail rows into the sorted key array (a merge of two sorted runs)."""
        if self._n == self._merged:
            return
        rows = np.arange(self._merged, self._n, dtype=np.int64)
        keys = band_keys(self._sigs[rows], self.bands, self.rows).ravel()
        key_rows = np.repeat(rows, self.bands)
        order = np.argsort(keys, kind="stable")
        keys, key_rows = keys[order], key_rows[order]
        if len(self._keys):
            at = np.searchsorted(self._keys, keys, side="right")
            self._keys = np.insert(self._keys, at, keys)
            self._key_rows = np.insert(self._key_rows, at, key_rows)
        else:
            self._keys, self._key_rows = keys, key_rows
        self._merged = self._n
        self._tail = {}

    def _compact(self) -> None:
        """Drop removed rows and rebuild the sorted keys from the live ones."""
        live = np.flatnonzero(self._alive[: self._n])
        self._sigs = self._sigs[live].copy()
        self._ids = self._ids[live].copy()
        self._alive = np.ones(len(live), dtype=bool)
        self._n = len(live)
        self._row_of = {int(i): row for row, i in enumerate(self._ids.tolist())}
        self._merged = 0
        self._keys = np.zeros(0, dtype=np.uint64)
        self._key_rows = np.zeros(0, dtype=np.int64)
        self._tail = {}
        self._dead = 0
        self._merge()
