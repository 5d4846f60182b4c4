"""Feeds and following, in one process: an instance follows its own shared bank into another
bank, so publishing, verification, applying, opinions and trust run on a real database."""

from __future__ import annotations

import base64
import copy
import json
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from prescreen.banks import service as banks
from prescreen.banks.models import BankEntry
from prescreen.core.db import Database
from prescreen.exchange import feed, keys, service
from prescreen.exchange.config import exchange_settings
from prescreen.exchange.feedformat import FeedRejected, raw_public_key, sign_item, verify_page
from prescreen.exchange.models import PullCursor
from prescreen.exchange.pull import pull_and_record
from prescreen.matching.service import Matcher
from prescreen.screening.service import ScreenRequest, hash_given, screen


def pdq() -> str:
    return secrets.token_hex(32)


def wire(page: dict) -> dict:
    return json.loads(json.dumps(page))


def serve_feed(db: Database, settings, tamper=None):
    """A fetch function that reads the feed from the database as a peer's HTTP call would."""

    def fetch(_peer, bank, after, xsettings):
        with db.session() as session:
            page = wire(feed.feed_page(session, settings, bank, after, xsettings.page_size))
        return tamper(page) if tamper else page

    return fetch


@pytest.fixture
def shared(db: Database, settings):
    """A shared bank with three entries, and a peer "self" following it into "copy"."""
    hashes = [pdq() for _ in range(3)]
    with db.session() as session:
        bank = banks.create_bank(session, "shared", labels=["terrorism"], shared=True)
        new = [banks.NewEntry.validated({"pdq": h}, labels=["terrorism"]) for h in hashes]
        banks.add_entries(session, bank, new, added_by="test")
        public = service.identity(session, settings)["keys"][0]["public_key"]
        service.create_peer(
            session,
            "self",
            [public],
            "test",
            base_url="http://127.0.0.1:1",
            follows=[{"remote": "shared", "local": "copy"}],
            trust="act",
            label_map={"terrorism": "violent_extremism"},
        )
    return hashes


def copies(db: Database) -> list[BankEntry]:
    with db.session() as session:
        bank = banks.get_bank(session, "copy")
        return banks.list_entries(session, bank)


def test_adds_removals_and_opinions_arrive(db, settings, shared) -> None:
    fetch = serve_feed(db, settings)
    result = pull_and_record(db, settings, "self", fetch)
    assert result["ok"] and result["applied"] == {"add": 3}
    entries = copies(db)
    assert sorted(s.value for e in entries for s in e.signals) == sorted(shared)
    assert all(e.labels == ["violent_extremism"] and e.source == "peer:self" for e in entries)

    with db.session() as session:
        bank = banks.get_bank(session, "shared")
        first, second, _third = banks.list_entries(session, bank)
        banks.delete_entry(session, first)
        service.give_opinion(session, settings, "shared", second.id, "false_positive", "test")
    result = pull_and_record(db, settings, "self", fetch)
    assert result["applied"] == {"remove": 1, "opinion": 1}
    remaining = {e.signals[0].value: e for e in copies(db)}
    assert set(remaining) == set(shared[1:])
    assert remaining[shared[1]].enabled is False  # the peer's false positive disabled it
    assert remaining[shared[2]].enabled is True

    # Nothing new: a second pull applies nothing and duplicates nothing.
    assert pull_and_record(db, settings, "self", fetch)["applied"] == {}
    assert len(copies(db)) == 2

    # Every match on a copy says where it came from and what was said about it.
    with db.session() as session:
        (match,) = Matcher().lookup(session, {"pdq": shared[2]}, banks=["copy"])
    provenance = match.detail["provenance"]
    assert provenance["peer"] == "self" and provenance["peer_bank"] == "shared"
    assert provenance["peer_entry"].endswith(f"/shared/{_third.id}")
    assert provenance["trust"] == "act"


