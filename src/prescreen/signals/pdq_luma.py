"""PDQ computed straight from a luma plane, bit-exact with Meta's reference on the same luma.

PDQ blurs the luma image with two box-filter passes along each axis and keeps 64 x 64 samples
of it. The blur-and-decimate step is linear, so each sample is a weighted sum over the few rows
and columns that reach it; the weights depend only on an axis's length and are precomputed per
length. Reading only those rows and columns makes a hash of a 720p video frame about 1 ms, and
reading them along mirrored axes gives the hashes of an image's rotations and mirrors for the
cost of about one (`dihedral_from_rgb`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

PDQ_HEX_LENGTH = 64
MIN_HASHABLE_DIM = 5  # PDQ's reference gives images smaller than this no hash
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 weights of R, G, B


def luma_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """The luma the reference hashes, from (h, w, 3) RGB: 0.299 R + 0.587 G + 0.114 B in single
    precision, summed in that order (another order would move a few hashes by a bit)."""
    rgb = rgb.astype(np.float32)
    return rgb[:, :, 0] * LUMA[0] + rgb[:, :, 1] * LUMA[1] + rgb[:, :, 2] * LUMA[2]


@functools.lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """PDQ's 16 x 64 DCT-II basis (frequencies 1..16, no DC row)."""
    i = np.arange(1, 17, dtype=np.float64)[:, None]
    j = np.arange(64, dtype=np.float64)[None, :]
    return np.sqrt(2.0 / 64.0) * np.cos(np.pi / 2.0 / 64.0 * i * (2.0 * j + 1.0))


