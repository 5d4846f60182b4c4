"""Indexes built in one go (a matcher's rebuild, a retro-scan's probe index) must find what
indexes filled row by row find."""

from __future__ import annotations

import numpy as np

from prescreen.matching.index import ExactIndex, IndexRows, built_index, make_index
from prescreen.matching.pdq_index import words_to_hex


def test_a_pdq_index_built_at_once_finds_what_one_filled_by_adding_finds() -> None:
    rng = np.random.default_rng(3)
    # More rows than an index takes before it compacts in the background.
    codes = rng.integers(0, 2**64 - 1, size=(70_000, 4), dtype=np.uint64, endpoint=True)
    values, ids = words_to_hex(codes), list(range(1, 70_001))
    built, added = built_index("hamming", ids, values), make_index("hamming")
    added.add(ids, values)
    queries = []
    for row in rng.choice(len(values), size=40, replace=False).tolist():
        near = codes[row].copy()
        near[0] ^= np.uint64(0b1011)  # 3 bits away
        queries += [values[row], words_to_hex(near)[0]]
    queries += words_to_hex(rng.integers(0, 2**63, size=(20, 4), dtype=np.uint64))
    for query in queries:
        assert built.search(query, 31) == added.search(query, 31)
    assert sum(bool(built.search(query, 31)) for query in queries) == 80
    assert built.index.stats()["delta_rows"] == 0  # nothing left to compact


def test_other_kinds_are_filled_by_adding() -> None:
    index = built_index("exact", [1, 2], ["a", "b"])
    assert isinstance(index, ExactIndex)
    assert index.search("b", 0) == [(2, 0)]


def test_rows_gathered_in_chunks_build_the_index_built_at_once() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 2**64 - 1, size=(5_000, 4), dtype=np.uint64, endpoint=True)
    values, ids = words_to_hex(codes), list(range(10, 5_010))
    rows = IndexRows("hamming")
    for start in range(0, len(ids), 1_000):
        rows.add(ids[start : start + 1_000], values[start : start + 1_000])
    gathered, at_once = rows.build(), built_index("hamming", ids, values)
    assert len(rows) == len(gathered) == 5_000
    for query in values[::250] + words_to_hex(rng.integers(0, 2**63, size=(5, 4), dtype=np.uint64)):
        assert gathered.search(query, 31) == at_once.search(query, 31)
    assert len(IndexRows("hamming").build()) == 0  # a run with no new PDQ signals
    exact = IndexRows("exact")
    exact.add([1], ["a"])
    exact.add([2], ["b"])
    assert exact.build().search("b", 0) == [(2, 0)]
