"""The matcher through the database: exact against brute force at each bank's threshold, kept
current by the change feed, and restored from its snapshot without re-reading every hash."""

from __future__ import annotations

import itertools
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prescreen.banks.service import NewEntry, add_entries, create_bank, delete_entry, get_entry
from prescreen.matching import service as matching
from prescreen.matching.service import Matcher
from prescreen.signals.image import pdq_distance

BITS = st.integers(min_value=0, max_value=2**256 - 1)
_examples = itertools.count()


def _hex(value: int) -> str:
    return f"{value:064x}"


def _near(base: int, flips: list[int]) -> int:
    for bit in flips:
        base ^= 1 << bit
    return base


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    base=BITS,
    offsets=st.lists(st.lists(st.integers(0, 255), max_size=60), min_size=1, max_size=25),
    thresholds=st.tuples(st.integers(0, 52), st.integers(0, 52)),
    query_flips=st.lists(st.integers(0, 255), max_size=40),
)
def test_lookup_equals_brute_force_at_each_bank_threshold(
    db, base, offsets, thresholds, query_flips
) -> None:
    example = next(_examples)  # the database outlives one example: fresh banks each time
    with db.session() as session:
        banks = [
            create_bank(session, f"bank-{example}-{i}", pdq_threshold=t)
            for i, t in enumerate(thresholds)
        ]
        stored = []
        for i, flips in enumerate(offsets):
            value = _hex(_near(base, flips))
            bank = banks[i % 2]
            (entry,) = add_entries(session, bank, [NewEntry.validated({"pdq": value})], "test")
            stored.append((bank.name, bank.pdq_threshold, entry.id, value))
        query = _hex(_near(base, query_flips))
        matcher = Matcher()
        found = {
            (m.bank, m.entry, m.distance)
            for m in matcher.lookup(session, {"pdq": query}, banks=[b.name for b in banks])
        }
    expected = {
        (name, entry_id, pdq_distance(query, value))
        for name, threshold, entry_id, value in stored
        if pdq_distance(query, value) <= threshold
    }
    assert found == expected


def test_snapshot_is_reused_and_changes_since_are_applied(db, tmp_path) -> None:
    snapshots = tmp_path / "index"
    first, second, third = "f0" * 32, "0f" * 32, "ff" * 16 + "00" * 16  # 128+ bits apart
    with db.session() as session:
        bank = create_bank(session, "snap")
        (kept,) = add_entries(session, bank, [NewEntry.validated({"pdq": first})], "test")
        (gone,) = add_entries(session, bank, [NewEntry.validated({"pdq": second})], "test")
        Matcher(snapshot_dir=snapshots).rebuild(session)  # full rebuild, then saved
        assert json.loads((snapshots / "pdq.json").read_text())["signals"] == 2
        delete_entry(session, get_entry(session, bank, gone.id))
        (late,) = add_entries(session, bank, [NewEntry.validated({"pdq": third})], "test")

    with db.session() as session:
        restored = Matcher(snapshot_dir=snapshots)
        restored.rebuild(session)

        def hits(value):
            return [m.entry for m in restored.lookup(session, {"pdq": value})]

        assert hits(first) == [kept.id]
        assert hits(second) == []
        assert hits(third) == [late.id]


def test_a_snapshot_from_another_database_is_ignored(db, tmp_path) -> None:
    snapshots = tmp_path / "index"
    snapshots.mkdir()
    (snapshots / "pdq.json").write_text(json.dumps({"cursor": 10**9, "signals": 0}))
    with db.session() as session:
        bank = create_bank(session, "fresh")
        (entry,) = add_entries(session, bank, [NewEntry.validated({"pdq": _hex(7)})], "test")
        matcher = Matcher(snapshot_dir=snapshots)
        matcher.rebuild(session)
        assert [m.entry for m in matcher.lookup(session, {"pdq": _hex(7)})] == [entry.id]
    assert json.loads((snapshots / "pdq.json").read_text())["cursor"] < 10**9


def test_a_bulk_import_bigger_than_the_index_is_read_afresh_once_and_shared(
    db, tmp_path, monkeypatch, caplog
) -> None:
    """A process that finds more pending changes than its index holds reads the bank tables
    instead of replaying them, saves the snapshot, and the next process maps that snapshot."""
    monkeypatch.setattr(matching, "CATCH_UP", 20)
    monkeypatch.setattr(matching, "REBUILD_BEYOND", 50)
    snapshots = tmp_path / "index"
    with db.session() as session:
        bank = create_bank(session, "bulk")
        (old,) = add_entries(session, bank, [NewEntry.validated({"pdq": _hex(1)})], "test")
        first, second = Matcher(snapshot_dir=snapshots), Matcher(snapshot_dir=snapshots)
        first.rebuild(session)
        second.rebuild(session)
        rng = random.Random(5)
        values = [_hex(rng.getrandbits(256)) for _ in range(120)]  # ~128 bits apart
        added = add_entries(session, bank, [NewEntry.validated({"pdq": v}) for v in values], "t")
        delete_entry(session, get_entry(session, bank, old.id))
    caplog.set_level("INFO", logger="prescreen.matching.service")
    with db.session() as session:
        for matcher in (first, second):
            assert [m.entry for m in matcher.lookup(session, {"pdq": values[77]})] == [added[77].id]
            assert matcher.lookup(session, {"pdq": _hex(1)}) == []
            assert matcher.size()["pdq"] == 120
    assert [r.message for r in caplog.records].count("indexes rebuilt") == 1
    assert json.loads((snapshots / "pdq.json").read_text())["signals"] == 120
