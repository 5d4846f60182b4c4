"""Signal indexes behind one small interface: add, remove, search by distance.

Each signal type names its index kind; `make_index` picks the implementation. Indexes hold only
signal ids and values; banks, entries and thresholds are applied by the matcher.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
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
    def built(cls, ids: Sequence[int], values: Sequence[str] | np.ndarray) -> PDQHashIndex:
        """Bulk-built from many rows at once (far faster and leaner than adding them); the
        values as hex strings or already as `(n, 4)` words."""
        words = values if isinstance(values, np.ndarray) else hex_to_words(values)
        return cls(PDQIndex.build(words, np.asarray(ids, dtype=np.int64)))

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
    rows = IndexRows(index_kind)
    rows.add(ids, values)
    return rows.build()


class IndexRows:
    """Rows gathered for `built_index` as they are read, in compact columns: ids in an array,
    PDQ values packed into four 64-bit words per row at once.

    Why: a pass over 100,000 new bank signals (a retro-scan after a bulk import) that held
    them as Python ids and strings until the end peaked at about 30 MB of the interpreter's
    small-object arenas, and a few longer-lived objects allocated meanwhile pinned those arenas
    in the worker for good. Read in chunks into these columns, only a chunk's objects are ever
    alive at once."""

    def __init__(self, index_kind: str) -> None:
        self.index_kind = index_kind
        self._ids = array("q")
        self._words: list[np.ndarray] = []  # PDQ values, a `(n, 4)` block per chunk
        self._values: list[str] = []  # any other kind's

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        self._ids.extend(ids)
        if self.index_kind == "hamming":
            self._words.append(hex_to_words(values))
        else:
            self._values.extend(values)

    def __len__(self) -> int:
        return len(self._ids)

    def build(self) -> SignalIndex:
        ids = np.array(self._ids, dtype=np.int64)
        if self.index_kind == "hamming":
            words = np.concatenate(self._words) if self._words else np.empty((0, 4), np.uint64)
            return PDQHashIndex.built(ids, words)
        index = make_index(self.index_kind)
        index.add(ids.tolist(), self._values)
        return index


def gather_by_type(
    columns: dict[str, IndexRows],
    rows: Iterable[tuple[int, str, str]],
    kind_of: Callable[[str], str | None],
) -> None:
    """Add a chunk of `(signal id, signal type, value)` rows to each type's `IndexRows`, made
    on first use with the index kind `kind_of` gives (None: the type is left out)."""
    by_type: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
    for signal_id, signal_type, value in rows:
        ids, values = by_type[signal_type]
        ids.append(signal_id)
        values.append(value)
    for signal_type, (ids, values) in by_type.items():
        if signal_type not in columns:
            if (kind := kind_of(signal_type)) is None:
                continue
            columns[signal_type] = IndexRows(kind)
        columns[signal_type].add(ids, values)


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