def _box_bounds(n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last input index of PDQ's box filter at each output index (clipped at edges)."""
    half = (window + 2) // 2
    out = np.arange(n)
    return np.clip(out - (window - half), 0, n - 1), np.clip(out + half - 1, 0, n - 1)


@functools.lru_cache(maxsize=32)
def _axis_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For one image axis of length `n`: the input indices (64, K) and weights (64, K) that
    produce PDQ's 64 samples along it after two box-filter passes and decimation."""
    if n == 64:  # the reference skips blurring for 64 x 64 input
        return np.arange(64)[:, None], np.ones((64, 1))
    window = (n + 127) // 128
    lo, hi = _box_bounds(n, window)
    samples = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    rows: list[dict[int, float]] = []
    for s in samples:
        weights: dict[int, float] = {}
        outer = 1.0 / (hi[s] - lo[s] + 1)
        for j in range(lo[s], hi[s] + 1):
            inner = outer / (hi[j] - lo[j] + 1)
            for k in range(lo[j], hi[j] + 1):
                weights[k] = weights.get(k, 0.0) + inner
        rows.append(weights)
    width = max(len(w) for w in rows)
    index = np.zeros((64, width), dtype=np.intp)
    weight = np.zeros((64, width), dtype=np.float64)
    for r, w in enumerate(rows):
        keys = sorted(w)
        index[r, : len(keys)] = keys
        index[r, len(keys) :] = keys[-1]
        weight[r, : len(keys)] = [w[k] for k in keys]
    return index, weight


def pdq_from_luma(
    plane: np.ndarray, scale: float = 1.0, offset: float = 0.0, clip: tuple[int, int] | None = None
) -> tuple[str, int]:
    """PDQ (64 hex digits, quality) of the luma image ``(plane - offset) * scale``.

    `plane` is a 2-D array (any numeric dtype); `clip` clamps its values first (used to map
    limited-range Y to what an RGB conversion would give). The result equals Meta's reference
    PDQ on the same luma: the blur-and-decimate step is linear, so it is done as a weighted sum
    over only the rows and columns that reach the 64 x 64 samples.
    """
    height, width = plane.shape
    if height < MIN_HASHABLE_DIM or width < MIN_HASHABLE_DIM:
        return "0" * PDQ_HEX_LENGTH, 0
    samples = _samples(plane, clip)
    if scale != 1.0 or offset != 0.0:
        samples = (samples - offset) * scale
    return _pdq_from_samples(samples)


# Corner masks: the share of the image's longer side, square in pixels, that a corner mask
# covers (a channel badge or logo stamped in a corner: 10-15% of the width plus a margin), and
# the most of either side it may take.
CORNER_SHARE = 0.2
CORNER_MAX_SIDE_SHARE = 0.4
CORNERS = ("corner_tl", "corner_tr", "corner_bl", "corner_br")


def corner_masked_from_luma(luma: np.ndarray) -> dict[str, tuple[str, int]]:
    """Hashes of the image with each corner blanked: a badge stamped in a corner moves plain PDQ
    by up to ~100 bits, but an upload and a bank item with the same corner blanked agree again.
    The corner is blanked in PDQ's 64 x 64 blurred samples (set to the mean of the rest), so
    the four cost four DCTs; these hashes are prescreen's own, comparable only with each other.
    """
    height, width = luma.shape
    if height < MIN_HASHABLE_DIM or width < MIN_HASHABLE_DIM:
        return {}
    samples = _samples(luma)
    side = CORNER_SHARE * max(height, width)
    rows = min(round(64 * side / height), round(64 * CORNER_MAX_SIDE_SHARE))
    cols = min(round(64 * side / width), round(64 * CORNER_MAX_SIDE_SHARE))
    planes = []
    for name in CORNERS:
        rs = slice(0, rows) if name[-2] == "t" else slice(64 - rows, 64)
        cs = slice(0, cols) if name[-1] == "l" else slice(64 - cols, 64)
        keep = np.ones((64, 64), dtype=bool)
        keep[rs, cs] = False
        masked = samples.copy()
        masked[~keep] = samples[keep].mean()
        planes.append(masked)
    return dict(zip(CORNERS, _pdq_from_sample_stack(np.stack(planes)), strict=True))


def _samples(plane: np.ndarray, clip: tuple[int, int] | None = None) -> np.ndarray:
    """PDQ's 64 x 64 blurred, decimated samples of a luma plane (values clamped to `clip`)."""
    height, width = plane.shape
    row_index, row_weight = _axis_weights(height)
    col_index, col_weight = _axis_weights(width)
    rows = plane[row_index]  # (64, K, width)
    if clip is not None:
        rows = np.clip(rows, clip[0], clip[1])
    blurred = np.einsum("rk,rkw->rw", row_weight, rows.astype(np.float64))
    return np.einsum("rck,ck->rc", blurred[:, col_index], col_weight)


# The 8 rotations/mirrors as (rows reversed, columns reversed, axes swapped) of the original.
DIHEDRAL_AXES = {
    "original": (False, False, False),
    "rot90": (False, True, True),
    "rot180": (True, True, False),
    "rot270": (True, False, True),
    "flip_v": (True, False, False),
    "flip_h": (False, True, False),
    "transpose": (False, False, True),
    "transverse": (True, True, True),
}


def dihedral_from_rgb(rgb: np.ndarray) -> dict[str, tuple[str, int]]:
    """PDQ (hex, quality) of each rotation/mirror of an (h, w, 3) uint8 RGB image, as the
    reference computes on the rotated image itself, for less than the cost of one reference
    hash: PDQ's blur weights depend only on an axis's length, so a reversed axis reads the
    same weights at mirrored indices and swapped axes transpose the 64 x 64 samples. The luma
    and both blurs run in one compiled pass (`_dihedral_samples`), without the GIL."""
    height, width = rgb.shape[:2]
    if height < MIN_HASHABLE_DIM or width < MIN_HASHABLE_DIM:
        return {name: ("0" * PDQ_HEX_LENGTH, 0) for name in DIHEDRAL_AXES}
    samples = _dihedral_samples(
        np.ascontiguousarray(rgb), *_axis_weights(height), *_axis_weights(width)
    )
    planes = []
    for rows_reversed, cols_reversed, swapped in DIHEDRAL_AXES.values():
        plane = samples[int(rows_reversed), int(cols_reversed)]
        planes.append(plane.T if swapped else plane)
    return dict(zip(DIHEDRAL_AXES, _pdq_from_sample_stack(np.stack(planes)), strict=True))


@njit(cache=True, nogil=True)
def _dihedral_samples(
    rgb: np.ndarray,
    row_index: np.ndarray,
    row_weight: np.ndarray,
    col_index: np.ndarray,
    col_weight: np.ndarray,
) -> np.ndarray:
    """PDQ's 64 x 64 samples of the luma read along each direction of each axis:
    [rows reversed, columns reversed]. The luma is `luma_of_rgb`'s, term for term in single
    precision, and the weighted sums are `_samples`' (the tests hold every hash to the
    reference's on the transposed picture)."""
    height, width = rgb.shape[0], rgb.shape[1]
    luma = np.empty((height, width), np.float32)
    red, green, blue = LUMA[0], LUMA[1], LUMA[2]
    # Over the flat bytes: the compiler vectorises this loop, not the one over (i, j, channel)
    # indexes (0.1 against 0.7 ms for 816 x 612 px), with the same float32 terms.
    channels, flat = rgb.reshape(-1), luma.reshape(-1)
    for at in range(height * width):
        flat[at] = (
            np.float32(channels[3 * at]) * red
            + np.float32(channels[3 * at + 1]) * green
            + np.float32(channels[3 * at + 2]) * blue
        )
    rows = np.zeros((2, 64, width), np.float64)  # blurred along the rows, both directions
    for r in range(64):
        for k in range(row_index.shape[1]):
            ahead, back = luma[row_index[r, k]], luma[height - 1 - row_index[r, k]]
            weight = row_weight[r, k]
            for j in range(width):
                rows[0, r, j] += weight * ahead[j]
                rows[1, r, j] += weight * back[j]
    out = np.empty((2, 2, 64, 64), np.float64)
    for reversed_rows in range(2):
        for r in range(64):
            line = rows[reversed_rows, r]
            for c in range(64):
                ahead, back = 0.0, 0.0
                for k in range(col_index.shape[1]):
                    ahead += line[col_index[c, k]] * col_weight[c, k]
                    back += line[width - 1 - col_index[c, k]] * col_weight[c, k]
                out[reversed_rows, 0, r, c] = ahead
                out[reversed_rows, 1, r, c] = back
    return out


def _pdq_from_samples(b64: np.ndarray) -> tuple[str, int]:
    return _pdq_from_sample_stack(b64[np.newaxis])[0]


def _pdq_from_sample_stack(stack: np.ndarray) -> list[tuple[str, int]]:
    """PDQ (hex, quality) of each 64 x 64 sample plane in `stack` (n, 64, 64), in one pass
    of array operations: an upload's 8 rotations and 4 blanked corners cost one call each
    instead of twelve."""
    b32 = stack.astype(np.float32)  # the reference keeps the 64 x 64 buffer in single precision
    down = np.trunc((b32[:, :-1, :] - b32[:, 1:, :]) * np.float32(100) / np.float32(255))
    across = np.trunc((b32[:, :, :-1] - b32[:, :, 1:]) * np.float32(100) / np.float32(255))
    # Whole numbers under 2**24: their single-precision sums are exact in any order.
    gradients = np.abs(down).sum(axis=(1, 2)) + np.abs(across).sum(axis=(1, 2))
    dct = _dct_matrix()
    coefficients = (dct @ b32.astype(np.float64) @ dct.T).reshape(len(stack), 256)
    # The lower median of each, as the reference's torben.
    medians = np.partition(coefficients, 127, axis=1)[:, 127:128]
    bits = np.packbits((coefficients > medians)[:, ::-1], axis=1)
    return [
        (row.tobytes().hex(), min(100, int(gradient) // 90))
        for row, gradient in zip(bits, gradients, strict=True)
    ]
