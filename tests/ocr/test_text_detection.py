"""The caption detector's removal of long straight edges (a caption band's, a horizon)."""

from __future__ import annotations

import numpy as np

from prescreen.signals import ocr
from prescreen.signals.opencv import opencv


def _opencv_drop_long_runs(strokes: np.ndarray, across: int, down: int) -> np.ndarray:
    """The definition the detector's kernel must reproduce: subtract what OpenCV's opening
    with a horizontal line keeps, then the same with a vertical line."""
    cv2 = opencv()
    for kernel in ((across, 1), (1, down)):
        element = cv2.getStructuringElement(cv2.MORPH_RECT, kernel)
        strokes = cv2.subtract(strokes, cv2.morphologyEx(strokes, cv2.MORPH_OPEN, element))
    return strokes


def test_long_edges_are_dropped_exactly_as_opencvs_openings_drop_them() -> None:
    """Sparse and dense ink, runs touching every border, lines of odd and even lengths (where
    OpenCV's anchor makes the opening lopsided): every pixel as OpenCV leaves it."""
    rng = np.random.default_rng(0)
    for _ in range(400):
        height, width = int(rng.integers(1, 90)), int(rng.integers(1, 130))
        strokes = ((rng.random((height, width)) < rng.uniform(0.01, 0.98)) * 255).astype(np.uint8)
        for _line in range(int(rng.integers(0, 4))):
            row, column = int(rng.integers(0, height)), int(rng.integers(0, width))
            strokes[row, int(rng.integers(0, width)) :] = 255
            strokes[: int(rng.integers(0, height + 1)), column] = 255
        across, down = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        expected = _opencv_drop_long_runs(strokes.copy(), across, down)
        ocr._drop_long_runs(strokes, across, down)
        assert np.array_equal(strokes, expected), (height, width, across, down)


def test_a_caption_band_edge_is_dropped_and_its_letters_kept() -> None:
    strokes = np.zeros((120, 400), np.uint8)
    strokes[30, 10:390] = 255  # the band's top edge: longer than the line
    strokes[40:52, 50:53] = 255  # letters' stems: short runs both ways
    strokes[40:52, 60:63] = 255
    ocr._drop_long_runs(strokes, 33, 15)
    assert not strokes[30].any()
    assert strokes[40:52, 50:53].all() and strokes[40:52, 60:63].all()
