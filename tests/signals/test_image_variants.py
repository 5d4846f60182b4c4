"""Variants that defeat borders, mirrors, rotations and crops, without matching unrelated
images; low-information images are reported as such."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from tests.conftest import PDQ_DATA, needs_pdq_data
from tests.media import encode
from tests.media import photo as flat_photo

from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.image import PDQSignal, decode_image, pdq_distance, pdq_hash
from prescreen.signals.image_variants import (
    DIHEDRAL,
    TRIMMINGS,
    bank_variants,
    best_match,
    centred_crop,
    dihedral_hashes,
    query_variants,
    trimmings,
)

THRESHOLD = 31
RESOURCES = PDQ_DATA / "python-threatexchange/threatexchange/tests/hashing/resources"
DIH = PDQ_DATA / "pdq/data/reg-test-input/dih"


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A test scene with texture everywhere, as camera photos have (the plain synthetic scenes
    have flat shapes that touch the edges, which look like bars)."""
    rng = np.random.default_rng(seed + 1000)
    texture = Image.fromarray(rng.integers(0, 256, (size[1] // 4, size[0] // 4), dtype=np.uint8))
    texture = texture.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(1))
    grain = (np.asarray(texture, dtype=np.float32) - 128) * 0.35
    base = np.asarray(flat_photo(seed, size), dtype=np.float32) + grain[..., None]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _load(path) -> Image.Image:
    return decode_image(path.read_bytes(), 10**8, min_side=512)


def _upload(image: Image.Image) -> Image.Image:
    """What screening sees after the edited image is re-encoded and uploaded."""
    return decode_image(encode(image, "JPEG", quality=90), 10**8, min_side=512)


def _matches(query: Image.Image, bank: Image.Image) -> tuple[int, str, str, int] | None:
    return best_match(query_variants(query), bank_variants(bank), THRESHOLD)


@needs_pdq_data()
def test_letterboxed_sample_b_matches_sample_b_through_the_trimmed_variant() -> None:
    original, boxed = (
        _load(RESOURCES / "sample-b.jpg"),
        _load(RESOURCES / "letterboxed_sample-b.jpg"),
    )
    assert pdq_distance(pdq_hash(original)[0], pdq_hash(boxed)[0]) > 100  # plain PDQ misses it
    match = _matches(boxed, original)
    assert match is not None and match[1] == "trimmed", match
    signals = PDQSignal().compute(
        Upload(ContentKind.photo, data=(RESOURCES / "letterboxed_sample-b.jpg").read_bytes())
    )
    assert signals["pdq"] == pdq_hash(boxed)[0]  # the primary hash stays the untrimmed one
    trimmed, _quality = signals["pdq_variants"]["trimmed"]
    assert pdq_distance(trimmed, pdq_hash(original)[0]) <= THRESHOLD


@needs_pdq_data()
def test_every_rotation_and_mirror_of_the_bridge_matches_the_original() -> None:
    original = _load(DIH / "bridge-1-original.jpg")
    bank = bank_variants(original)
    for path in sorted(DIH.glob("bridge-*.jpg")):
        query = query_variants(_load(path))
        assert set(DIHEDRAL) <= set(query)
        match = best_match(query, bank, THRESHOLD)
        assert match is not None and match[0] <= 16, (path.name, match)


# How Pillow turns a picture into each of its rotations/mirrors.
TRANSPOSED = {
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "flip_v": Image.Transpose.FLIP_TOP_BOTTOM,
    "flip_h": Image.Transpose.FLIP_LEFT_RIGHT,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


@pytest.mark.parametrize("size", [(1200, 900), (640, 480), (511, 377), (120, 90)])
def test_rotations_hash_exactly_as_the_rotated_pictures(size) -> None:
    """Every rotation/mirror is what the reference computes on the rotated picture itself
    (derived from one blur of the luma; the reference's one-DCT shortcut would drift)."""
    image = photo(3, size)
    hashes, quality = dihedral_hashes(image)
    assert (hashes["original"], quality) == pdq_hash(image, full_resolution=True)
    for name, method in TRANSPOSED.items():
        assert hashes[name] == pdq_hash(image.transpose(method), full_resolution=True)[0], name


@pytest.mark.parametrize("fill", ["black", "white", "colour", "blurred"])
@pytest.mark.parametrize("horizontal", [True, False], ids=["letterbox", "pillarbox"])
def test_bars_are_trimmed_and_the_copy_matches(fill: str, horizontal: bool) -> None:
    image = photo(31, (640, 480))
    width, height = image.size
    size = (width, int(height * 1.4)) if horizontal else (int(width * 1.4), height)
    if fill == "blurred":
        canvas = ImageOps.fit(image, size).filter(ImageFilter.GaussianBlur(30))
    else:
        colour = {"black": (0, 0, 0), "white": (255, 255, 255), "colour": (30, 90, 200)}[fill]
        canvas = Image.new("RGB", size, colour)
    offset = ((size[0] - width) // 2, (size[1] - height) // 2)
    canvas.paste(image, offset)
    upload = _upload(canvas)
    sizes = [copy.size for copy in trimmings(upload).values()]
    assert any(abs(w - width) <= 2 and abs(h - height) <= 2 for w, h in sizes), sizes
    match = _matches(upload, image)
    assert match is not None and match[1] in TRIMMINGS, match


def _soft_edged(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo with smooth sky along its top quarter and smooth ground along its bottom eighth:
    edges that blurred fill meets without a step, so passes over rows cannot tell fill from
    picture."""
    pixels = np.asarray(photo(seed, size)).copy()
    width, height = size
    sky, ground = height // 4, height // 8
    pixels[:sky] = np.linspace(150, 200, sky)[:, None, None] * np.ones((1, width, 3))
    pixels[-ground:] = np.linspace(90, 60, ground)[:, None, None] * np.ones((1, width, 3))
    return Image.fromarray(pixels)


@pytest.mark.parametrize("horizontal", [True, False], ids=["letterbox", "pillarbox"])
def test_blurred_fill_around_a_soft_edged_picture_comes_off_exactly(horizontal: bool) -> None:
    """Reels-style blurred fill: the picture centred on an enlarged, blurred copy of itself.
    The picture is found to the pixel, though its own edges are as smooth as the fill."""
    image = _soft_edged(34, (640, 480) if horizontal else (480, 640))
    width, height = image.size
    size = (width, int(height * 1.5)) if horizontal else (int(width * 1.5), height)
    canvas = ImageOps.fit(image, size).filter(ImageFilter.GaussianBlur(max(size) / 25))
    offset = ((size[0] - width) // 2, (size[1] - height) // 2)
    canvas.paste(image, offset)
    upload = _upload(canvas)
    unfilled = trimmings(upload).get("unfilled")
    assert unfilled is not None and unfilled.size == image.size
    match = _matches(upload, image)
    assert match is not None and match[1] == "unfilled" and match[0] <= 8, match


def test_a_caption_bar_over_a_dark_picture_leaves_the_dark_edge_alone() -> None:
    """A white caption bar above a picture whose bottom fades into a starry night sky: black
    lines there look like a bar of their own, but the bars at the two ends differ in colour,
    so only the one with the sharp edge, the caption's, is taken."""
    pixels = np.asarray(photo(35, (600, 450))).astype(np.float32)
    pixels[-200:] *= np.clip(np.linspace(1.0, -1.5, 200), 0, 1)[:, None, None]
    stars = np.random.default_rng(35).random((120, 600)) < 0.004
    pixels[-120:][stars] = 230
    image = Image.fromarray(pixels.astype(np.uint8))
    canvas = Image.new("RGB", (600, 560), "white")
    canvas.paste(image, (0, 110))
    ImageDraw.Draw(canvas).text((30, 40), "THEY DON'T WANT YOU TO SEE THIS", fill="black")
    trimmed = trimmings(_upload(canvas))["trimmed"]
    assert abs(trimmed.height - 450) <= 2, trimmed.size
    match = _matches(_upload(canvas), image)
    assert match is not None and match[0] <= 8, match


@needs_pdq_data()
def test_a_fine_textured_photo_shrunk_to_a_thumbnail_is_caught_by_the_thumb_hashes() -> None:
    """q0122's fine texture aliases differently at every scale: shrunk to a quarter, its plain
    hash is far off, but the thumbnail-scale hashes of the two copies agree."""
    original = _load(PDQ_DATA / "pdq/data/reg-test-input/labelme-subset/q0122.jpg")
    small = original.resize((original.width // 4, original.height // 4), Image.Resampling.LANCZOS)
    upload = _upload(small)
    assert pdq_distance(pdq_hash(upload)[0], pdq_hash(original)[0]) > THRESHOLD
    match = _matches(upload, original)
    assert match is not None and match[2] == "thumb", match


def test_caption_bar_and_screenshot_frame_are_trimmed() -> None:
    image = photo(32, (600, 450))
    canvas = Image.new("RGB", (600, 560), "white")
    canvas.paste(image, (0, 110))
    ImageDraw.Draw(canvas).text((30, 40), "THEY DON'T WANT YOU TO SEE THIS", fill="black")
    assert _matches(_upload(canvas), image) is not None
    frame = Image.new("RGB", (660, 700), (250, 250, 250))
    frame.paste(image, (30, 120))
    draw = ImageDraw.Draw(frame)
    draw.ellipse((30, 40, 90, 100), fill=(90, 120, 200))
    draw.text((110, 60), "some_account", fill="black")
    draw.text((30, 600), "1,024 likes  look at this", fill="black")
    assert _matches(_upload(frame), image) is not None


def test_a_plain_photo_has_no_border_to_trim() -> None:
    for seed in range(5):
        assert trimmings(photo(seed, (640, 480))) == {}


def test_centred_crops_are_caught_by_the_bank_crops() -> None:
    image = photo(33, (800, 600))
    for keep in (0.95, 0.9):
        cropped = _upload(centred_crop(image, keep))
        assert pdq_distance(pdq_hash(cropped)[0], pdq_hash(image)[0]) > THRESHOLD
        match = _matches(cropped, image)
        assert match is not None and match[2].startswith("crop"), (keep, match)


def test_unrelated_photos_never_match_under_any_variant() -> None:
    banks = [bank_variants(photo(100 + k)) for k in range(6)]
    queries = [query_variants(photo(200 + k)) for k in range(6)]
    for query in queries:
        for bank in banks:
            assert best_match(query, bank, THRESHOLD) is None


def test_low_information_images_report_low_quality_and_derive_no_variants() -> None:
    flat = Image.new("RGB", (640, 480), (120, 120, 120))
    ImageDraw.Draw(flat).rectangle((200, 150, 440, 330), fill=(125, 125, 125))
    query, bank = query_variants(flat), bank_variants(flat)
    assert query["original"][1] < 50 and bank["original"][1] < 50
    assert set(bank) == {"original"}  # crops of a blank image would only add collisions
    assert all(quality < 50 for _, quality in query.values())
    match = best_match(query, bank, THRESHOLD)
    assert match is not None and match[3] < 50  # a match, flagged as low quality for policy


def _badge(image: Image.Image, corner: str) -> Image.Image:
    """An opaque channel badge, 13% of the width, stamped in one corner."""
    out = image.copy()
    side, margin = round(out.width * 0.13), round(out.width * 0.03)
    x0 = margin if corner[-1] == "l" else out.width - margin - side
    y0 = margin if corner[-2] == "t" else out.height - margin - side
    draw = ImageDraw.Draw(out)
    draw.ellipse((x0, y0, x0 + side, y0 + side), fill=(220, 20, 30), outline="white", width=4)
    draw.rectangle(
        (x0 + side // 3, y0 + side // 3, x0 + 2 * side // 3, y0 + 2 * side // 3), "white"
    )
    return out


@needs_pdq_data()
@pytest.mark.parametrize("corner", ["corner_tl", "corner_tr", "corner_bl", "corner_br"])
def test_a_badge_stamped_in_a_corner_is_caught_with_that_corner_blanked(corner: str) -> None:
    image = _load(PDQ_DATA / "pdq/data/reg-test-input/labelme-subset/q0746.jpg")
    stamped = _upload(_badge(image, corner))
    without = best_match(
        query_variants(stamped, corners=False), bank_variants(image, corners=False), THRESHOLD
    )
    match = _matches(stamped, image)
    assert without is None  # the badge moves every other variant past the threshold
    assert match is not None and match[1] == match[2] == corner, match
