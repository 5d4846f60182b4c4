"""Signal indexes behind one small interface: add, remove, search by distance.

Each signal type names its index kind; `make_index` picks the implementation. Indexes hold only
signal ids and values; banks, entries and thresholds are applied by the matcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class SignalIndex(Protocol):
    def add(self, ids: Sequence[int], values: Sequence[str]) -> None: ...
    def remove(self, ids: Sequence[int]) -> None: ...
    def search(self, value: Any, radius: int) -> list[tuple[int, Any]]:
        """(signal id, score) of every stored signal near `value`; the score's meaning is the
        signal type's (a distance for hashes, shares of matched frames for video)."""

    def __len__(self) -> int: ...


class ExactIndex:
    """Hash map from value to signal ids, for digests, text hashes and canonical URLs."""

    def __init__(self) -> None:
        self._ids_by_value: dict[str, set[int]] = {}
        self._value_by_id: dict[int, str] = {}

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        for signal_id, value in zip(ids, values, strict=True):
            self.remove([signal_id])
            self._ids_by_value.setdefault(value, set()).add(signal_id)
            self._value_by_id[signal_id] = value

    def remove(self, ids: Sequence[int]) -> None:
        for signal_id in ids:
            value = self._value_by_id.pop(signal_id, None)
            if value is None:
                continue
            bucket = self._ids_by_value[value]
            bucket.discard(signal_id)
            if not bucket:
                del self._ids_by_value[value]

    def search(self, value: str, radius: int) -> list[tuple[int, int]]:
        return [(signal_id, 0) for signal_id in self._ids_by_value.get(value, ())]

    def __len__(self) -> int:
        return len(self._value_by_id)


def hex_to_words(values: Sequence[str]) -> np.ndarray:
    """64-hex PDQ strings -> (n, 4) uint64, word 0 holding the first 16 hex digits."""
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


class BruteForcePDQIndex:
    """Exact Hamming range search by scanning every code with numpy."""

    def __init__(self) -> None:
        self._words = np.zeros((0, 4), dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        if not len(ids):
            return
        self.remove(ids)
        self._words = np.concatenate([self._words, hex_to_words(values)])
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])

    def remove(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self._words, self._ids = self._words[keep], self._ids[keep]

    def search(self, value: str, radius: int) -> list[tuple[int, int]]:
        if not len(self._ids):
            return []
        xor = np.bitwise_xor(self._words, hex_to_words([value])[0])
        distances = np.bitwise_count(xor).sum(axis=1)
        hits = np.flatnonzero(distances <= radius)
        return [(int(self._ids[i]), int(distances[i])) for i in hits]

    def __len__(self) -> int:
        return len(self._ids)


def make_pdq_index() -> SignalIndex:
    return BruteForcePDQIndex()


def make_index(index_kind: str) -> SignalIndex:
    if index_kind == "hamming":
        return make_pdq_index()
    if index_kind == "vpdq":
        from prescreen.matching.video_index import VideoIndex

        return VideoIndex()
    return ExactIndex()
