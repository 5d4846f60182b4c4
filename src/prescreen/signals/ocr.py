"""Text inside images: find caption-like regions cheaply with OpenCV, read them with Tesseract.

Reading a whole 2 MP photo with Tesseract's page layout analysis takes seconds and misses a
third of caption words (bench/ocr_logo.py); a caption is a few lines. So a morphological
detector (gradient, strong edges, horizontal closing, words joined into lines) picks up to
`MAX_REGIONS` line-shaped regions of plausible caption height; each is cut from the full image
with a plain margin, turned dark-on-light, scaled to `LINE_HEIGHT` px and read as a single line
(page segmentation mode 7) by the LSTM engine with English and Arabic models.

Tesseract is reached through its C API (libtesseract from Debian's `tesseract-ocr` package), so
models are loaded once into a small pool of handles instead of once per call (a `tesseract`
process spends ~100 ms loading them); where the library cannot be loaded, `pytesseract` runs
the command-line program instead. Where neither is installed, OCR is skipped (the screening
step logs it once).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from numba import njit

from prescreen.signals.opencv import opencv

log = logging.getLogger(__name__)

DEFAULT_LANGUAGES = "eng+ara"
DETECT_WIDTH = 960  # the detector works on the image scaled to this width
MIN_LINE_FRACTION = 0.02  # regions shorter than this share of the image height are ignored
MAX_LINE_FRACTION = 0.2
MAX_REGIONS = 3
STROKE_CONTRAST = 60  # gradient (0-255) a letter's edge reaches; photo texture mostly does not
LINE_HEIGHT = 36  # a region is scaled to this height (the LSTM models' own input height)
RETRY_HEIGHT = 44  # an unsure line is read again at this height; Tesseract is sensitive to it
RETRY_BELOW = 85  # a line with letters read with a confidence from RETRY_FLOOR to this
RETRY_FLOOR = 45  # is read again (texture read as letters scores lower: not worth a retry)
MIN_CONFIDENCE = 60  # Tesseract's mean word confidence (0-100) a line needs to count
MIN_LETTERS = 3  # and this many letters: photo texture reads as stray marks and digits
SURE_CONFIDENCE = 75  # a line of one or two words needs this confidence (texture reads short)
# Tesseract's models for languages written in Arabic script, and how much more ink than the
# average row a line's densest row holds when its script hangs on a baseline.
BASELINE_SCRIPTS = frozenset({"ara", "fas", "urd", "pus", "snd", "uig", "ckb"})
BASELINE_PEAK = 2.7
SHORT_LINE = 4.5  # a line narrower than this many times its height holds a word or two
PSM_SINGLE_LINE = 7
OEM_LSTM_ONLY = 1


@dataclass
class OcrLine:
    text: str
    confidence: int
    box: tuple[float, float, float, float]  # x, y, width, height as fractions of the image


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    regions: int = 0  # candidate regions read

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class OcrUnavailable(RuntimeError):
    """Tesseract (library or program) or a language's data is missing."""


# ------------------------------------------------------------------------------- detection


