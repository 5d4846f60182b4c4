"""PDQ variants that defeat cheap evasions: borders, mirrors, rotations and crops.

Plain PDQ (as HMA runs it) compares one hash of the upload with one hash of the bank item, so
a letterbox (140 bits away on Meta's own `letterboxed_sample-b.jpg`), a mirror or a rotation
(106-128 bits) slips through. Here an upload is searched under several hashes and a bank item
is stored under several, and a match is any (query variant, bank variant) pair within the
bank's threshold:

* query side (`query_variants`): the upright image, the same image with its borders trimmed
  (letterbox, pillarbox, caption bars, screenshot frames; once, and again until nothing more
  comes off; blurred fill), and the 8 rotations/mirrors of each (all 8 from one blur of the
  luma, for less than one reference hash);
* bank side (`bank_variants`): the image, its trimmed form, and centred crops, so a cropped
  re-post of a bank item is still found;
* both sides: the image with each corner blanked (`corner_tl`, ...), so a channel badge or logo
  stamped in a corner of a re-post is blanked on both and the two agree again; and a hash of
  a thumbnail-sized copy (`thumb`), so a re-post shrunk to a thumbnail is still found.

Every variant carries its own PDQ quality: flat, tiny or nearly blank images have hashes that
collide easily, so policy lets a low-quality match hold content but never block it by itself,
and derived variants (trimmed, crops) under `min_quality` are not produced at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prescreen.signals.image import hashing_pixels, pdq_distance, pdq_from_pixels
from prescreen.signals.pdq_luma import LUMA, corner_masked_from_luma, dihedral_from_rgb

# The rotations/mirrors, in the order `pdqhash.compute_dihedral` returns them. Each name is the
# operation applied to the image whose hash it is (Pillow's transposes: rot90 =
# Image.Transpose.ROTATE_90, counter-clockwise; flip_h = FLIP_LEFT_RIGHT, a mirror; flip_v =
# FLIP_TOP_BOTTOM).
DIHEDRAL = ("original", "rot90", "rot180", "rot270", "flip_v", "flip_h", "transpose", "transverse")

# The copies of an image without its bars (`trimmings`).
TRIMMINGS = ("trimmed", "retrimmed", "unfilled")

# Bank-side crops: the fraction of width and height kept, centred.
DEFAULT_CROPS = (0.95, 0.9, 0.85, 0.8)
# Derived variants (trimmed, crops, dihedral of trimmed) under this PDQ quality are dropped.
DEFAULT_MIN_QUALITY = 50

# Border detection, on a copy whose longer side is at most ANALYSIS_SIDE px. A line (row or
# column) belongs to a bar when it is "strict": nearly all of it in the bar's colour, or two-tone
# (text on a plain bar); or "loose": mostly in the bar's colour (an avatar or icons on a
# screenshot's chrome); a line of large caption text, at least partly in the bar's colour, may
# sit between them. A bar must end on a strict line, so a photo whose own edge is partly the
# bar's colour (dark water under a black bar) is not eaten into. When the bars at the two ends
# differ in colour, only the one with the sharper edge is taken: a white caption bar over a
# night sky ends sharply, the sky's own dark edge fades in. Blurred fill has no colour of its
# own: `fill_bars` finds it by its smoothness and its symmetry.
ANALYSIS_SIDE = 256
COLOUR_TOLERANCE = 24  # max RGB difference from the bar colour for a pixel in that colour
STRICT_SHARE = 0.95
LOOSE_SHARE = 0.6
TWO_TONE_SHARE = 0.97  # bar colour plus one text tone at least this far from it:
TEXT_CONTRAST = 64
TEXT_LINE_SHARE = 0.3  # at least this much of a line of large caption text is the bar colour
SMOOTH_ACROSS = 2.5  # mean |gradient| along a line (grey levels per px) in blurred fill
EDGE_STEP = 3.0  # a blurred-fill bar ends on a straight edge: a mean step at least this big
EDGE_RATIO = 3.0  # ... and this many times the bar's own mean step from line to line
FILL_TEXTURE = 0.8  # ... or where texture starts: mean |gradient| along the next lines this big
TEXTURE_RATIO = 4.0  # ... and this many times the bar's own
MIN_BORDER = 0.02  # a bar thinner than this share of the side is ignored
MIN_CONTENT = 0.35  # what is left after trimming must keep this share of each side
TRIM_ROUNDS = 3  # passes over rows then columns at most
MAX_BAR = 0.45  # no bar on one side is thicker than this share of the side
LINES_AT_ONCE = 16  # lines classified per numpy call while following a bar inwards


# Corner-blanked variants are hashed from a copy whose shorter side is about this long.
CORNER_SIDE = 256

# The "thumb" variant is hashed from a copy whose shorter side is this long, on both sides: a
# re-post shrunk to a thumbnail has lost the fine texture that the full-size hash of a photo of
# brickwork, foliage or text rests on (PDQ's own 64 x 64 sampling then aliases it differently at
# every scale); brought to one scale with one filter, both copies alias alike.
THUMB_SIDE = 64


def dihedral_hashes(pixels: Image.Image) -> tuple[dict[str, str], int]:
    """The 8 rotation/mirror hashes of these RGB pixels, and their quality: each what the
    reference computes on the rotated picture, from one blur of the luma read along mirrored
    axes, for about half the time of the reference's single hash. (The reference's own
    one-DCT shortcut costs more and drifts, by up to ~40 bits on 256 px photos.) On a nearly
    flat picture, where another order of float sums can flip a bit, the original is the
    reference's own hash."""
    hashes = dihedral_from_rgb(np.asarray(pixels))
    values = {name: value for name, (value, _quality) in hashes.items()}
    quality = hashes["original"][1]
    if quality < DEFAULT_MIN_QUALITY:
        values["original"], quality = pdq_from_pixels(pixels)
    return values, quality


