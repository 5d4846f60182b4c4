"""Video through banks and the matcher: Meta's sample clips, chair family against the rest."""

from __future__ import annotations

import pytest
from tests.conftest import SHARED_DATA

from prescreen.banks.service import NewEntry, add_entries, create_bank
from prescreen.matching.service import Matcher
from prescreen.screening.service import Hashed
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.registry import compute_signals

CLIPS = SHARED_DATA / "vpdq" / "tmk" / "sample-videos"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"sample videos not found at {CLIPS}")
CHAIR_VARIANTS = [
    "chair-20-sd-bar",
    "chair-22-sd-grey-bar",
    "chair-22-sd-sepia-bar",
    "chair-22-with-small-logo-bar",
    "chair-22-with-large-logo-bar",  # found through the lower half of its frames
]
OTHERS = [
    "pattern-hd-no-bar",
    "pattern-sd-grey-bar",
    "pattern-longer-no-bar",
    "pattern-sd-with-large-logo-bar",  # the same logo as the chair's: still no match
    "doorknob-hd-no-bar",
]


@pytest.fixture(scope="module")
def signals() -> dict[str, dict]:
    names = ["chair-orig-22-sd-bar", *CHAIR_VARIANTS, *OTHERS]
    return {
        name: compute_signals(Upload(ContentKind.video, data=(CLIPS / f"{name}.mp4").read_bytes()))
        for name in names
    }


def lookup(matcher: Matcher, session, signals: dict) -> list:
    """What screening searches for a video: its frames and its half-frame variants."""
    hashed = Hashed(ContentKind.video, signals)
    return matcher.lookup(session, hashed.matchable, variants=hashed.variants)


def test_chair_variants_match_the_banked_chair_and_nothing_else_does(db, signals) -> None:
    with db.session() as session:
        bank = create_bank(session, "videos", labels=["terrorism"])
        banked = signals["chair-orig-22-sd-bar"]
        (entry,) = add_entries(
            session, bank, [NewEntry.validated(banked, content_type="video")], "test"
        )
        matcher = Matcher()
        for name in CHAIR_VARIANTS:
            matches = lookup(matcher, session, signals[name])
            assert [m.entry for m in matches] == [entry.id], name
            assert matches[0].detail["query_match_percent"] >= 80, name
        for name in OTHERS:
            assert lookup(matcher, session, signals[name]) == [], name


def test_a_large_logo_hides_the_whole_frames_but_not_their_halves(db, signals) -> None:
    """The whole-frame hashes of the large-logo copy match under 10% of the chair's frames;
    without the half-frame crops (a bank option) it is missed, with them it is found."""
    with db.session() as session:
        strict = create_bank(session, "no-crops", match_crops=False)
        add_entries(session, strict, [NewEntry.validated(signals["chair-orig-22-sd-bar"])], "t")
        matcher = Matcher()
        large_logo = signals["chair-22-with-large-logo-bar"]
        assert lookup(matcher, session, large_logo) == []
        both_ways = lookup(matcher, session, signals["chair-22-sd-grey-bar"])
        assert len(both_ways) == 1 and both_ways[0].detail.get("query_variant") is None


def test_bank_thresholds_on_shares_of_frames(db, signals) -> None:
    with db.session() as session:
        bank = create_bank(session, "strict-videos", vpdq_bank_match_pct=99.0)
        add_entries(session, bank, [NewEntry.validated(signals["pattern-hd-no-bar"])], "test")
        matcher = Matcher()
        longer = {"vpdq": signals["pattern-longer-no-bar"]["vpdq"]}
        assert matcher.lookup(session, longer) == []
        exact = {"vpdq": signals["pattern-hd-no-bar"]["vpdq"]}
        assert len(matcher.lookup(session, exact)) == 1