def text_regions(
    grey: np.ndarray, max_regions: int = MAX_REGIONS
) -> list[tuple[int, int, int, int]]:
    """Up to `max_regions` boxes (x, y, w, h in `grey`'s pixels) that look like lines of text:
    strong strokes, much wider than tall, of caption height. Best first. A box that merely
    frames another (the band behind a caption) gives way to the line inside it."""
    cv2 = opencv()

    height, width = grey.shape
    scale = min(1.0, DETECT_WIDTH / width)
    small = cv2.resize(grey, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
    small_h, small_w = small.shape
    gradient = cv2.morphologyEx(
        small, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    )
    otsu, _ = cv2.threshold(gradient, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, strokes = cv2.threshold(gradient, max(otsu, STROKE_CONTRAST), 255, cv2.THRESH_BINARY)
    # Long straight edges (a caption band's, a horizon) are not letters: drop them so the band
    # does not swallow the line it frames.
    _drop_long_runs(strokes, max(15, small_w // 12), max(15, small_h // 8))
    closing = cv2.getStructuringElement(cv2.MORPH_RECT, (max(9, small_w // 60), 3))
    joined = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, closing)
    contours, _ = cv2.findContours(joined, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    min_h, max_h = MIN_LINE_FRACTION * small_h, MAX_LINE_FRACTION * small_h
    candidates = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if not (min_h <= h <= max_h) or w < 0.4 * h:
            continue
        density = float(cv2.countNonZero(strokes[y : y + h, x : x + w])) / (w * h)
        if 0.08 <= density <= 0.85:
            candidates.append((x, y, w, h))
    candidates = [c for c in candidates if not any(_frames(c, o) for o in candidates)]
    lines = []
    for x, y, w, h in _join_words(candidates):
        if w >= 2.5 * h:
            density = float(cv2.countNonZero(strokes[y : y + h, x : x + w])) / (w * h)
            lines.append((w * h * density, (x, y, w, h)))
    lines.sort(key=lambda item: -item[0])
    chosen: list[tuple[int, int, int, int]] = []
    for _, box in lines:
        if not any(_overlap(box, other) > 0.5 for other in chosen):
            chosen.append(box)
        if len(chosen) == max_regions:
            break
    inverse = 1 / scale
    return [
        (int(x * inverse), int(y * inverse), int(w * inverse) + 1, int(h * inverse) + 1)
        for x, y, w, h in chosen
    ]


@njit(cache=True, nogil=True)
def _ink_positions(flat: np.ndarray) -> np.ndarray:
    """Flat indices of the non-zero bytes, in order; 8 blank bytes at a time are skipped."""
    n = flat.shape[0]
    found = np.empty(n, np.int64)
    count = 0
    words = n // 8
    view = flat[: words * 8].view(np.uint64)
    for word in range(words):
        if view[word] != 0:
            for at in range(word * 8, word * 8 + 8):
                if flat[at] != 0:
                    found[count] = at
                    count += 1
    for at in range(words * 8, n):
        if flat[at] != 0:
            found[count] = at
            count += 1
    return found[:count]


@njit(cache=True, nogil=True, inline="always")
def _opened_span(start: int, end: int, size: int, length: int) -> tuple[int, int]:
    """What OpenCV's opening with a `length`-long line keeps of a run of ink from `start` to
    `end` (inclusive) on a line of `size` pixels: its erosion counts the border as ink, its
    dilation as blank, and both anchor the element at `length // 2`. Empty when first > last."""
    before = length // 2
    after = length - 1 - before
    first = 0 if start == 0 else start + before
    last = size - 1 if end == size - 1 else end - after
    if first > last:
        return 1, 0
    return max(first - after, 0), min(last + before, size - 1)


@njit(cache=True, nogil=True)
def _drop_long_runs(strokes: np.ndarray, across: int, down: int) -> None:
    """In place, exactly what `strokes - open(strokes, across x 1 line)` and then the same with
    a 1 x `down` line compute with OpenCV's morphology, in a tenth of its time: the strokes are
    sparse (about 0.5 % of a photo's pixels), and a run of ink shorter than the line is all
    that an opening looks at."""
    height, width = strokes.shape
    flat = strokes.reshape(-1)
    ink = _ink_positions(flat)
    total = ink.shape[0]
    i = 0
    while i < total:  # runs along each row
        j, row = i, ink[i] // width
        while j + 1 < total and ink[j + 1] == ink[j] + 1 and ink[j + 1] // width == row:
            j += 1
        first, last = _opened_span(ink[i] - row * width, ink[j] - row * width, width, across)
        flat[row * width + first : row * width + last + 1] = 0
        i = j + 1
    # What is left, ordered by column and then row (a stable counting sort), for runs down.
    starts = np.zeros(width + 1, np.int64)
    for k in range(total):
        if flat[ink[k]] != 0:
            starts[ink[k] % width + 1] += 1
    for column in range(width):
        starts[column + 1] += starts[column]
    left = starts[width]
    rows = np.empty(left, np.int64)
    columns = np.empty(left, np.int64)
    for k in range(total):
        if flat[ink[k]] != 0:
            column = ink[k] % width
            rows[starts[column]], columns[starts[column]] = ink[k] // width, column
            starts[column] += 1
    i = 0
    while i < left:
        j = i
        while j + 1 < left and columns[j + 1] == columns[i] and rows[j + 1] == rows[j] + 1:
            j += 1
        first, last = _opened_span(rows[i], rows[j], height, down)
        for row in range(first, last + 1):
            flat[row * width + columns[i]] = 0
        i = j + 1


def lettered_regions(
    grey: np.ndarray, max_regions: int = MAX_REGIONS
) -> Iterator[tuple[int, int, int, int]]:
    """Those of `text_regions` that hold at least MIN_LETTERS separate marks. A line that
    counts has that many letters; a region whose ink is one or two marks is a stroke, an edge
    or a shape (the regions found on photo texture are mostly that), not worth decoding the
    full-size image for nor reading."""
    return (box for box in text_regions(grey, max_regions) if _marks(grey, box) >= MIN_LETTERS)


def shows_lettering(grey: np.ndarray) -> bool:
    """Whether `grey` has a region that looks like a line of text with letters in it."""
    return any(True for _ in lettered_regions(grey))


def _marks(grey: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Connected blobs of ink in the box, ink being its minority class after Otsu (the
    letters, whether dark on light or light on dark)."""
    cv2 = opencv()

    x, y, w, h = box
    _, light = cv2.threshold(
        grey[y : y + h, x : x + w], 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU
    )
    ink = light if light.mean() < 128 else cv2.bitwise_not(light)
    count, _ = cv2.connectedComponents(ink, connectivity=8)
    return count - 1  # label 0 is the background


def _join_words(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes on one line (mostly overlapping vertically, heights within x-height and full
    height, a gap under 1.2 heights) joined into one: words into a caption line."""
    merged: list[list[int]] = []
    for x, y, w, h in sorted(boxes):
        for line in merged:
            lx, ly, lw, lh = line
            shared = min(y + h, ly + lh) - max(y, ly)
            gap = x - (lx + lw)
            if (
                shared >= 0.6 * min(h, lh)
                and max(h, lh) <= 2.6 * min(h, lh)
                and gap < 1.2 * max(h, lh)
            ):
                x1, y1 = max(lx + lw, x + w), max(ly + lh, y + h)
                line[0], line[1] = min(lx, x), min(ly, y)
                line[2], line[3] = x1 - line[0], y1 - line[1]
                break
        else:
            merged.append([x, y, w, h])
    return [(x, y, w, h) for x, y, w, h in merged]


def _frames(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    """`outer` strictly contains `inner`, which spans at least half its width."""
    if outer == inner:
        return False
    ox, oy, ow, oh = outer
    ix, iy, iw, ih = inner
    inside = ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh
    return inside and iw >= 0.5 * ow and ih < oh


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    return (x1 - x0) * (y1 - y0) / min(a[2] * a[3], b[2] * b[3])


def prepare_line(
    grey: np.ndarray, box: tuple[int, int, int, int], height: int = LINE_HEIGHT
) -> np.ndarray:
    """The region with a plain margin, dark text on a light ground, `height` px high.

    Tesseract reads a single line at the height of the whole image it is given and is thrown
    by clutter at its edges, so the margin is the ground's own shade rather than whatever
    surrounds the box (the photo, a caption band's edge)."""
    cv2 = opencv()

    x, y, w, h = box
    grow = max(1, h // 10)  # letters' extremities the detector's box may clip
    region = grey[max(0, y - grow) : y + h + grow, max(0, x - grow) : x + w + grow]
    # Letters are the minority class of the box; make them dark on a light ground.
    _, light = cv2.threshold(region, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if light.mean() < 128:
        region, light = 255 - region, 255 - light
    ground = int(np.median(region[light > 0])) if light.any() else 255
    pad = max(2, h // 4)
    framed = cv2.copyMakeBorder(region, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=ground)
    scale = height / framed.shape[0]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    size = (max(1, round(framed.shape[1] * scale)), height)
    return np.ascontiguousarray(cv2.resize(framed, size, interpolation=interpolation))


# ------------------------------------------------------------------------------- engines


_processes = 1  # processes of one server that share this host's cores (`share_cores`)


def share_cores(processes: int) -> None:
    """Called by a server before it forks `processes` workers: each then keeps Tesseract
    handles for its share of the cores, not for all of them (a handle holds its own copy of
    the models, about 20 MB)."""
    global _processes
    _processes = max(1, processes)


def load_readers(languages: str) -> None:
    """Load this process's readers for each of `languages` ("eng+ara": a line is read by one
    model at a time) now rather than on the first image. A server calls it before forking its
    workers: the models' pages are then shared copy-on-write, where each worker would
    otherwise load its own copy. Does nothing where only the program, or no Tesseract, is
    available."""
    found = _find_engine()
    if isinstance(found, _CapiEngine):
        for language in languages.split("+"):
            found.load(language)


class _CapiEngine:
    """Tesseract's C API through ctypes. Initialised handles (a model load each, ~100 ms and
    about 20 MB) are pooled per language set: a thread borrows one for a line and gives it
    back, so a process's request threads share as many handles as it has cores."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.lib = library
        self.lock = threading.Lock()
        self.idle: dict[str, list[int]] = {}
        self.created: dict[str, int] = {}
        self.all_handles: list[int] = []
        self.available = threading.Condition(self.lock)
        lib = library
        lib.TessBaseAPICreate.restype = ctypes.c_void_p
        lib.TessBaseAPIInit2.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int
        ]  # fmt: skip
        lib.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.TessBaseAPISetVariable.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.TessBaseAPISetImage.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int
        ]  # fmt: skip
        lib.TessBaseAPISetSourceResolution.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.TessBaseAPIGetUTF8Text.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIGetUTF8Text.restype = ctypes.c_void_p
        lib.TessBaseAPIMeanTextConf.argtypes = [ctypes.c_void_p]
        lib.TessDeleteText.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIClear.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIEnd.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIDelete.argtypes = [ctypes.c_void_p]
        atexit.register(self.close)

    @property
    def max_handles(self) -> int:
        return max(1, (os.cpu_count() or 1) // _processes)

    def close(self) -> None:
        """Free every handle (Tesseract reports leaked models at exit otherwise)."""
        with self.lock:
            for handle in self.all_handles:
                self.lib.TessBaseAPIEnd(handle)
                self.lib.TessBaseAPIDelete(handle)
            self.all_handles.clear()
            self.idle.clear()

    def load(self, languages: str) -> None:
        """Fill the pool for `languages` (raises OcrUnavailable where its data is missing)."""
        handles: list[int] = []
        try:
            while len(handles) < self.max_handles:
                handles.append(self._borrow(languages))
        finally:
            for handle in handles:
                self._give_back(languages, handle)

    def _borrow(self, languages: str) -> int:
        with self.available:
            while not self.idle.get(languages):
                if self.created.get(languages, 0) < self.max_handles:
                    self.created[languages] = self.created.get(languages, 0) + 1
                    break
                self.available.wait()
            else:
                return self.idle[languages].pop()
        try:
            return self._create(languages)
        except BaseException:
            with self.available:
                self.created[languages] -= 1
                self.available.notify()
            raise

    def _give_back(self, languages: str, handle: int) -> None:
        with self.available:
            self.idle.setdefault(languages, []).append(handle)
            self.available.notify()

    def _create(self, languages: str) -> int:
        handle = self.lib.TessBaseAPICreate()
        if self.lib.TessBaseAPIInit2(handle, None, languages.encode(), OEM_LSTM_ONLY) != 0:
            self.lib.TessBaseAPIDelete(handle)
            raise OcrUnavailable(f"Tesseract has no data for languages {languages!r}")
        self.lib.TessBaseAPISetPageSegMode(handle, PSM_SINGLE_LINE)
        self.lib.TessBaseAPISetVariable(handle, b"tessedit_do_invert", b"0")
        with self.lock:
            self.all_handles.append(handle)
        return handle

    def read_line(self, line: np.ndarray, languages: str, timeout: float) -> tuple[str, int]:
        handle = self._borrow(languages)
        try:
            height, width = line.shape
            self.lib.TessBaseAPISetImage(handle, line.tobytes(), width, height, 1, width)
            self.lib.TessBaseAPISetSourceResolution(handle, 300)
            pointer = self.lib.TessBaseAPIGetUTF8Text(handle)
            try:
                text = ctypes.string_at(pointer).decode("utf-8", "replace") if pointer else ""
            finally:
                if pointer:
                    self.lib.TessDeleteText(pointer)
            confidence = int(self.lib.TessBaseAPIMeanTextConf(handle))
            self.lib.TessBaseAPIClear(handle)
        finally:
            self._give_back(languages, handle)
        return text.strip(), confidence


class _CliEngine:
    """pytesseract and the `tesseract` program: a process per line (slower)."""

    def read_line(self, line: np.ndarray, languages: str, timeout: float) -> tuple[str, int]:
        import pytesseract
        from PIL import Image

        data = pytesseract.image_to_data(
            Image.fromarray(line),
            lang=languages,
            config=f"--oem {OEM_LSTM_ONLY} --psm {PSM_SINGLE_LINE}",
            timeout=max(0.05, timeout),
            output_type=pytesseract.Output.DICT,
        )
        words = [
            (w, float(c)) for w, c in zip(data["text"], data["conf"], strict=False) if w.strip()
        ]
        if not words:
            return "", 0
        return " ".join(w for w, _ in words), round(sum(c for _, c in words) / len(words))


def engine() -> _CapiEngine | _CliEngine:
    """The fastest Tesseract available, or OcrUnavailable (logged once by the caller)."""
    found = _find_engine()
    if isinstance(found, str):
        raise OcrUnavailable(found)  # a new one each time: a kept one would grow its traceback
    return found


@cache
def _find_engine() -> _CapiEngine | _CliEngine | str:
    """Looked for once per process. Where Tesseract is missing, the reason is kept as well, so
    that screening does not search the disk and spawn programs again for every upload."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one core per OCR, as the budget assumes
    if os.environ.get("PRESCREEN_OCR_ENGINE", "auto") != "cli":
        for name in _library_candidates():
            try:
                return _CapiEngine(ctypes.CDLL(name))
            except (OSError, AttributeError):
                continue
        log.info("libtesseract not loadable; reading text with the tesseract program")
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception as exc:  # ImportError, TesseractNotFoundError, OSError
        return f"Tesseract is not installed ({type(exc).__name__})"
    return _CliEngine()


def _library_candidates() -> Iterator[str]:
    """The usual sonames first: `find_library` runs ldconfig (and gcc) to search."""
    yield from ("libtesseract.so.5", "libtesseract.so.4")
    if found := ctypes.util.find_library("tesseract"):
        yield found


def forget_engine() -> None:
    """Look for Tesseract again on next use (after PRESCREEN_OCR_ENGINE changed)."""
    _find_engine.cache_clear()


def availability() -> str | None:
    """None when OCR can run, else why not."""
    try:
        engine()
    except OcrUnavailable as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------- reading


def read_text(
    grey: np.ndarray,
    languages: str = DEFAULT_LANGUAGES,
    deadline: float | None = None,
    max_regions: int = MAX_REGIONS,
) -> OcrResult:
    """The caption-like text of a greyscale image. Lines are read best region first until
    `deadline` (a `time.perf_counter()` value) passes; raises TimeoutError if it passed before
    every region was read."""
    reader = engine()
    height, width = grey.shape
    result = OcrResult()
    for box in lettered_regions(grey, max_regions):
        remaining = (deadline - time.perf_counter()) if deadline is not None else 60.0
        if remaining <= 0:
            raise TimeoutError("OCR ran over its time budget")
        text, confidence = _read_region(reader, grey, box, languages, remaining)
        result.regions += 1
        text = clean_line(text)
        if _plausible_line(text, confidence):
            x, y, w, h = box
            result.lines.append(
                OcrLine(
                    text,
                    confidence,
                    (
                        round(x / width, 4),
                        round(y / height, 4),
                        round(w / width, 4),
                        round(h / height, 4),
                    ),
                )
            )
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeoutError("OCR ran over its time budget")
    return result


def _read_region(
    reader: _CapiEngine | _CliEngine,
    grey: np.ndarray,
    box: tuple[int, int, int, int],
    languages: str,
    timeout: float,
) -> tuple[str, int]:
    """The most confident reading of one region by each language's model alone, likeliest
    script first, stopping at one that counts (a line with room for only a word or two, usually
    photo texture, is read with the likeliest model alone); the best, if unsure but lettered,
    is read again at `RETRY_HEIGHT` with its model.

    One model at a time: Tesseract given several at once runs all of them on every word
    (measured on 300 px lines, eng+ara took 51 ms where eng took 12 and ara 20), and another
    script's model reads a line at a confidence of 10-30, so a reading that counts is already
    in the right script."""
    line = prepare_line(grey, box)
    order = likely_order(line, languages.split("+"))
    if line.shape[1] < SHORT_LINE * line.shape[0]:
        order = order[:1]
    best, best_language = ("", -1), order[0]
    for language in order:
        reading = reader.read_line(line, language, timeout)
        if reading[1] > best[1]:
            best, best_language = reading, language
        if best[1] >= MIN_CONFIDENCE and _lettered(best[0]):
            break
    if _lettered(best[0]) and RETRY_FLOOR <= best[1] < RETRY_BELOW:
        taller = prepare_line(grey, box, RETRY_HEIGHT)
        best = max(best, reader.read_line(taller, best_language, timeout), key=_confidence)
    return best


def _confidence(reading: tuple[str, int]) -> int:
    return reading[1]


def likely_order(line: np.ndarray, languages: list[str]) -> list[str]:
    """The languages with the likeliest script first, so a sure reading usually comes from the
    first model tried. Arabic script hangs on a baseline: one row of a line holds far more ink
    than the average row (measured on rendered captions: 2.6-4.7 times for Arabic, 1.4-3.3 for
    Latin). A wrong guess costs a read, never a word."""
    cv2 = opencv()

    _, ink = cv2.threshold(line, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    rows = ink.sum(axis=1)
    inked = rows[rows > 0]
    baseline = bool(inked.size) and float(rows.max()) >= BASELINE_PEAK * float(inked.mean())
    return sorted(languages, key=lambda language: (language in BASELINE_SCRIPTS) != baseline)


def _lettered(text: str) -> bool:
    return sum(c.isalpha() for c in text) >= MIN_LETTERS


def _plausible_line(text: str, confidence: int) -> bool:
    """Confident enough, with letters; a short line must be surer than a sentence."""
    if confidence < MIN_CONFIDENCE or not _lettered(text):
        return False
    return confidence >= SURE_CONFIDENCE or len(text.split()) >= 3


_MARKS = str.maketrans("", "", "\u200e\u200f\u202a\u202b\u202c\u202d\u202e")


def clean_line(text: str) -> str:
    """One line of Tesseract output without direction marks, runs of spaces, or the stray bars
    and underscores a band's edge reads as."""
    words = text.translate(_MARKS).replace("_", " ").split()
    return " ".join(words).strip(" |-—=~.,:;'\"")
