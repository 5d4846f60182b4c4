"""PDQ variants that defeat cheap evasions: borders, mirrors, rotations and crops.

Plain PDQ (as HMA runs it) compares one hash of the upload with one hash of the bank item, so
a letterbox (140 bits away on Meta's own `letterboxed_sample-b.jpg`), a mirror or a rotation
(106-128 bits) slips through. Here an upload is searched under several hashes and a bank item
is stored under several, and a match is any (query variant, bank variant) pair within the
bank's threshold:

* query side (`query_variants`): the upright image, the same image with uniform, near-uniform
  or blurred borders trimmed (letterbox, pillarbox, caption bars, screenshot frames; once, and
  again until nothing more comes off), and the 8 rotations/mirrors of each (all 8 come from
  one DCT, so they cost no extra hashing);
* bank side (`bank_variants`): the image, its trimmed form, and centred crops, so a cropped
  re-post of a bank item is still found;
* both sides: the image with each corner blanked (`corner_tl`, ...), so a channel badge or logo
  stamped in a corner of a re-post is blanked on both and the two agree again.

Every variant carries its own PDQ quality: flat, tiny or nearly blank images have hashes that
collide easily, so policy lets a low-quality match hold content but never block it by itself,
and derived variants (trimmed, crops) under `min_quality` are not produced at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pdqhash
from PIL import Image

from prescreen.signals.image import bits_to_hex, hashing_pixels, pdq_distance, pdq_from_pixels
from prescreen.signals.pdq_luma import corner_masked_from_luma, dihedral_from_luma, luma_of_rgb

# Order of the hashes `pdqhash.compute_dihedral` returns. Each name is the operation applied to
# the image whose hash it is (Pillow's transposes: rot90 = Image.Transpose.ROTATE_90, counter-
# clockwise; flip_h = FLIP_LEFT_RIGHT, a mirror; flip_v = FLIP_TOP_BOTTOM).
DIHEDRAL = ("original", "rot90", "rot180", "rot270", "flip_v", "flip_h", "transpose", "transverse")

# Bank-side crops: the fraction of width and height kept, centred.
DEFAULT_CROPS = (0.95, 0.9, 0.85, 0.8)
# Derived variants (trimmed, crops, dihedral of trimmed) under this PDQ quality are dropped.
DEFAULT_MIN_QUALITY = 50

# Border detection, on a copy whose longer side is at most ANALYSIS_SIDE px. A line (row or
# column) belongs to a bar when it is "strict": nearly all of it in the bar's colour, or two-tone
# (text on a plain bar), or smooth (blurred fill); or "loose": mostly in the bar's colour (an
# avatar or icons on a screenshot's chrome); a line of large caption text, at least partly in
# the bar's colour, may sit between them. A bar must end on a strict line, so a photo whose
# own edge is partly the bar's colour (dark water under a black bar) is not eaten into. A run of
# smooth lines (blurred fill) is a bar only when it ends on a straight edge.
ANALYSIS_SIDE = 256
COLOUR_TOLERANCE = 24  # max RGB difference from the bar colour for a pixel in that colour
STRICT_SHARE = 0.95
LOOSE_SHARE = 0.6
TWO_TONE_SHARE = 0.97  # bar colour plus one text tone at least this far from it:
TEXT_CONTRAST = 64
TEXT_LINE_SHARE = 0.3  # at least this much of a line of large caption text is the bar colour
SMOOTH_ACROSS = 2.5  # mean |gradient| along a line (grey levels per px) in blurred fill
SMOOTH_ALONG = 4.0  # mean |step| from one line to the next in blurred fill
EDGE_STEP = 3.0  # a blurred-fill bar must end on a straight edge: a mean step at least this big
EDGE_RATIO = 3.0  # ... and this many times the bar's own mean step from line to line
MIN_BORDER = 0.02  # a bar thinner than this share of the side is ignored
MIN_CONTENT = 0.35  # what is left after trimming must keep this share of each side
TRIM_ROUNDS = 3  # passes over rows then columns at most
MAX_BAR = 0.45  # no bar on one side is thicker than this share of the side
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# Corner-blanked variants are hashed from a copy whose shorter side is about this long.
CORNER_SIDE = 256

# Under this many pixels on the shorter side, PDQ's decimation grid is coarse enough that the
# DCT sign-flip shortcut drifts (up to ~40 bits on 256 px photos): hash each rotation/mirror
# as the reference would the rotated pixels (`dihedral_from_luma`, exact and cheap there).
EXACT_DIHEDRAL_SIDE = 512


def dihedral_hashes(pixels: Image.Image) -> tuple[dict[str, str], int]:
    """The 8 rotation/mirror hashes of these RGB pixels, and their quality. Large images get
    all 8 from one DCT; small ones the other 7 from one blur of their luma, read along mirrored
    axes. The original is always the reference's own hash (on a nearly flat picture, a
    different order of float sums flips bits)."""
    if min(pixels.size) < EXACT_DIHEDRAL_SIDE:
        value, quality = pdq_from_pixels(pixels)
        luma = luma_of_rgb(np.asarray(pixels))
        hashes = {name: pair[0] for name, pair in dihedral_from_luma(luma).items()}
        return hashes | {"original": value}, quality
    bits, quality = pdqhash.compute_dihedral(np.ascontiguousarray(np.asarray(pixels)))
    return {name: bits_to_hex(b) for name, b in zip(DIHEDRAL, bits, strict=True)}, int(quality)


def trimmings(image: Image.Image) -> dict[str, Image.Image]:
    """The image without the bars around it (uniform, near-uniform, coloured, blurred fill,
    caption bars with text, screenshot chrome), by variant name; empty when there are none.

    "trimmed" is the image after one pass over rows and columns; "retrimmed", after repeating
    the passes until nothing more comes off, when that removes more. A caption bar added above
    a picture with a margin of its own comes off first and the margin next, so only repeated
    passes bring such an upload to where the bank's copy ends; but they also eat further into
    flat parts of some pictures (the photo in a screenshot frame), where one pass agrees."""
    names = ("trimmed", "retrimmed")
    return {names[k]: image.crop(box) for k, box in enumerate(border_boxes(image))}


def border_boxes(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of the content inside the bars, in `image` pixels: after one
    pass over rows then columns, and after repeated passes when those remove more. Empty when
    there are no bars."""
    width, height = image.size
    if min(width, height) < 16:
        return []
    small = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(width, height) // ANALYSIS_SIDE
    if factor > 1:
        small = small.reduce(factor)  # cheap whole-factor box average first
    scale = max(small.size) / ANALYSIS_SIDE
    if scale > 1:
        size = (max(8, round(small.width / scale)), max(8, round(small.height / scale)))
        small = small.resize(size, Image.Resampling.BOX)
    rgb = np.asarray(small).astype(np.int16)
    rows, cols = rgb.shape[:2]
    sx, sy = width / cols, height / rows
    top, bottom, left, right = 0, rows, 0, cols
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(TRIM_ROUNDS):
        before = (top, bottom, left, right)
        # Rows (letterbox, caption bars, screenshot chrome), then columns of what is left
        # (pillarbox, margins).
        start, stop = _trim_lines(rgb[top:bottom, left:right])
        if stop - start >= MIN_CONTENT * rows:
            top, bottom = top + start, top + stop
        start, stop = _trim_lines(rgb[top:bottom, left:right].transpose(1, 0, 2))
        if stop - start >= MIN_CONTENT * cols:
            left, right = left + start, left + stop
        if (top, bottom, left, right) == before:
            break
        box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
        boxes[1:] = [box]  # the first pass's box, and the latest
    return boxes


