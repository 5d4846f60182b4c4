"""Captions read from photos: English and Arabic, light on dark and dark on light; nothing
read from photos without text."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from tests.media import photo
from tests.ocr.synthetic import add_caption, add_stroke, base_photo, caption_words, jpeg_bytes

from prescreen.signals import ocr

pytestmark = pytest.mark.usefixtures("needs_tesseract")


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(image, 85))).convert("L"))


@pytest.mark.parametrize(("language", "seed"), [("eng", 2), ("eng", 5), ("ara", 3), ("ara", 6)])
def test_caption_words_are_read(language: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = caption_words(rng, language, 5)
    image = add_caption(base_photo(seed), words, language, 0.04, rng)
    result = ocr.read_text(_grey(image))
    read = set(re.findall(r"\w+", result.text))
    assert sum(word in read for word in words) >= 4, (words, result.text)
    assert all(0 <= v <= 1 for line in result.lines for v in line.box)


def test_photos_without_text_read_as_nothing() -> None:
    for seed in range(6):
        assert ocr.read_text(_grey(photo(seed, (800, 600)))).text == ""


def test_a_stroke_that_looks_like_a_line_of_text_is_not_lettering() -> None:
    """A dark, slightly slanted stroke is the shape of a caption line to the detector, but it is
    one mark where a line that counts has letters: it neither calls for the full-size image nor
    costs a reading. The same picture with a caption shows lettering and is read."""
    rng = np.random.default_rng(4)
    image = add_stroke(Image.new("RGB", (1632, 1224), (120, 130, 140)))
    stroke = _grey(image)
    assert ocr.text_regions(stroke), "the stroke should look like a line to the detector"
    assert not ocr.shows_lettering(stroke)
    assert ocr.read_text(stroke).regions == 0

    words = caption_words(rng, "eng", 5)
    captioned = _grey(add_caption(image, words, "eng", 0.03, rng))
    assert ocr.shows_lettering(captioned)
    read = set(re.findall(r"\w+", ocr.read_text(captioned).text))
    assert sum(word in read for word in words) >= 4, (words, read)


def test_a_passed_deadline_stops_reading() -> None:
    rng = np.random.default_rng(1)
    image = add_caption(base_photo(1), caption_words(rng, "eng"), "eng", 0.04, rng)
    with pytest.raises(TimeoutError):
        ocr.read_text(_grey(image), deadline=0.0)


def test_each_server_worker_keeps_tesseract_models_for_its_share_of_the_cores(monkeypatch) -> None:
    """A handle holds its own copy of a language's models (~20 MB): the workers of one server
    together keep one per core, not one per core each."""
    reader = ocr.engine()
    if not isinstance(reader, ocr._CapiEngine):
        pytest.skip("libtesseract is not loadable; the tesseract program keeps no handles")
    monkeypatch.setattr(ocr.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(ocr, "_processes", 1)
    assert reader.max_handles == 8
    ocr.share_cores(4)
    assert reader.max_handles == 2
    ocr.share_cores(16)
    assert reader.max_handles == 1


def test_readers_loaded_up_front_are_the_ones_reading_uses() -> None:
    """A server loads the readers before forking its workers, so the workers share the
    models' pages; reading must then use those readers rather than load models of its own."""
    reader = ocr.engine()
    if not isinstance(reader, ocr._CapiEngine):
        pytest.skip("libtesseract is not loadable; the tesseract program keeps no handles")
    ocr.load_readers("eng+ara")
    loaded = dict(reader.created)
    assert loaded["eng"] == loaded["ara"] == reader.max_handles
    rng = np.random.default_rng(4)
    for language in ("eng", "ara"):
        words = caption_words(rng, language, 5)
        image = add_caption(base_photo(4), words, language, 0.04, rng)
        assert ocr.read_text(_grey(image)).text
    assert reader.created == loaded