def test_review_trust_holds_instead_of_blocking(db, settings, shared) -> None:
    pull_and_record(db, settings, "self", serve_feed(db, settings))
    with db.session() as session:
        banks.update_bank(session, "shared", enabled=False)  # only the copy can match
        service.update_peer(session, "self", "test", trust="review")
    matcher = Matcher()
    held = screen(db, matcher, settings, ScreenRequest(hash_given({"pdq": shared[0]})))
    assert held["decision"] == "hold"
    (reason,) = held["reasons"]
    assert reason["kind"] == "bank_match_held" and reason["exchange_hold"] == "peer_trust_review"
    assert reason["provenance"]["peer"] == "self"

    with db.session() as session:
        service.update_peer(session, "self", "test", trust="act")
    blocked = screen(db, matcher, settings, ScreenRequest(hash_given({"pdq": shared[1]})))
    assert blocked["decision"] == "block"
    assert blocked["reasons"][0]["provenance"]["trust"] == "act"


def _cursor(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(PullCursor.seq)) or 0


def _fork(page: dict, resign) -> dict:
    """The publisher's own key signs a different second item: a forked history."""
    forged = copy.deepcopy(page)
    body = {**forged["items"][1]["body"], "labels": ["benign"]}
    forged["items"][1] = resign(body)
    return forged


TAMPERING = {
    "bad_signature": lambda p, _r: p["items"][1]["body"]["labels"].append("benign") or p,
    "history_skipped": lambda p, _r: {**p, "items": p["items"][1:]},
    "history_rewritten": _fork,
    "unknown_key": lambda p, _r: {**p, "head": {**p["head"], "key_id": "0" * 32}},
}


@pytest.mark.parametrize("reason", sorted(TAMPERING))
def test_bad_pages_are_rejected_whole_and_reported(db, settings, shared, reason) -> None:
    with db.session() as session:
        key_id, key = keys.current_key(session, settings)

    def resign(body: dict) -> dict:
        return sign_item(key, key_id, body)

    tampered = serve_feed(db, settings, lambda page: TAMPERING[reason](page, resign))
    result = pull_and_record(db, settings, "self", tampered)
    assert not result["ok"] and reason in result["error"]
    assert copies(db) == [] and _cursor(db) == 0
    with db.session() as session:
        peer = service.get_peer(session, "self")
        (rejection,) = service.rejections(session, peer)
        assert rejection["reason"] == reason and peer.failures == 1
    # The genuine feed still applies afterwards.
    assert pull_and_record(db, settings, "self", serve_feed(db, settings))["ok"]
    assert len(copies(db)) == 3


def test_wrong_key_rejects_everything(db, settings, shared) -> None:
    stranger = base64.b64encode(raw_public_key(Ed25519PrivateKey.generate())).decode()
    with db.session() as session:
        service.update_peer(session, "self", "test", public_keys=[stranger])
    result = pull_and_record(db, settings, "self", serve_feed(db, settings))
    assert not result["ok"] and "unknown_key" in result["error"]
    assert copies(db) == []


def test_a_rewritten_history_is_refused_after_it_was_applied(db, settings, shared) -> None:
    """Serving a different item at a sequence number already applied is caught at once."""
    fetch = serve_feed(db, settings)
    pull_and_record(db, settings, "self", fetch)
    with db.session() as session:
        page = wire(feed.feed_page(session, settings, "shared", 0, 10))
        known = {k["key_id"]: k["public_key"] for k in keys.published_keys(session)}
    with pytest.raises(FeedRejected) as caught:
        forged = copy.deepcopy(page)
        forged["head"]["seq"] = 2  # claims the feed is shorter than what was applied
        verify_page(forged, "shared", 3, page["head"]["hash"], known)
    assert caught.value.reason in ("bad_signature", "history_rewritten")


