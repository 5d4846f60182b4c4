"""The fast image path: draft-mode JPEG decoding and hashing on >= 512 px keep PDQ within a few
bits of the full-resolution reference, every format and animation is handled, and hostile files
still get clear errors."""

from __future__ import annotations

import io

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps
from tests.conftest import PDQ_DATA, needs_pdq_data
from tests.media import encode, photo

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.image import (
    HASH_MIN_SIDE,
    IMAGE_FORMATS,
    PDQSignal,
    bits_to_hex,
    decode_frames,
    decode_image,
    hashing_pixels,
    pdq_distance,
    pdq_hash,
)

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def _reference(image: Image.Image) -> str:
    """python-threatexchange's hash: pdqhash on every RGB pixel."""
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
    return bits_to_hex(bits)


def _signals(data: bytes) -> dict:
    return PDQSignal().compute(Upload(ContentKind.photo, data=data))


@needs_pdq_data()
def test_fast_path_drifts_at_most_8_bits_at_p95_on_the_pdq_test_set() -> None:
    distances = []
    for path in sorted(PDQ_DATA.rglob("*")):
        if path.suffix.lower() not in SUFFIXES:
            continue
        data = path.read_bytes()
        upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        distances.append(pdq_distance(_signals(data)["pdq"], _reference(upright)))
    assert len(distances) >= 40
    assert np.percentile(distances, 95) <= 8, distances
    assert max(distances) <= 16, distances


def test_images_under_1024_px_hash_exactly_as_the_reference() -> None:
    image = photo(3, (1000, 700))
    assert hashing_pixels(image).size == image.size
    assert pdq_hash(image)[0] == _reference(image)
    assert pdq_hash(image) == pdq_hash(image, full_resolution=True)


def test_large_jpeg_is_decoded_in_draft_mode_and_stays_close() -> None:
    image = photo(5, (640, 480)).resize((2600, 1950), Image.Resampling.BICUBIC)
    data = encode(image, "JPEG", quality=90)
    fast = decode_image(data, 10**8, min_side=HASH_MIN_SIDE)
    assert min(fast.size) >= HASH_MIN_SIDE and fast.width <= 1300  # decoded at 1/2 or less
    full = decode_image(data, 10**8)
    assert full.size == (2600, 1950)
    assert pdq_distance(_signals(data)["pdq"], _reference(full)) <= 8


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF"])
def test_other_formats_hash_close_to_the_jpeg(fmt: str) -> None:
    image = photo(8, (1400, 1100))
    jpeg = _signals(encode(image, "JPEG", quality=95))["pdq"]
    params = {"lossless": True} if fmt == "WEBP" else {}
    assert pdq_distance(_signals(encode(image, fmt, **params))["pdq"], jpeg) <= 8


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16"])
def test_large_images_in_any_mode_take_the_fast_path(mode: str) -> None:
    image = photo(9, (1200, 1100)).resize((2400, 2200))
    converted = image.convert("L").convert(mode) if mode.startswith("I") else image.convert(mode)
    value, quality = pdq_hash(converted)
    assert quality > 0
    limit = 16 if mode in ("L", "LA", "I;16") else 8  # luma from one channel differs slightly
    assert pdq_distance(value, _reference(image)) <= limit, mode


def _animation(fmt: str) -> tuple[bytes, list[Image.Image]]:
    frames = [photo(20 + k, (320, 240)) for k in range(9)]
    buffer = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=80, **extra)
    return buffer.getvalue(), frames


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_the_first_frame_and_sampled_frames(fmt: str) -> None:
    data, frames = _animation(fmt)
    signals = _signals(data)
    first, _ = pdq_hash(frames[0])
    assert pdq_distance(signals["pdq"], first) <= 24  # GIF's 256-colour palette costs bits
    variants = signals["pdq_variants"]
    sampled = [value for name, (value, _q) in variants.items() if name.startswith("frame")]
    assert len(sampled) == 4 and all(len(h) == 64 for h in sampled)
    later = [pdq_hash(f)[0] for f in frames[1:]]
    for value in sampled:
        assert min(pdq_distance(value, other) for other in later) <= 24
    assert len(decode_frames(data, 10**8)) == 4
    assert decode_frames(encode(frames[0], "PNG"), 10**8) == []


def test_hostile_and_truncated_files_still_get_clear_errors() -> None:
    data = encode(photo(4, (2000, 1500)), "JPEG", quality=90)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(data[: len(data) // 3], 10**8, min_side=HASH_MIN_SIDE)
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"", 10**8, min_side=HASH_MIN_SIDE)
    with pytest.raises(UnsupportedMedia):
        decode_image(b"GIF89a this is not really a gif", 10**8, min_side=HASH_MIN_SIDE)
    # the declared size is checked before any decoding, draft mode or not
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(data, 1_000_000, min_side=HASH_MIN_SIDE)
    gif, _ = _animation("GIF")
    with pytest.raises(InvalidInput, match="truncated"):
        _signals(gif[:2000])  # cut inside the first frame
    try:  # cut after a few frames: hashed from what is there, or refused clearly
        assert len(_signals(gif[: len(gif) // 2])["pdq"]) == 64
    except InvalidInput as exc:
        assert "truncated" in str(exc)


@pytest.mark.skipif("HEIF" not in IMAGE_FORMATS, reason="pillow-heif is not installed")
def test_heic_photos_are_hashed_when_pillow_heif_is_installed() -> None:
    image = photo(12, (800, 600))
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=90)
    assert pdq_distance(_signals(buffer.getvalue())["pdq"], pdq_hash(image)[0]) <= 16
