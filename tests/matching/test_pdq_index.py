"""The PDQ index must return exactly what a brute-force scan returns, whatever the data."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prescreen.matching.pdq_index import (
    FORMAT_VERSION,
    PDQIndex,
    hamming_brute_force,
    hex_to_words,
    words_to_hex,
)

RADII = (0, 1, 31, 52, 53, 90, 256)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def flip(code: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Copy of ``code`` with the given bit positions (0 = most significant) flipped."""
    out = code.copy()
    for b in np.asarray(bits).tolist():
        out[b // 64] ^= np.uint64(1) << np.uint64(63 - b % 64)
    return out


def at_distance(rng: np.random.Generator, code: np.ndarray, d: int) -> np.ndarray:
    return flip(code, rng.choice(256, size=d, replace=False))


def clustered_bank(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random codes, near-duplicate clusters, exact duplicates and all-zero hashes."""
    codes = random_codes(rng, n)
    seeds = random_codes(rng, 3)
    for i in range(n // 3):
        codes[i] = at_distance(rng, seeds[i % 3], int(rng.integers(0, 12)))
    codes[n // 3 : n // 3 + n // 10] = 0
    if n > 20:
        codes[n // 2 : n // 2 + 5] = codes[n // 2 + 5]
    return codes


def expected(
    codes: np.ndarray, ids: np.ndarray, query: np.ndarray, radius: int
) -> list[tuple[int, int]]:
    rows, dist = hamming_brute_force(codes, query, radius)
    return sorted(zip(ids[rows].tolist(), dist.tolist(), strict=True))


def as_pairs(result: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, int]]:
    ids, dist = result
    assert ids.dtype == np.int64 and dist.dtype == np.int32
    return sorted(zip(ids.tolist(), dist.tolist(), strict=True))


def queries_near(rng: np.random.Generator, codes: np.ndarray, k: int) -> np.ndarray:
    picks = codes[rng.integers(0, codes.shape[0], size=k)]
    return np.stack([at_distance(rng, c, int(rng.integers(0, 60))) for c in picks])


def assert_matches_brute_force(
    index: PDQIndex, codes: np.ndarray, ids: np.ndarray, queries: np.ndarray
) -> None:
    for radius in RADII:
        for q in queries:
            want = expected(codes, ids, q, radius)
            for strategy in ("auto", "mih", "linear"):
                got = as_pairs(index.search(q, radius, strategy=strategy))
                assert got == want, (radius, strategy)


# ------------------------------------------------------------------ helpers


def test_hex_words_round_trip_with_word_zero_first() -> None:
    h = "0123456789abcdef" + "f" * 16 + "0" * 15 + "1" + "8" + "0" * 15
    words = hex_to_words([h])
    assert words.dtype == np.uint64 and words.shape == (1, 4)
    assert int(words[0, 0]) == 0x0123456789ABCDEF
    assert int(words[0, 2]) == 1 and int(words[0, 3]) == 1 << 63
    assert words_to_hex(words) == [h]


def test_hex_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        hex_to_words(["abc"])


def test_brute_force_reference_counts_bits() -> None:
    codes = np.zeros((3, 4), np.uint64)
    codes[1, 0] = 0b111
    codes[2, 3] = np.uint64(2**64 - 1)
    rows, dist = hamming_brute_force(codes, np.zeros(4, np.uint64), 3)
    assert rows.tolist() == [0, 1] and dist.tolist() == [0, 3]


# ------------------------------------------------------------------ exactness


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    table_bits=st.sampled_from([None, 4, 7, 8, 16]),
    clustered=st.booleans(),
)
def test_search_equals_brute_force_on_random_and_clustered_banks(
    seed: int, n: int, table_bits: int | None, clustered: bool
) -> None:
    rng = np.random.default_rng(seed)
    codes = clustered_bank(rng, n) if clustered else random_codes(rng, n)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    index = PDQIndex.build(codes, ids, table_bits=table_bits)
    assert len(index) == n
    assert_matches_brute_force(index, codes, ids, queries_near(rng, codes, 4))


@pytest.mark.parametrize("radius", [0, 31, 52, 53])
def test_codes_exactly_at_the_radius_match_and_one_beyond_do_not(radius: int) -> None:
    rng = np.random.default_rng(radius)
    query = random_codes(rng, 1)[0]
    dists = [max(radius - 1, 0), radius, radius, radius + 1, radius + 2]
    codes = np.stack([at_distance(rng, query, d) for d in dists])
    ids = np.arange(len(dists), dtype=np.int64)
    for table_bits in (None, 8, 16):
        index = PDQIndex.build(codes, ids, table_bits=table_bits)
        for strategy in ("auto", "mih", "linear"):
            got = as_pairs(index.search(query, radius, strategy=strategy))
            assert got == expected(codes, ids, query, radius)
            assert {d for _, d in got} <= {max(radius - 1, 0), radius}


def test_many_codes_in_one_bucket_of_every_table() -> None:
    """Codes differing only in bits no table covers share a bucket in every table."""
    rng = np.random.default_rng(7)
    base = random_codes(rng, 1)[0]
    low = rng.integers(0, 2**14, size=3000).astype(np.uint64)
    codes = np.repeat(base[None, :], 3000, axis=0)
    codes[:, 3] = (codes[:, 3] & ~np.uint64(2**14 - 1)) | low
    codes = np.concatenate([codes, random_codes(rng, 500)])
    ids = np.arange(codes.shape[0], dtype=np.int64)
    index = PDQIndex.build(codes, ids, table_bits=22)
    queries = np.stack([base, at_distance(rng, base, 20), at_distance(rng, base, 40)])
    assert_matches_brute_force(index, codes, ids, queries)


def test_identical_codes_are_stored_once_and_map_to_all_ids() -> None:
    rng = np.random.default_rng(3)
    codes = np.concatenate([np.zeros((2000, 4), np.uint64), random_codes(rng, 50)])
    codes[2000:2010] = codes[2010]
    ids = np.arange(codes.shape[0], dtype=np.int64) + 100
    index = PDQIndex.build(codes, ids)
    assert index.stats()["unique_codes"] == 1 + 40
    ids_found, dist = index.search(np.zeros(4, np.uint64), 0)
    assert sorted(ids_found.tolist()) == list(range(100, 2100))
    assert set(dist.tolist()) == {0}
    assert_matches_brute_force(index, codes, ids, np.stack([codes[0], codes[2010]]))


def test_results_are_sorted_nearest_first() -> None:
    rng = np.random.default_rng(11)
    q = random_codes(rng, 1)[0]
    codes = np.stack([at_distance(rng, q, d) for d in (9, 3, 0, 5, 3)])
    index = PDQIndex.build(codes, np.array([5, 4, 3, 2, 1]))
    ids, dist = index.search(q, 31)
    assert dist.tolist() == [0, 3, 3, 5, 9]
    assert ids[0] == 3 and set(ids[1:3].tolist()) == {1, 4} and ids[3:].tolist() == [2, 5]


def test_empty_index_and_negative_radius_return_nothing() -> None:
    index = PDQIndex()
    assert len(index) == 0
    q = np.zeros(4, np.uint64)
    assert as_pairs(index.search(q, 31)) == []
    built = PDQIndex.build(np.zeros((1, 4), np.uint64), np.array([1]))
    assert as_pairs(built.search(q, -1)) == []
    assert built.search_batch(np.zeros((0, 4), np.uint64), 31) == []


def test_search_accepts_hex_strings() -> None:
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 20)
    index = PDQIndex.build(codes, np.arange(20))
    got = index.search(words_to_hex(codes[4:5])[0], 0)
    assert got[0].tolist() == [4]


# ------------------------------------------------------------------ batch / dihedral


@FAST
@given(seed=st.integers(0, 2**32 - 1), radius=st.sampled_from([0, 12, 31, 52, 70]))
def test_search_batch_equals_search(seed: int, radius: int) -> None:
    rng = np.random.default_rng(seed)
    codes = clustered_bank(rng, 300)
    index = PDQIndex.build(codes, np.arange(300), table_bits=8)
    index.add(random_codes(rng, 5), np.arange(1000, 1005))
    queries = np.concatenate([queries_near(rng, codes, 10), np.zeros((1, 4), np.uint64)])
    batch = index.search_batch(queries, radius)
    assert len(batch) == len(queries)
    for q, got in zip(queries, batch, strict=True):
        assert as_pairs(got) == as_pairs(index.search(q, radius))


def test_search_batch_handles_queries_with_more_matches_than_the_batch_buffer() -> None:
    codes = np.zeros((1000, 4), np.uint64)
    codes[:, 3] = np.arange(1000, dtype=np.uint64)  # 1000 distinct codes near zero
    index = PDQIndex.build(codes, np.arange(1000))
    got = index.search_batch(np.zeros((2, 4), np.uint64), 31)
    assert [len(g[0]) for g in got] == [1000, 1000]


def test_search_dihedral_reports_best_distance_and_variant_per_id() -> None:
    rng = np.random.default_rng(9)
    variants = random_codes(rng, 8)
    stored = np.stack(
        [
            at_distance(rng, variants[2], 4),  # id 10: variant 2 at 4
            at_distance(rng, variants[5], 0),  # id 11: variant 5 exact
            variants[1],  # id 12: variant 1 exact, also near variant 3 below
            random_codes(rng, 1)[0],  # id 13: far from everything
        ]
    )
    variants[3] = at_distance(rng, variants[1], 7)
    index = PDQIndex.build(stored, np.array([10, 11, 12, 13]))
    ids, dist, which = index.search_dihedral(variants, 31)
    got = {i: (d, v) for i, d, v in zip(ids.tolist(), dist.tolist(), which.tolist(), strict=True)}
    assert got == {10: (4, 2), 11: (0, 5), 12: (0, 1)}
    assert dist.tolist() == sorted(dist.tolist())
    for i, d, v in zip(ids.tolist(), dist.tolist(), which.tolist(), strict=True):
        brute = min(hamming_brute_force(stored[[i - 10]], variants[k], 256)[1][0] for k in range(8))
        assert d == brute
        assert hamming_brute_force(stored[[i - 10]], variants[v], 256)[1][0] == d


# ------------------------------------------------------------------ updates


class Model:
    """Dict of id -> code, the ground truth for mutation tests."""

    def __init__(self) -> None:
        self.codes: dict[int, np.ndarray] = {}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.codes:
            return np.zeros((0, 4), np.uint64), np.zeros(0, np.int64)
        ids = np.array(sorted(self.codes), np.int64)
        return np.stack([self.codes[i] for i in ids.tolist()]), ids


def check_against_model(index: PDQIndex, model: Model, queries: np.ndarray) -> None:
    codes, ids = model.arrays()
    assert len(index) == len(model.codes)
    for q in queries:
        for radius in (0, 31, 52, 60):
            assert as_pairs(index.search(q, radius)) == expected(codes, ids, q, radius)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(st.sampled_from(["add", "remove", "readd", "compact"]), max_size=12),
)
def test_interleaved_add_remove_compact_match_brute_force(seed: int, ops: list[str]) -> None:
    rng = np.random.default_rng(seed)
    model = Model()
    start = clustered_bank(rng, 200)
    start_ids = np.arange(200, dtype=np.int64)
    index = PDQIndex.build(start, start_ids, table_bits=8, delta_limit=40)
    for i, c in zip(start_ids.tolist(), start, strict=True):
        model.codes[i] = c
    next_id = 200
    for op in ops:
        if op == "add":
            k = int(rng.integers(1, 30))
            new = queries_near(rng, start, k)
            new_ids = np.arange(next_id, next_id + k, dtype=np.int64)
            next_id += k
            index.add(new, new_ids)
            model.codes.update(zip(new_ids.tolist(), new, strict=True))
        elif op == "remove" and model.codes:
            gone = rng.choice(sorted(model.codes), size=min(15, len(model.codes)))
            gone = np.concatenate([gone, [10**9]])  # an unknown id is a no-op
            index.remove(gone)
            for i in gone.tolist():
                model.codes.pop(i, None)
        elif op == "readd" and model.codes:
            again = np.array(sorted(model.codes)[:5], np.int64)
            new = random_codes(rng, again.shape[0])
            index.add(new, again)
            model.codes.update(zip(again.tolist(), new, strict=True))
        elif op == "compact":
            index.compact()
        index.wait_for_compaction()
        check_against_model(index, model, queries_near(rng, start, 3))
    index.compact()
    check_against_model(index, model, queries_near(rng, start, 3))


def test_added_hashes_match_immediately_without_a_rebuild() -> None:
    rng = np.random.default_rng(1)
    codes = random_codes(rng, 1000)
    index = PDQIndex.build(codes, np.arange(1000), background_compaction=False)
    new = random_codes(rng, 100)
    index.add(new, np.arange(5000, 5100))
    assert index.stats()["delta_rows"] == 100
    for j in range(100):
        ids, _ = index.search(at_distance(rng, new[j], 10), 31)
        assert 5000 + j in ids.tolist()
    assert len(index) == 1100


def test_remove_of_unknown_id_is_a_no_op() -> None:
    index = PDQIndex.build(np.zeros((3, 4), np.uint64), np.array([1, 2, 3]))
    index.remove(np.array([42, 43]))
    assert len(index) == 3
    index.remove(np.array([2, 2, 42]))
    assert len(index) == 2
    assert sorted(index.search(np.zeros(4, np.uint64), 0)[0].tolist()) == [1, 3]


def test_adding_an_existing_id_moves_it_to_the_new_code() -> None:
    rng = np.random.default_rng(2)
    codes = random_codes(rng, 2)
    index = PDQIndex.build(codes, np.array([1, 2]))
    index.add(codes[1:2], np.array([1]))
    assert len(index) == 2
    assert index.search(codes[0], 0)[0].tolist() == []
    assert sorted(index.search(codes[1], 0)[0].tolist()) == [1, 2]


def test_build_keeps_the_last_code_of_a_repeated_id() -> None:
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 3)
    index = PDQIndex.build(codes, np.array([7, 8, 7]))
    assert len(index) == 2
    assert index.search(codes[0], 0)[0].tolist() == []
    assert index.search(codes[2], 0)[0].tolist() == [7]


def test_delta_limit_triggers_background_compaction() -> None:
    rng = np.random.default_rng(6)
    index = PDQIndex.build(random_codes(rng, 100), np.arange(100), delta_limit=50)
    new = random_codes(rng, 60)
    index.add(new, np.arange(100, 160))
    index.wait_for_compaction(timeout=60)
    assert index.stats()["delta_rows"] == 0
    assert index.stats()["unique_codes"] == 160
    assert index.search(new[0], 0)[0].tolist() == [100]


# A crash of the background compaction thread fails the test, not just a warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_searches_stay_exact_while_another_thread_adds_removes_and_compacts() -> None:
    rng = np.random.default_rng(8)
    stable = random_codes(rng, 300)
    index = PDQIndex.build(stable, np.arange(300), table_bits=8, delta_limit=200)
    queries = stable[:20]
    want = [as_pairs(index.search(q, 31)) for q in queries]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            wrng = np.random.default_rng(9)
            next_id = 10_000
            while not stop.is_set():
                # Churn ids far from every query so the stable answers never change.
                churn = random_codes(wrng, 50)
                index.add(churn, np.arange(next_id, next_id + 50))
                index.remove(np.arange(next_id - 50, next_id - 25))
                next_id += 50
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(30):
            for q, w in zip(queries, want, strict=True):
                assert as_pairs(index.search(q, 31)) == w
            for got, w in zip(index.search_batch(queries, 31), want, strict=True):
                assert as_pairs(got) == w
    finally:
        stop.set()
        thread.join()
    index.wait_for_compaction()
    assert not errors


# ------------------------------------------------------------------ persistence


@pytest.mark.parametrize("mmap", [True, False])
def test_snapshot_round_trip_preserves_results_tombstones_and_delta(tmp_path, mmap) -> None:
    rng = np.random.default_rng(12)
    codes = clustered_bank(rng, 500)
    ids = np.arange(500, dtype=np.int64)
    index = PDQIndex.build(codes, ids, table_bits=16, background_compaction=False)
    index.remove(np.arange(0, 500, 7))
    extra = random_codes(rng, 10)
    index.add(extra, np.arange(900, 910))
    index.save(tmp_path / "snap")
    index.save(tmp_path / "snap")  # overwriting an existing snapshot is fine
    loaded = PDQIndex.load(tmp_path / "snap", mmap=mmap)
    assert len(loaded) == len(index)
    queries = np.concatenate([queries_near(rng, codes, 6), extra[:2]])
    for radius in (0, 31, 52, 64):
        for q in queries:
            assert as_pairs(loaded.search(q, radius)) == as_pairs(index.search(q, radius))
    loaded.remove(np.array([1, 900]))
    loaded.add(codes[:1], np.array([5000]))
    loaded.compact()
    assert len(loaded) == len(index) - 2 + 1


def test_tables_take_three_bytes_a_position_and_older_four_byte_snapshots_still_load(
    tmp_path,
) -> None:
    """A server holds the tables in memory: at 1M codes, 3-byte positions are 13 MB less than
    4-byte ones. Snapshots written with 4-byte positions are read as they are."""
    rng = np.random.default_rng(13)
    codes = clustered_bank(rng, 3000)
    index = PDQIndex.build(codes, np.arange(3000, dtype=np.int64), table_bits=12)
    index.save(tmp_path / "snap")
    tables = np.load(tmp_path / "snap" / "perms.npy")
    assert tables.dtype == np.uint8 and tables.shape[::2] == (256 // 12 - 1, 3)
    # The same snapshot as written before: each position one little-endian uint32.
    positions = tables.astype(np.uint32)
    old = positions[..., 0] | positions[..., 1] << 8 | positions[..., 2] << 16
    np.save(tmp_path / "snap" / "perms.npy", old.astype("<u4"))
    header = tmp_path / "snap" / "header.json"
    spec = json.loads(header.read_text())
    spec["arrays"]["perms"] = {"dtype": "<u4", "shape": list(old.shape)}
    spec["version"] = 1
    header.write_text(json.dumps(spec))
    loaded = PDQIndex.load(tmp_path / "snap")
    assert loaded.wide_tables() and not index.wide_tables()
    queries = queries_near(rng, codes, 8)
    for q in queries:
        for radius in (0, 31, 64):
            expected = as_pairs(hamming_brute_force(codes, q, radius))
            assert as_pairs(loaded.search(q, radius)) == as_pairs(index.search(q, radius))
            assert as_pairs(loaded.search(q, radius)) == expected
    loaded.compact()  # what a server does at startup to such a snapshot
    assert not loaded.wide_tables()
    assert [as_pairs(loaded.search(q, 31)) for q in queries] == [
        as_pairs(index.search(q, 31)) for q in queries
    ]


def test_load_rejects_an_unknown_format_version(tmp_path) -> None:
    index = PDQIndex.build(np.zeros((2, 4), np.uint64), np.array([1, 2]))
    index.save(tmp_path / "snap")
    header = tmp_path / "snap" / "header.json"
    header.write_text(header.read_text().replace(f'"version": {FORMAT_VERSION}', '"version": 999'))
    with pytest.raises(ValueError, match="version"):
        PDQIndex.load(tmp_path / "snap")


def test_empty_index_snapshot_round_trips(tmp_path) -> None:
    index = PDQIndex()
    index.add(np.ones((1, 4), np.uint64), np.array([3]))
    index.save(tmp_path / "snap")
    loaded = PDQIndex.load(tmp_path / "snap")
    assert len(loaded) == 1
    assert loaded.search(np.ones(4, np.uint64), 0)[0].tolist() == [3]