def test_rotated_keys_are_learnt_and_old_items_still_verify(db, settings, shared) -> None:
    fetch = serve_feed(db, settings)
    pull_and_record(db, settings, "self", fetch)
    with db.session() as session:
        old_key = keys.current_key(session, settings)[0]
        new = keys.rotate(session, settings, "test")
        bank = banks.get_bank(session, "shared")
        banks.add_entries(session, bank, [banks.NewEntry.validated({"pdq": pdq()})], "test")
    result = pull_and_record(db, settings, "self", fetch)
    assert result["ok"] and result["applied"] == {"add": 1}
    with db.session() as session:
        peer = service.get_peer(session, "self")
        assert set(service.peer_keys(session, peer)) == {old_key, new.key_id}
        page = wire(feed.feed_page(session, settings, "shared", 0, 10))
    assert [i["key_id"] for i in page["items"]] == [old_key] * 3 + [new.key_id]
    # A fresh follower that pinned only the first key verifies the whole feed.
    first = {old_key: page["keys"][0]["public_key"]}
    assert len(verify_page(page, "shared", 0, "", first).items) == 4


def test_an_interrupted_pull_resumes_without_loss_or_duplicates(db, settings, shared, monkeypatch):
    with db.session() as session:
        bank = banks.get_bank(session, "shared")
        more = [banks.NewEntry.validated({"pdq": pdq()}) for _ in range(20)]
        banks.add_entries(session, bank, more, "test")
    monkeypatch.setenv("PRESCREEN_EXCHANGE_PAGE_SIZE", "5")
    exchange_settings.cache_clear()
    genuine, calls = serve_feed(db, settings), []

    def dies_on_third_page(peer, bank, after, xsettings):
        calls.append(after)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies between two pages
        return genuine(peer, bank, after, xsettings)

    try:
        with pytest.raises(KeyboardInterrupt):
            pull_and_record(db, settings, "self", dies_on_third_page)
        assert _cursor(db) == 10 and len(copies(db)) == 10
        assert pull_and_record(db, settings, "self", genuine)["ok"]
    finally:
        exchange_settings.cache_clear()
    with db.session() as session:
        source = banks.get_bank(session, "shared")
        expected = session.scalar(select(func.count()).where(BankEntry.bank_id == source.id))
    assert len(copies(db)) == expected == 23


def test_a_flood_of_matches_quarantines_the_entry(db, settings, monkeypatch) -> None:
    monkeypatch.setenv("PRESCREEN_EXCHANGE_FLOOD_MIN_MATCHES", "4")
    exchange_settings.cache_clear()
    value = pdq()
    with db.session() as session:
        bank = banks.create_bank(session, "local-block")
        banks.add_entries(session, bank, [banks.NewEntry.validated({"pdq": value})], "test")
    matcher = Matcher()
    try:
        outcomes = [
            screen(db, matcher, settings, ScreenRequest(hash_given({"pdq": value})))["decision"]
            for _ in range(6)
        ]
    finally:
        exchange_settings.cache_clear()
    assert outcomes == ["block"] * 4 + ["hold"] * 2
    with db.session() as session:
        (match,) = matcher.lookup(session, {"pdq": value})
        assert match.detail["exchange_hold"] == "quarantined"
        assert match.detail["quarantine"]["reason"].startswith("flood: 4 matches")
        entry_id = match.entry
        service.release(session, "local-block", entry_id, "test")
        (match,) = matcher.lookup(session, {"pdq": value})
        assert "exchange_hold" not in match.detail


def test_sharing_again_publishes_what_was_added_meanwhile(db, settings, shared) -> None:
    fetch = serve_feed(db, settings)
    pull_and_record(db, settings, "self", fetch)
    extra = pdq()
    with db.session() as session:
        banks.update_bank(session, "shared", shared=False)
        bank = banks.get_bank(session, "shared")
        banks.add_entries(session, bank, [banks.NewEntry.validated({"pdq": extra})], "test")
        first = banks.list_entries(session, bank)[0]
        banks.delete_entry(session, first)
    assert pull_and_record(db, settings, "self", fetch)["applied"] == {"remove": 1}
    with db.session() as session:
        banks.update_bank(session, "shared", shared=True)
    assert pull_and_record(db, settings, "self", fetch)["applied"] == {"add": 1}
    assert sorted(e.signals[0].value for e in copies(db)) == sorted([*shared[1:], extra])