def _trim_lines(rgb: np.ndarray) -> tuple[int, int]:
    """Rows [start, stop) of `rgb` (rows x cols x 3) that are content, not top/bottom bars."""
    n = rgb.shape[0]
    if n < 8 or rgb.shape[1] < 4:
        return 0, n
    return _bar_length(rgb), n - _bar_length(rgb[::-1])


def _bar_length(rgb: np.ndarray) -> int:
    """How many lines from the top of `rgb` are a bar (plus the line where bar and content blend
    after resampling)."""
    n = rgb.shape[0]
    first = rgb[0]
    colour = np.median(first, axis=0).astype(np.int16)
    first_share = float((np.abs(first - colour).max(axis=1) <= COLOUR_TOLERANCE).mean())
    first_grey = first.astype(np.float32) @ LUMA
    if first_share < LOOSE_SHARE and np.abs(np.diff(first_grey)).mean() > SMOOTH_ACROSS:
        return 0  # the outermost line is picture: no bar on this side (most photos stop here)
    lines = rgb[: int(n * MAX_BAR) + 1]
    grey = lines.astype(np.float32) @ LUMA
    length = max(_colour_bar(lines, grey, colour), _blurred_bar(grey))
    return min(length + 1, len(lines)) if length >= max(2, MIN_BORDER * n) else 0