def trimmings(image: Image.Image, reduced: Image.Image | None = None) -> dict[str, Image.Image]:
    """The image without the bars around it, by variant name; empty when there are none.
    `reduced`: a box-averaged copy of `image` already at hand (`reduced_copy`), to find the
    bars on instead of reducing `image` again.

    "trimmed" is the image after one pass over rows and columns that removes uniform, near-
    uniform and coloured bars, caption bars with text and screenshot chrome; "retrimmed", after
    repeating the passes until nothing more comes off, when that removes more. A caption bar
    added above a picture with a margin of its own comes off first and the margin next, so
    only repeated passes bring such an upload to where the bank's copy ends; but they also eat
    further into flat parts of some pictures (the photo in a screenshot frame), where one pass
    agrees. "unfilled" is the picture between two equal smooth bars (`fill_bars`): the blurred
    fill of reels and stories, which the passes cannot tell from a photo's own soft edge."""
    if min(image.size) < 16:
        return {}
    rgb = _analysis_rgb(image if reduced is None else reduced)
    boxes = dict(zip(("trimmed", "retrimmed"), border_boxes(rgb), strict=False))
    fill = fill_bars(rgb)
    if not boxes and fill is None:
        return {}  # most photos: no full-size pass needed
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    exact = {name: _exact_box(luma, box, rgb.shape[:2]) for name, box in boxes.items()}
    if fill is not None:
        box = _exact_fill_box(luma, *fill, rgb.shape[:2])
        if box not in exact.values():
            exact["unfilled"] = box
    return {name: image.crop(box) for name, box in exact.items()}


def _analysis_rgb(image: Image.Image) -> np.ndarray:
    """A copy whose longer side is at most ANALYSIS_SIDE px, as int16 RGB (rows x cols x 3)."""
    small = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(image.size) // ANALYSIS_SIDE
    if factor > 1:
        small = small.reduce(factor)  # cheap whole-factor box average first
    scale = max(small.size) / ANALYSIS_SIDE
    if scale > 1:
        size = (max(8, round(small.width / scale)), max(8, round(small.height / scale)))
        small = small.resize(size, Image.Resampling.BOX)
    return np.asarray(small).astype(np.int16)


