"""Sampled video frames go through the logo step: a channel's watermark in a corner holds the
video, found in the frames where it is."""

from __future__ import annotations

from tests.ocr.synthetic import draw_logo, png_bytes, video_with_logo

from prescreen.banks import service as banks
from prescreen.matching.service import Matcher
from prescreen.screening.service import ScreenRequest, hash_bytes, screen
from prescreen.signals.logo import logo_value


def test_a_watermark_in_a_video_corner_is_found(db, settings) -> None:
    with db.session() as session:
        bank = banks.create_bank(session, "channel-marks", kind="hold", logo_threshold=0.5)
        entry = banks.NewEntry.validated({"logo": logo_value(png_bytes(draw_logo(8)))})
        banks.add_entries(session, bank, [entry], added_by="test")
    hashed = hash_bytes(video_with_logo(draw_logo(8)), settings, "clip.mp4")
    decision = screen(db, Matcher(), settings, ScreenRequest(hashed, content_id="clip"))
    assert decision["content_type"] == "video" and decision["decision"] == "hold"
    (reason,) = [r for r in decision["reasons"] if r.get("signal_type") == "logo"]
    x, y, w, _ = reason["box"]
    assert x > 0.75 and y < 0.15 and 0.1 < w < 0.2
    assert "frame" in reason


def test_a_video_without_the_watermark_is_allowed(db, settings) -> None:
    with db.session() as session:
        bank = banks.create_bank(session, "channel-marks", kind="hold", logo_threshold=0.5)
        entry = banks.NewEntry.validated({"logo": logo_value(png_bytes(draw_logo(8)))})
        banks.add_entries(session, bank, [entry], added_by="test")
    hashed = hash_bytes(video_with_logo(draw_logo(9)), settings, "clip.mp4")
    decision = screen(db, Matcher(), settings, ScreenRequest(hashed, content_id="other"))
    assert decision["decision"] == "allow"
    assert decision["signals"]["media_steps"]["logo"]["status"] == "ok"
