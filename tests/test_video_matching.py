"""Video through banks and the matcher: Meta's sample clips, chair family against the rest."""

from __future__ import annotations

import pytest
from tests.conftest import SHARED_DATA

from prescreen.banks.service import NewEntry, add_entries, create_bank
from prescreen.matching.service import Matcher
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.registry import compute_signals

CLIPS = SHARED_DATA / "vpdq" / "tmk" / "sample-videos"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"sample videos not found at {CLIPS}")
CHAIR_VARIANTS = [
    "chair-20-sd-bar",
    "chair-22-sd-grey-bar",
    "chair-22-sd-sepia-bar",
    "chair-22-with-small-logo-bar",
]
OTHERS = ["pattern-hd-no-bar", "pattern-sd-grey-bar", "pattern-longer-no-bar", "doorknob-hd-no-bar"]


@pytest.fixture(scope="module")
def signals() -> dict[str, dict]:
    names = ["chair-orig-22-sd-bar", *CHAIR_VARIANTS, *OTHERS]
    return {
        name: compute_signals(Upload(ContentKind.video, data=(CLIPS / f"{name}.mp4").read_bytes()))
        for name in names
    }


def test_chair_variants_match_the_banked_chair_and_nothing_else_does(db, signals) -> None:
    with db.session() as session:
        bank = create_bank(session, "videos", labels=["terrorism"])
        banked = signals["chair-orig-22-sd-bar"]
        (entry,) = add_entries(
            session, bank, [NewEntry.validated(banked, content_type="video")], "test"
        )
        matcher = Matcher()
        for name in CHAIR_VARIANTS:
            query = {"vpdq": signals[name]["vpdq"]}
            matches = matcher.lookup(session, query)
            assert [m.entry for m in matches] == [entry.id], name
            assert matches[0].detail["query_match_percent"] >= 80
        for name in OTHERS:
            assert matcher.lookup(session, {"vpdq": signals[name]["vpdq"]}) == [], name


def test_bank_thresholds_on_shares_of_frames(db, signals) -> None:
    with db.session() as session:
        bank = create_bank(session, "strict-videos", vpdq_bank_match_pct=99.0)
        add_entries(session, bank, [NewEntry.validated(signals["pattern-hd-no-bar"])], "test")
        matcher = Matcher()
        longer = {"vpdq": signals["pattern-longer-no-bar"]["vpdq"]}
        assert matcher.lookup(session, longer) == []
        exact = {"vpdq": signals["pattern-hd-no-bar"]["vpdq"]}
        assert len(matcher.lookup(session, exact)) == 1