def border_boxes(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of the content inside the bars of an `_analysis_rgb` copy,
    in its lines: after one pass over rows then columns, and after repeated passes when those
    remove more. Empty when there are no bars."""
    rows, cols = rgb.shape[:2]
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
        boxes[1:] = [(left, top, right, bottom)]  # the first pass's box, and the latest
    return boxes


def _exact_box(
    luma: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """`box` on an analysis copy of `shape` (rows, cols) moved onto the full-size `luma`:
    each side where a bar came off is put on the biggest step near it (one line off moves
    PDQ 20-60 bits on fine textures)."""
    left, top, right, bottom = box
    rows, cols = shape
    return (
        _exact_line(luma.T, left, cols),
        _exact_line(luma, top, rows),
        _exact_line(luma.T, right, cols),
        _exact_line(luma, bottom, rows),
    )


def _exact_line(luma: np.ndarray, line: int, lines: int) -> int:
    """Full-size line of `luma` for `line` of an analysis copy of `lines` lines."""
    scale = len(luma) / lines
    if line in (0, lines):
        return round(line * scale)
    return _biggest_step(luma, round(line * scale), int(np.ceil(scale)) + 1)


def _trim_lines(rgb: np.ndarray) -> tuple[int, int]:
    """Rows [start, stop) of `rgb` (rows x cols x 3) that are content, not top/bottom bars."""
    n = rgb.shape[0]
    if n < 8 or rgb.shape[1] < 4:
        return 0, n
    near, far = _bar_length(rgb), _bar_length(rgb[::-1])
    if near and far and np.abs(rgb[0] - rgb[-1]).max(axis=1).mean() > COLOUR_TOLERANCE:
        if _edge_step(rgb, near) >= _edge_step(rgb[::-1], far):
            far = 0
        else:
            near = 0
    return near, n - far


def _edge_step(rgb: np.ndarray, length: int) -> float:
    """Mean grey difference across the edge of a bar of `length` lines (the last of which
    is the blended one)."""
    if length < 2 or length >= len(rgb):
        return 0.0
    return float(np.abs((rgb[length] - rgb[length - 2]).astype(np.float32) @ LUMA).mean())


def _bar_length(rgb: np.ndarray) -> int:
    """How many lines from the top of `rgb` are a bar (plus the line where bar and content blend
    after resampling)."""
    n = rgb.shape[0]
    first = rgb[0]
    colour = np.median(first, axis=0).astype(np.int16)
    first_share = float((np.abs(first - colour).max(axis=1) <= COLOUR_TOLERANCE).mean())
    if first_share < LOOSE_SHARE:
        return 0  # the outermost line is picture: no bar on this side (most photos stop here)
    lines = rgb[: int(n * MAX_BAR) + 1]
    length = _colour_bar(lines, colour)
    return min(length + 1, len(lines)) if length >= max(2, MIN_BORDER * n) else 0


def _colour_bar(lines: np.ndarray, colour: np.ndarray) -> int:
    gap = max(2, round(0.02 * len(lines) / MAX_BAR))
    bar_grey = float(colour @ LUMA)
    length, misses = 0, 0
    for start in range(0, len(lines), LINES_AT_ONCE):  # on a photo this stops early
        kinds = _line_kinds(lines[start : start + LINES_AT_ONCE], colour, bar_grey)
        for i, kind in enumerate(kinds, start):
            if kind == "bar":
                length, misses = i + 1, 0
            elif kind == "loose":
                misses = 0
            elif kind == "miss":
                misses += 1
                if misses >= gap:
                    return length
            # "text", a line of large caption text: neither ends the bar nor counts against it
    return length


def _line_kinds(lines: np.ndarray, colour: np.ndarray, bar_grey: float) -> list[str]:
    """Each line as "bar" (strict), "loose", "text" or "miss" (picture)."""
    near = np.abs(lines - colour).max(axis=2) <= COLOUR_TOLERANCE
    shares = near.mean(axis=1).tolist()
    two_tone = _two_tone_shares(lines @ LUMA, near, bar_grey)
    return [_line_kind(share, tones) for share, tones in zip(shares, two_tone, strict=True)]


def _line_kind(share: float, two_tone: float) -> str:
    if share >= STRICT_SHARE or (share >= LOOSE_SHARE and two_tone >= TWO_TONE_SHARE):
        return "bar"
    if share >= LOOSE_SHARE:
        return "loose"
    return "text" if share >= TEXT_LINE_SHARE else "miss"


def fill_bars(rgb: np.ndarray) -> tuple[str, _FillBars] | None:
    """Blurred fill around a picture on an `_analysis_rgb` copy: ("rows", bars) above and
    below it or ("cols", bars) left and right of it; None when there is none.

    Blurred fill is the picture itself, enlarged and blurred, so where it meets a soft edge of
    the picture there is neither a colour change nor a step. What gives it away is that apps
    centre the picture: both bars are smooth across and equally wide, and at least one of them
    ends on a step or where texture starts."""
    grey = rgb.astype(np.float32) @ LUMA
    rows, cols = _fill_bars(grey), _fill_bars(grey.T)
    if cols is None or (rows is not None and rows.rank >= cols.rank):
        return None if rows is None else ("rows", rows)
    return "cols", cols


def _exact_fill_box(
    luma: np.ndarray, axis: str, bars: _FillBars, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in the full-size `luma` of the picture between `bars`."""
    height, width = luma.shape
    if axis == "rows":
        top, bottom = _exact_edges(luma, bars, shape[0])
        return (0, top, width, bottom)
    left, right = _exact_edges(luma.T, bars, shape[1])
    return (left, 0, right, height)


@dataclass(frozen=True)
class _FillBars:
    """Equal smooth bars at both ends of the lines of an analysis copy."""

    near: int  # bar width at the near end: the picture's first line
    far: int  # bar width at the far end
    near_edge: bool  # whether the near bar clearly ends where the picture starts
    far_edge: bool
    strength: float  # the clearer edge's `_edge_evidence`

    @property
    def rank(self) -> tuple[int, float]:
        return int(self.near_edge) + int(self.far_edge), self.strength


def _fill_bars(grey: np.ndarray) -> _FillBars | None:
    """The strongest pair of equal smooth bars at both ends of the lines of `grey`."""
    n = len(grey)
    if n < 16 or grey.shape[1] < 16:
        return None
    across = np.abs(np.diff(grey, axis=1)).mean(axis=1)
    along = np.abs(np.diff(grey, axis=0)).mean(axis=1)  # along[i]: step from line i to i+1
    smooth = across <= SMOOTH_ACROSS
    if smooth.all():
        return None  # a flat picture: nothing tells bar from picture
    near_run, far_run = int(np.argmin(smooth)), int(np.argmin(smooth[::-1]))
    if min(near_run, far_run) < 2:
        return None  # texture right at one end or both (most photos)
    shortest = max(3, int(np.ceil(MIN_BORDER * n)))
    near_edges = _edge_evidence(across, along).tolist()
    far_edges = _edge_evidence(across[::-1], along[::-1]).tolist()
    best: _FillBars | None = None
    # The bar's last line may blend with the picture after resampling, so it need not be smooth.
    for near in range(shortest, min(int(MAX_BAR * n), near_run + 1) + 1):
        for far in (near - 1, near, near + 1):  # the centring may round either way
            if far < shortest or far > far_run + 1:
                continue
            near_edge, far_edge = near_edges[near], far_edges[far]
            found = _FillBars(near, far, near_edge >= 1, far_edge >= 1, max(near_edge, far_edge))
            if found.strength >= 1 and (best is None or found.rank > best.rank):
                best = found
    return best


def _edge_evidence(across: np.ndarray, along: np.ndarray) -> np.ndarray:
    """For each bar width w (index; from 3 up to the number of lines less 3), how clearly a
    smooth bar of w lines ends there (1 or more: clearly): by a step from one line to the next
    well above the bar's own, or by texture starting."""
    n = len(across)
    width = np.arange(3, n - 2)
    step = np.maximum(along[width - 2], along[width - 1])  # into and out of the blended line
    along_sums = np.concatenate([[0.0], np.cumsum(along)])
    across_sums = np.concatenate([[0.0], np.cumsum(across)])
    inner = along_sums[width - 2] / (width - 2)
    by_step = step / np.maximum(EDGE_STEP, EDGE_RATIO * inner)
    texture = (across_sums[width + 3] - across_sums[width]) / 3
    bar = across_sums[width - 1] / (width - 1)
    by_texture = texture / np.maximum(FILL_TEXTURE, TEXTURE_RATIO * bar)
    evidence = np.zeros(n)
    evidence[width] = np.maximum(by_step, by_texture)
    return evidence


def _exact_edges(luma: np.ndarray, bars: _FillBars, lines: int) -> tuple[int, int]:
    """[start, stop) of the picture's lines in the full-size `luma`, from bars found on an
    analysis copy of `lines` lines: each clear edge moved to the biggest step near it, and an
    unclear one placed as far from its end as the clear one is from the other."""
    n = len(luma)
    scale = n / lines
    reach = int(np.ceil(scale)) + 1
    start, stop = round(bars.near * scale), round((lines - bars.far) * scale)
    if bars.near_edge:
        start = _biggest_step(luma, start, reach)
    if bars.far_edge:
        stop = _biggest_step(luma, stop, reach)
    if not bars.near_edge:
        start = n - stop
    if not bars.far_edge:
        stop = n - start
    return start, stop


def _biggest_step(luma: np.ndarray, line: int, reach: int) -> int:
    """The line within `reach` of `line` that differs most from the line before it."""
    low, high = max(1, line - reach), min(len(luma) - 1, line + reach)
    steps = np.abs(np.diff(luma[low - 1 : high + 1], axis=0)).mean(axis=1)
    return low + int(np.argmax(steps))


def _two_tone_shares(grey: np.ndarray, near: np.ndarray, bar_grey: float) -> list[float]:
    """Share of each line in the bar colour or in one contrasting tone (text on a bar)."""
    lines, width = near.shape
    text = ~near & (np.abs(grey - bar_grey) >= TEXT_CONTRAST)
    tone = np.clip(grey, 0, 255).astype(np.int64) // 32  # 8 tones
    counts = np.bincount((np.arange(lines)[:, None] * 9 + tone)[text], minlength=lines * 9).reshape(
        lines, 9
    )
    best = (counts[:, :8] + counts[:, 1:]).max(axis=1)  # a tone and its anti-aliased edge
    return ((near.sum(axis=1) + best) / width).tolist()


def query_variants(
    image: Image.Image,
    *,
    dihedral: bool = True,
    trim: bool = True,
    corners: bool = True,
    min_quality: int = DEFAULT_MIN_QUALITY,
) -> dict[str, tuple[str, int]]:
    """Hashes to search for an upload: name -> (pdq hex, quality).

    "original" (always, the primary hash), the `trimmings` ("trimmed", "retrimmed",
    "unfilled") when bars or blurred fill were found, with `dihedral` the 7 rotations/mirrors of
    each ("rot90", ..., "trimmed_rot90", ...), with `corners` the image with each corner blanked
    ("corner_tl", ...), and "thumb".
    """
    pixels = hashing_pixels(image)
    variants: dict[str, tuple[str, int]] = {}
    if dihedral:
        hashes, quality = dihedral_hashes(pixels)
        variants.update({name: (value, quality) for name, value in hashes.items()})
    else:
        variants["original"] = pdq_from_pixels(pixels)
    small = reduced_copy(pixels)
    for prefix, trimmed in (trimmings(pixels, small) if trim else {}).items():
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
    variants.update(_small_copy_variants(small, corners=corners, min_quality=min_quality))
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

    "original" (always), the `trimmings` when bars or blurred fill were found, "crop90", ...
    for centred crops keeping that share of width and height, with `corners` the image with
    each corner blanked ("corner_tl", ...), and "thumb".
    """
    pixels = hashing_pixels(image)
    variants = {"original": pdq_from_pixels(pixels)}
    small = reduced_copy(pixels)
    for prefix, trimmed in (trimmings(pixels, small) if trim else {}).items():
        value, quality = pdq_from_pixels(trimmed)
        if quality >= min_quality:
            variants[prefix] = (value, quality)
    for keep in crops:
        value, quality = pdq_from_pixels(centred_crop(pixels, keep))
        if quality >= min_quality:
            variants[f"crop{round(keep * 100)}"] = (value, quality)
    variants.update(_small_copy_variants(small, corners=corners, min_quality=min_quality))
    return variants


def reduced_copy(pixels: Image.Image) -> Image.Image:
    """`pixels` box-averaged by the largest whole factor that keeps the shorter side at least
    CORNER_SIDE px: what the corner and thumbnail hashes start from, and what the bars are
    looked for on (one reduction of the full-size pixels instead of two)."""
    return pixels.reduce(max(1, min(pixels.size) // CORNER_SIDE))


def _small_copy_variants(
    small: Image.Image, *, corners: bool, min_quality: int
) -> dict[str, tuple[str, int]]:
    """The thumbnail hash, and with `corners` the blanked-corner hashes, from the
    `reduced_copy`. These hashes are compared only with their kind, so they need not be the
    reference's: the corners use Pillow's integer luma, a third as costly."""
    smaller = small.reduce(max(1, min(small.size) // (2 * THUMB_SIDE)))
    scale = THUMB_SIDE / min(smaller.size)
    size = (max(1, round(smaller.width * scale)), max(1, round(smaller.height * scale)))
    variants = {"thumb": pdq_from_pixels(smaller.resize(size, Image.Resampling.BILINEAR))}
    if corners:
        variants.update(corner_masked_from_luma(np.asarray(small.convert("L"))))
    return {name: pair for name, pair in variants.items() if pair[1] >= min_quality}


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


def variant_parts(name: str) -> tuple[str, str]:
    """(the copy hashed, the rotation/mirror applied to it) of a variant name: "trimmed_rot90"
    -> ("trimmed", "rot90"), "rot90" -> ("original", "rot90"), "crop90" -> ("crop90",
    "original")."""
    if name in DIHEDRAL:
        return "original", name
    copy, _, turn = name.partition("_")
    if copy in TRIMMINGS and turn in DIHEDRAL:
        return copy, turn
    return name, "original"


def _prefixed(prefix: str, name: str) -> str:
    return prefix if name == "original" else f"{prefix}_{name}"
