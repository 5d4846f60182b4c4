"""Signal indexes behind one small interface: add, remove, search by distance.

Each signal type names its index kind; `make_index` picks the implementation. Indexes hold only
signal ids and values; banks, entries and thresholds are applied by the matcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from prescreen.matching.pdq_index import PDQIndex, hex_to_words


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


class PDQHashIndex:
    """PDQ hashes by signal id, searched exactly by multi-index hashing (see pdq_index.py)."""

    def __init__(self, index: PDQIndex | None = None) -> None:
        self.index = index or PDQIndex()

    @classmethod
    def built(cls, ids: Sequence[int], values: Sequence[str]) -> PDQHashIndex:
        """Bulk-built from many rows at once (far faster and leaner than adding them)."""
        return cls(PDQIndex.build(hex_to_words(values), np.asarray(ids, dtype=np.int64)))

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        if len(ids):
            self.index.add(hex_to_words(values), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.index.remove(np.asarray(ids, dtype=np.int64))

    def search(self, value: str, radius: int) -> list[tuple[int, int]]:
        ids, distances = self.index.search(value, radius)
        return list(zip(ids.tolist(), distances.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.index)


def make_pdq_index() -> PDQHashIndex:
    return PDQHashIndex()


def built_index(index_kind: str, ids: Sequence[int], values: Sequence[str]) -> SignalIndex:
    """An index of these rows. A PDQ index is built in one go: adding 100,000 rows one batch
    at a time keeps a slot map of them in Python objects and leaves a compaction running."""
    if index_kind == "hamming":
        return PDQHashIndex.built(ids, values)
    index = make_index(index_kind)
    index.add(ids, values)
    return index


def make_index(index_kind: str) -> SignalIndex:
    if index_kind == "hamming":
        return make_pdq_index()
    if index_kind == "vpdq":
        from prescreen.matching.video_index import VideoIndex

        return VideoIndex()
    if index_kind == "logo":
        from prescreen.matching.logo_index import LogoIndex

        return LogoIndex()
    if index_kind == "minhash":
        from prescreen.matching.minhash_index import MinHashIndex

        return MinHashIndex()
    return ExactIndex()
