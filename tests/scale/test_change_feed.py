"""The change feed reaches every process's index even when bank writes commit out of order
(on PostgreSQL a long import can commit after a later, quicker write)."""

from __future__ import annotations

import random

import pytest

from prescreen.banks.models import BankEntry, EntrySignal, SignalChange
from prescreen.banks.service import NewEntry, add_entries, create_bank, get_bank
from prescreen.matching.feed import GAP_MAX_AGE_SECONDS, FeedCursor
from prescreen.matching.service import Matcher
from prescreen.screening.retroscan import scan_feed
from prescreen.screening.service import ScreenRequest, hash_given, screen


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def _entries(seeds) -> list[NewEntry]:
    return [NewEntry.validated({"pdq": _pdq(seed)}) for seed in seeds]


def _insert_without_audit(session, bank, seeds) -> None:
    for seed in seeds:
        signal = EntrySignal(signal_type="pdq", value=_pdq(seed))
        session.add(BankEntry(bank_id=bank.id, labels=[], signals=[signal]))
        session.flush()
        session.add(
            SignalChange(signal_id=signal.id, op="add", signal_type="pdq", value=signal.value)
        )
    session.flush()


def _lookup(db, matcher: Matcher, seed: int) -> list[int]:
    with db.session() as session:
        return [m.entry for m in matcher.lookup(session, {"pdq": _pdq(seed)})]


def test_a_write_that_commits_late_is_still_applied(db, settings) -> None:
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: ids always commit in order")
    matcher = Matcher()
    with db.session() as session:
        create_bank(session, "terror", labels=["terrorism"])
        matcher.rebuild(session)
    screened = ScreenRequest(hash_given({"pdq": _pdq(5), "pdq_quality": 100}), content_id="c")
    assert screen(db, matcher, settings, screened)["decision"] == "allow"

    # A long import: its feed ids are drawn now, it commits last (bank writes take the audit
    # log's lock only at their end, so this window exists in every writer).
    slow = db.sessions()
    _insert_without_audit(slow, get_bank(slow, "terror"), range(1, 200))
    with db.session() as quick:
        add_entries(quick, get_bank(quick, "terror"), _entries([1000]), "api")
    assert _lookup(db, matcher, 1000) and not _lookup(db, matcher, 5)
    # The retro-scan feed reader has moved past the import too.
    assert scan_feed(db, matcher, settings).entries == 1
    _insert_without_audit(slow, get_bank(slow, "terror"), [5])
    slow.commit()
    slow.close()

    assert _lookup(db, matcher, 5), "the late import was skipped by the change feed"
    assert all(_lookup(db, matcher, seed) for seed in range(1, 200, 37))
    run = scan_feed(db, matcher, settings)
    assert (run.entries, run.hits) == (200, 1)
    assert scan_feed(db, matcher, settings) is None


def test_feed_cursor_remembers_holes_until_they_fill_or_expire() -> None:
    cursor = FeedCursor()
    cursor.advance([1, 2, 5, 9], now=0.0)
    assert cursor.position == 9 and [g[:2] for g in cursor.gaps] == [[3, 4], [6, 8]]
    cursor.advance([3, 7, 10], now=1.0)
    assert cursor.position == 10 and [g[:2] for g in cursor.gaps] == [[4, 4], [6, 6], [8, 8]]
    restored = FeedCursor.from_dict(cursor.to_dict())
    restored.advance([], now=GAP_MAX_AGE_SECONDS + 1)
    assert restored.gaps == [] and restored.position == 10