def _colour_bar(lines: np.ndarray, grey: np.ndarray, colour: np.ndarray) -> int:
    bar_grey = float(colour @ LUMA)
    gap = max(2, round(0.02 * len(grey) / MAX_BAR))
    length, misses = 0, 0
    for i in range(len(lines)):  # line by line: on a photo this stops after a few lines
        near = np.abs(lines[i] - colour).max(axis=1) <= COLOUR_TOLERANCE
        share = near.mean()
        if share >= STRICT_SHARE or (
            share >= LOOSE_SHARE and _two_tone_share(grey[i], near, bar_grey) >= TWO_TONE_SHARE
        ):
            length, misses = i + 1, 0
        elif share >= LOOSE_SHARE:
            misses = 0
        elif share >= TEXT_LINE_SHARE:
            pass  # a line of large caption text: neither ends the bar nor counts against it
        else:
            misses += 1
            if misses >= gap:
                break
    return length


def _blurred_bar(grey: np.ndarray) -> int:
    if len(grey) < 3:
        return 0
    across = np.abs(np.diff(grey, axis=1)).mean(axis=1)
    along = np.abs(np.diff(grey, axis=0)).mean(axis=1)  # along[i-1]: step from line i-1 to i
    running = np.cumsum(along)
    for i in range(1, len(grey)):
        step = float(along[i - 1])
        before = float(running[i - 2]) / (i - 1) if i > 1 else 0.0
        if step >= EDGE_STEP and step >= EDGE_RATIO * max(0.1, before):
            return i
        if across[i] > SMOOTH_ACROSS or step > SMOOTH_ALONG:
            return 0
    return 0


