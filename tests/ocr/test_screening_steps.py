"""The OCR and logo steps in screening, end to end through the API: logo banks, text read
from images going through text banks and classifiers, reasons explained, overruns counted,
and a clean skip where Tesseract is missing."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from prometheus_client import REGISTRY
from tests.ocr.synthetic import (
    add_caption,
    add_stroke,
    base_photo,
    draw_logo,
    jpeg_bytes,
    place_logo,
    png_bytes,
)

from prescreen.review import users
from prescreen.signals import ocr

PASSWORD = "correct horse battery staple"
CAPTION = ["join", "our", "brothers", "victory", "near"]


def _screen(client, auth, data: bytes, content_id: str) -> dict:
    response = client.post(
        "/v1/screen",
        headers=auth("integrator"),
        files={"file": ("upload.jpg", data, "image/jpeg")},
        data={"content_id": content_id},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _captioned(seed: int, words: list[str]) -> bytes:
    rng = np.random.default_rng(seed)
    return jpeg_bytes(add_caption(base_photo(seed, (1024, 768)), words, "eng", 0.045, rng), 85)


def test_a_logo_bank_holds_new_images_that_carry_its_logo(client, auth, db) -> None:
    created = client.post(
        "/v1/banks",
        headers=auth(),
        json={
            "name": "outlet-logos",
            "kind": "hold",
            "labels": ["terrorism"],
            "logo_threshold": 0.5,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["logo_threshold"] == 0.5
    added = client.post(
        "/v1/banks/outlet-logos/content",
        headers=auth(),
        files={"file": ("logo.png", png_bytes(draw_logo(7)), "image/png")},
        data={"labels": "terrorism"},
    )
    assert added.status_code == 201, added.text
    assert set(added.json()["signals"]) == {"logo"}

    rng = np.random.default_rng(3)
    image, placed = place_logo(base_photo(3, (1280, 960)), draw_logo(7), 0.12, 0.7, rng, True)
    decision = _screen(client, auth, jpeg_bytes(image, 80), "with-logo")
    assert decision["decision"] == "hold"
    (reason,) = [r for r in decision["reasons"] if r.get("signal_type") == "logo"]
    assert reason["bank"] == "outlet-logos" and reason["label"] == "terrorism"
    assert reason["confidence"] >= 0.5 and reason["inliers"] >= 6
    assert np.allclose(reason["box"], placed.box, atol=0.03)
    assert decision["signals"]["media_steps"]["logo"]["status"] == "ok"

    clean = _screen(client, auth, jpeg_bytes(base_photo(4, (1280, 960)), 80), "no-logo")
    assert clean["decision"] == "allow", clean["reasons"]

    # The held image's case shows the moderator where the logo is.
    cases = client.get("/v1/review/cases", headers=auth("moderator")).json()["cases"]
    assert len(cases) == 1
    with db.session() as session:
        users.create_user(session, "mod", PASSWORD, "moderator")
    page = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    login = {"username": "mod", "password": PASSWORD, "csrf_token": token}
    assert client.post("/ui/login", data=login, follow_redirects=False).status_code == 303
    case_page = client.get(f"/ui/cases/{cases[0]['id']}")
    assert case_page.status_code == 200
    (style,) = re.findall(r'data-found-box style="([^"]+)"', case_page.text)
    left, top = (float(v) for v in re.findall(r"(?:left|top): ([0-9.]+)%", style))
    assert abs(left - placed.box[0] * 100) < 3 and abs(top - placed.box[1] * 100) < 3
    assert "outlet-logos #" in case_page.text and "confidence" in case_page.text


def test_a_bad_logo_threshold_is_refused(client, auth) -> None:
    response = client.post("/v1/banks", headers=auth(), json={"name": "bad", "logo_threshold": 1.5})
    assert response.status_code == 422


@pytest.mark.usefixtures("needs_tesseract")
def test_text_in_an_image_is_matched_by_text_banks(client, auth) -> None:
    assert (
        client.post(
            "/v1/banks", headers=auth(), json={"name": "slogans", "labels": ["terrorism"]}
        ).status_code
        == 201
    )
    entry = client.post(
        "/v1/banks/slogans/content",
        headers=auth(),
        files={"file": ("slogan.txt", " ".join(CAPTION).encode(), "text/plain")},
        data={"labels": "terrorism"},
    )
    assert entry.status_code == 201, entry.text
    decision = _screen(client, auth, _captioned(2, CAPTION), "captioned")
    assert decision["decision"] == "block"
    match = next(r for r in decision["reasons"] if r["kind"] == "bank_match")
    assert match["signal_type"] == "text" and match["source"] == "ocr"
    assert "brothers" in match["ocr_text"]
    (note,) = [r for r in decision["reasons"] if r["kind"] == "ocr_text"]
    assert note["lines"][0]["box"][1] >= 0 and "victory" in note["text"]


@pytest.mark.usefixtures("needs_tesseract")
def test_a_2mp_photo_is_decoded_again_only_when_it_shows_text(client, auth) -> None:
    """Hashing decodes a 2 MP JPEG at half size; OCR looks for lines of text in that copy and
    decodes the full-size pixels only when it sees some, so a caption is still read at full
    resolution while a photo without text costs no second decode."""
    rng = np.random.default_rng(8)
    words = ["brothers", "victory", "remains", "together", "tonight"]
    captioned = add_caption(base_photo(8, (1632, 1224)), words, "eng", 0.04, rng)
    read = _screen(client, auth, jpeg_bytes(captioned, 85), "captioned-2mp")
    steps = read["signals"]["media_steps"]
    assert steps["ocr"]["status"] == "ok" and "decode" in steps
    (note,) = [r for r in read["reasons"] if r["kind"] == "ocr_text"]
    assert sum(word in note["text"] for word in words) >= 4, note["text"]

    plain = base_photo(9, (1632, 1224))
    for name, image in (("plain-2mp", plain), ("stroked-2mp", add_stroke(plain))):
        screened = _screen(client, auth, jpeg_bytes(image, 85), name)
        steps = screened["signals"]["media_steps"]
        assert steps["ocr"]["status"] == "ok" and "decode" not in steps, name
        assert not [r for r in screened["reasons"] if r["kind"] == "ocr_text"]


@pytest.mark.usefixtures("needs_tesseract")
def test_text_in_an_image_is_scored_by_the_classifiers(client, auth, settings) -> None:
    settings.classifier_thresholds = {"terrorism": {"hold": 0.0, "block": 1.01}}
    decision = _screen(client, auth, _captioned(5, CAPTION), "scored")
    scores = [r for r in decision["reasons"] if r["kind"] == "classifier"]
    assert scores and all(r["source"] == "ocr" for r in scores)
    assert decision["decision"] == "hold"


@pytest.mark.usefixtures("needs_tesseract")
def test_an_overrun_is_counted_and_the_image_decided_without_it(
    client, auth, settings, caplog
) -> None:
    assert client.post("/v1/banks", headers=auth(), json={"name": "slogans"}).status_code == 201
    added = client.post(
        "/v1/banks/slogans/content",
        headers=auth(),
        files={"file": ("slogan.txt", " ".join(CAPTION).encode(), "text/plain")},
    )
    assert added.status_code == 201
    settings.ocr_budget_ms = 0.001
    before = REGISTRY.get_sample_value("prescreen_media_step_overruns_total", {"step": "ocr"}) or 0
    with caplog.at_level(logging.WARNING, logger="prescreen.screening.media_steps"):
        decision = _screen(client, auth, _captioned(2, CAPTION), "late")
    assert decision["decision"] == "allow"
    assert decision["signals"]["media_steps"]["ocr"]["status"] == "over_budget"
    after = REGISTRY.get_sample_value("prescreen_media_step_overruns_total", {"step": "ocr"})
    assert after == before + 1
    assert any("over budget" in r.getMessage() for r in caplog.records)


def test_screening_goes_on_without_tesseract(client, auth, monkeypatch, caplog) -> None:
    """And looks for Tesseract once, not on every upload: each look spawns a program."""
    import pytesseract

    looks = []
    probe = pytesseract.get_tesseract_version
    monkeypatch.setattr(pytesseract, "get_tesseract_version", lambda: looks.append(1) or probe())
    monkeypatch.setenv("PRESCREEN_OCR_ENGINE", "cli")
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    ocr.forget_engine()
    try:
        with caplog.at_level(logging.WARNING, logger="prescreen.screening.media_steps"):
            decisions = [_screen(client, auth, _captioned(2, CAPTION), f"no-ocr-{n}") for n in "ab"]
    finally:
        ocr.forget_engine()
    for decision in decisions:
        assert decision["decision"] == "allow"
        assert decision["signals"]["media_steps"]["ocr"]["status"] == "unavailable"
    assert len(looks) == 1
