"""Signals: PDQ against Meta's reference hashes, every Pillow mode, EXIF orientation, text and URL
normalisation."""

from __future__ import annotations

import csv
import hashlib

import pytest
from PIL import Image
from tests.conftest import PDQ_DATA, needs_pdq_data
from tests.media import encode, jpeg, photo

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.image import decode_image, pdq_distance, pdq_hash
from prescreen.signals.registry import all_types, compute_signals, normalize_signals
from prescreen.signals.text import normalize_text
from prescreen.signals.url import canonical_url


def _reference_rows() -> list[dict[str, str]]:
    path = PDQ_DATA / "expected_pdq_hashes.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [row for row in csv.DictReader(f) if (PDQ_DATA / row["path"]).is_file()]


def _hash_file(path) -> tuple[str, int]:
    return pdq_hash(decode_image(path.read_bytes(), 100_000_000))


@needs_pdq_data()
def test_pdq_is_bit_exact_with_python_threatexchange() -> None:
    rows = [r for r in _reference_rows() if r["source_of_expectation"].startswith("python-threat")]
    assert len(rows) >= 3
    for row in rows:
        value, quality = _hash_file(PDQ_DATA / row["path"])
        assert value == row["pdq_hex"], row["path"]
        assert quality == int(row["quality"]), row["path"]


@needs_pdq_data()
def test_pdq_is_within_16_bits_of_the_other_reference_implementations() -> None:
    rows = [r for r in _reference_rows() if not r["source_of_expectation"].startswith("python-")]
    assert len(rows) >= 30
    for row in rows:
        value, _ = _hash_file(PDQ_DATA / row["path"])
        assert pdq_distance(value, row["pdq_hex"]) <= 16, row["path"]


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]


@pytest.mark.parametrize("mode", MODES)
def test_every_pillow_mode_hashes_close_to_the_rgb_original(mode: str) -> None:
    original = photo(7)
    expected, _ = pdq_hash(original)
    converted = (
        original.convert("L").convert(mode)
        if mode.startswith("I") or mode == "F"
        else (original.convert(mode))
    )
    value, quality = pdq_hash(converted)
    assert quality > 0
    limit = 40 if mode == "1" else 16
    assert pdq_distance(value, expected) <= limit, mode


@needs_pdq_data()
def test_reference_mode_files_all_hash_to_the_same_image() -> None:
    folder = PDQ_DATA / "pdq/data/misc-images/modes"
    original, _ = _hash_file(folder / "original.jpg")
    for path in sorted(folder.glob("*.*")):
        if path.suffix == ".md":
            continue
        value, _ = _hash_file(path)
        assert pdq_distance(value, original) <= 8, path.name


@pytest.mark.parametrize("orientation,transpose", [
    (3, Image.Transpose.ROTATE_180),
    (6, Image.Transpose.ROTATE_90),
    (8, Image.Transpose.ROTATE_270),
])  # fmt: skip
def test_exif_orientation_is_applied_before_hashing(orientation, transpose) -> None:
    upright = photo(11)
    stored = upright.transpose(transpose)  # what the camera wrote; the tag says how to undo it
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    tagged, _ = pdq_hash(decode_image(data, 10**8))
    plain, _ = pdq_hash(decode_image(encode(upright, "JPEG", quality=95), 10**8))
    assert pdq_distance(tagged, plain) <= 8


def test_digests_are_of_the_raw_bytes() -> None:
    data = jpeg(3)
    signals = compute_signals(Upload(ContentKind.photo, data=data))
    assert signals["md5"] == hashlib.md5(data).hexdigest()
    assert signals["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(signals["pdq"]) == 64 and 0 <= signals["pdq_quality"] <= 100


def test_decoding_refuses_bombs_truncation_and_non_images() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"", 10**8)
    with pytest.raises(UnsupportedMedia):
        decode_image(b"hello, this is text", 10**8)
    data = jpeg(5)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(data[: len(data) // 2], 10**8)
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(encode(Image.new("L", (4000, 3000))), 10_000_000)


def test_text_normalisation_folds_cosmetic_evasions() -> None:
    base = normalize_text("Join the fight now")
    for variant in [
        "JOIN THE FIGHT NOW",
        "Join\u200b the\u200d fight now",
        "Ｊｏｉｎ ｔｈｅ ｆｉｇｈｔ ｎｏｗ",
        "Jоin thе fight nоw",  # Cyrillic o and e
        "Join   the -- fight... now!!!",
    ]:
        assert normalize_text(variant) == base, variant
    assert normalize_text("Join the fight later") != base


@pytest.mark.parametrize("raw,expected", [
    ("HTTPS://WWW.Example.COM:443/a//b?utm_source=x&b=2&a=1#top", "https://example.com/a/b?a=1&b=2"),
    ("example.com", "http://example.com/"),
    ("http://example.com:80/path?fbclid=abc", "http://example.com/path"),
    ("http://example.com:8080/%7Euser", "http://example.com:8080/~user"),
    ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),
])  # fmt: skip
def test_url_canonical_form(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize("raw", ["ftp://example.com/x", "http://", "javascript:alert(1)"])
def test_url_refuses_what_it_cannot_canonicalise(raw: str) -> None:
    with pytest.raises(InvalidInput):
        canonical_url(raw)


def test_signal_types_are_registered_plugins_with_validation() -> None:
    assert {"pdq", "md5", "sha256", "text", "url"} <= set(all_types())
    assert normalize_signals({"pdq": "AB" * 32}) == {"pdq": "ab" * 32}
    with pytest.raises(InvalidInput, match="64 hex"):
        normalize_signals({"pdq": "xyz"})
    with pytest.raises(InvalidInput, match="unknown signal type"):
        normalize_signals({"nope": "1"})