def _two_tone_share(grey_line: np.ndarray, near: np.ndarray, bar_grey: float) -> float:
    """Share of a line in the bar colour or in one contrasting tone (text on a bar)."""
    rest = grey_line[~near]
    if rest.size == 0:
        return 1.0
    text = np.abs(rest - bar_grey) >= TEXT_CONTRAST
    if not text.any():
        return float(near.mean())
    counts = np.bincount(np.clip(rest[text], 0, 255).astype(np.int64) // 32, minlength=8)
    # the text tone and its anti-aliased edge
    best = max(counts[k] + (counts[k + 1] if k < 7 else 0) for k in range(8))
    return float(near.mean() + best / grey_line.size)


def query_variants(
    image: Image.Image,
    *,
    dihedral: bool = True,
    trim: bool = True,
    corners: bool = True,
    min_quality: int = DEFAULT_MIN_QUALITY,
) -> dict[str, tuple[str, int]]:
    """Hashes to search for an upload: name -> (pdq hex, quality).

    "original" (always, the primary hash), "trimmed" (and "retrimmed") when borders were
    found, with `dihedral` the 7 rotations/mirrors of each ("rot90", ..., "trimmed_rot90",
    ...), and with `corners` the image with each corner blanked ("corner_tl", ...).
    """
    pixels = hashing_pixels(image)
    variants: dict[str, tuple[str, int]] = {}
    if dihedral:
        hashes, quality = dihedral_hashes(pixels)
        variants.update({name: (value, quality) for name, value in hashes.items()})
    else:
        variants["original"] = pdq_from_pixels(pixels)
    for prefix, trimmed in (trimmings(pixels) if trim else {}).items():
        if dihedral:
            hashes, quality = dihedral_hashes(trimmed)
            if quality >= min_quality:
                variants.update(
                    {_prefixed(prefix, name): (value, quality) for name, value in hashes.items()}
                )
        else:
            value, quality = pdq_from_pixels(trimmed)
            if quality >= min_quality:
                variants[prefix] = (value, quality)
    if corners:
        variants.update(_corner_variants(pixels, min_quality))
    return variants


def bank_variants(
    image: Image.Image,
    *,
    trim: bool = True,
    crops: Iterable[float] = DEFAULT_CROPS,
    corners: bool = True,
    min_quality: int = DEFAULT_MIN_QUALITY,
) -> dict[str, tuple[str, int]]:
    """Hashes to store for a bank item: name -> (pdq hex, quality).

    "original" (always), "trimmed" (and "retrimmed") when borders were found, "crop90", ... for
    centred crops keeping that share of width and height, and with `corners` the image with
    each corner blanked ("corner_tl", ...).
    """
    pixels = hashing_pixels(image)
    variants = {"original": pdq_from_pixels(pixels)}
    for prefix, trimmed in (trimmings(pixels) if trim else {}).items():
        value, quality = pdq_from_pixels(trimmed)
        if quality >= min_quality:
            variants[prefix] = (value, quality)
    for keep in crops:
        value, quality = pdq_from_pixels(centred_crop(pixels, keep))
        if quality >= min_quality:
            variants[f"crop{round(keep * 100)}"] = (value, quality)
    if corners:
        variants.update(_corner_variants(pixels, min_quality))
    return variants


def _corner_variants(pixels: Image.Image, min_quality: int) -> dict[str, tuple[str, int]]:
    # These hashes are compared only with each other, so they need not be the reference's:
    # Pillow's integer luma of a copy box-averaged to about CORNER_SIDE px costs a third as much.
    small = pixels.reduce(max(1, min(pixels.size) // CORNER_SIDE))
    luma = np.asarray(small.convert("L"))
    return {
        name: pair for name, pair in corner_masked_from_luma(luma).items() if pair[1] >= min_quality
    }


def centred_crop(image: Image.Image, keep: float) -> Image.Image:
    width, height = image.size
    dx, dy = round(width * (1 - keep) / 2), round(height * (1 - keep) / 2)
    return image.crop((dx, dy, width - dx, height - dy))


def best_match(
    query: Mapping[str, tuple[str, int]],
    bank: Mapping[str, tuple[str, int]],
    threshold: int,
) -> tuple[int, str, str, int] | None:
    """The closest (distance, query variant, bank variant, lower quality of the two) within
    `threshold`, or None. Ties go to the pair listed first (the originals come first)."""
    best: tuple[int, str, str, int] | None = None
    for qname, (qhash, qquality) in query.items():
        for bname, (bhash, bquality) in bank.items():
            distance = pdq_distance(qhash, bhash)
            if distance <= threshold and (best is None or distance < best[0]):
                best = (distance, qname, bname, min(qquality, bquality))
    return best


def _prefixed(prefix: str, name: str) -> str:
    return prefix if name == "original" else f"{prefix}_{name}"
