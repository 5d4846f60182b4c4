"""Logos found by local features: anywhere, small or large, half transparent, re-encoded as
JPEG; not found in photos without them; the signal's value validated."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tests.ocr.synthetic import base_photo, draw_logo, jpeg_bytes, place_logo, png_bytes

from prescreen.core.errors import InvalidInput
from prescreen.matching.logo_index import LogoIndex
from prescreen.signals.logo import (
    decode_features,
    encode_features,
    logo_value,
    query_features,
)


def _grey(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.fixture(scope="module")
def index() -> LogoIndex:
    index = LogoIndex()
    index.add([11, 12, 13], [logo_value(png_bytes(draw_logo(seed))) for seed in (1, 2, 3)])
    return index


@pytest.mark.parametrize(
    ("seed", "width", "opacity", "corner"),
    [(1, 0.06, 0.9, True), (2, 0.15, 0.6, False), (3, 0.28, 1.0, False)],
)
def test_a_pasted_logo_is_found_where_it_is(index, seed, width, opacity, corner) -> None:
    rng = np.random.default_rng(seed)
    image, placed = place_logo(base_photo(seed), draw_logo(seed), width, opacity, rng, corner)
    found = dict(index.search(query_features(_grey(jpeg_bytes(image, 80)))))
    assert 10 + seed in found
    hit = found[10 + seed]
    assert hit["confidence"] >= 0.5
    x, y, w, h = hit["box"]
    tx, ty, tw, th = placed.box
    assert abs(x - tx) < 0.02 and abs(y - ty) < 0.02 and abs(w - tw) < 0.03 and abs(h - th) < 0.03
    assert all(found[other]["confidence"] < 0.5 for other in found if other != 10 + seed)


def test_photos_without_a_logo_match_nothing(index) -> None:
    for seed in range(4, 8):
        found = index.search(query_features(_grey(jpeg_bytes(base_photo(seed), 80))))
        assert all(score["confidence"] < 0.5 for _, score in found), found


def test_removed_logos_are_no_longer_found(index) -> None:
    rng = np.random.default_rng(0)
    image, _ = place_logo(base_photo(9), draw_logo(1), 0.2, 1.0, rng)
    query = query_features(_grey(jpeg_bytes(image)))
    smaller = LogoIndex()
    smaller.add([1, 2], [logo_value(png_bytes(draw_logo(1))), logo_value(png_bytes(draw_logo(2)))])
    assert 1 in dict(smaller.search(query))
    smaller.remove([1])
    assert 1 not in dict(smaller.search(query)) and len(smaller) == 1


def test_the_value_round_trips_and_bad_values_are_refused() -> None:
    value = logo_value(png_bytes(draw_logo(4)))
    features = decode_features(value)
    assert encode_features(features) == value
    assert features.pixels is not None and features.mask is not None
    for bad in ("", "orb1:", "orb1:!!!", "pdq:" + "0" * 64, value[:-40], "orb1:" + "A" * 300_000):
        with pytest.raises(InvalidInput):
            decode_features(bad)


def test_a_blank_image_is_no_logo() -> None:
    with pytest.raises(InvalidInput, match="too little detail"):
        logo_value(png_bytes(Image.new("RGB", (200, 100), "white")))


def test_a_bank_of_one_logo_finds_it_in_a_busy_photo() -> None:
    # With no other logo to compare against, every keypoint of a textured photo looks like a
    # match unless the ratio test also compares with other places of the same logo.
    index = LogoIndex()
    index.add([5], [logo_value(png_bytes(draw_logo(5)))])
    rng = np.random.default_rng(6)
    image, placed = place_logo(base_photo(6, (1024, 768)), draw_logo(5), 0.2, 0.8, rng)
    found = dict(index.search(query_features(_grey(jpeg_bytes(image)))))
    assert found[5]["confidence"] >= 0.5
    assert np.allclose(found[5]["box"], placed.box, atol=0.02)
