"""Index of reference logos, searched with an upload's ORB features.

Every query descriptor is matched to its nearest reference descriptors (Hamming distance, a
brute-force scan compiled with numba: a logo bank holds tens to hundreds of logos, about a
thousand descriptors each). A match is kept when it is close, and closer than its rival by
Lowe's ratio (see `_tentative_matches`). Per logo with enough matches, RANSAC fits a similarity
transform from the reference to the upload; then the appearance check compares the reference's
small picture with the upload's pixels where the transform puts it. Inliers and appearance give
the confidence (see `prescreen.signals.logo.confidence`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from numba import njit

from prescreen.matching.pdq_index import _popcount
from prescreen.signals.logo import LogoFeatures, confidence, decode_features
from prescreen.signals.opencv import opencv

MAX_HAMMING = 64  # of 256 bits: a worse descriptor match is noise
RATIO = 0.9  # best must be this much closer than its rival (see _tentative_matches)
# A rival farther than this cannot fail the ratio test of a match within MAX_HAMMING, so
# neighbours beyond it need not be found.
RIVAL_CAP = int(MAX_HAMMING / RATIO)
NEIGHBOURS = 6  # nearest reference descriptors looked at for a rival
SAME_PLACE_PX = 6.0  # in the reference's frame: the same keypoint at another size
MIN_MATCHES = 6  # tentative matches a logo needs before a transform is fitted
MIN_INLIERS = 5
REPROJECTION_PX = 6.0
MIN_BOX_SIDE = 12
RANSAC_ROUNDS = 3  # transforms tried per logo, each on the matches the previous ones left
GOOD_APPEARANCE = 0.5  # an appearance this high needs no further round


class LogoIndex:
    """Reference logos by signal id; `search` takes an upload's `LogoFeatures`."""

    def __init__(self) -> None:
        self._logos: dict[int, LogoFeatures] = {}
        self._lock = threading.Lock()
        self._stacked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        _warm_up()

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        with self._lock:
            for signal_id, value in zip(ids, values, strict=True):
                self._logos[int(signal_id)] = decode_features(value)
            self._stacked = None

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            for signal_id in ids:
                self._logos.pop(int(signal_id), None)
            self._stacked = None

    def __len__(self) -> int:
        return len(self._logos)

    def _stack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All reference descriptors (as `_as_columns` lays them out for the scan), with each
        descriptor's owner and point."""
        with self._lock:
            if self._stacked is None:
                logos = list(self._logos.items())
                self._stacked = (
                    _as_columns(
                        np.concatenate(
                            [f.descriptors for _, f in logos] or [np.zeros((0, 32), np.uint8)]
                        )
                    ),
                    np.concatenate(
                        [np.full(len(f), i, np.int64) for i, f in logos] or [np.zeros(0, np.int64)]
                    ),
                    np.concatenate([f.points for _, f in logos] or [np.zeros((0, 2), np.float32)]),
                )
            return self._stacked

    def search(self, value: Any, radius: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """(signal id, {confidence, inliers, appearance, box}) of every logo found in the
        upload; the box is (x, y, width, height) as fractions of the upload's size."""
        if not isinstance(value, LogoFeatures) or len(value) < MIN_MATCHES or not self._logos:
            return []
        columns, owners, ref_points = self._stack()
        with self._lock:
            logos = dict(self._logos)
        pairs = _tentative_matches(value.descriptors, columns, owners, ref_points)
        found = []
        for owner in np.unique(owners[pairs[:, 1]]) if len(pairs) else ():
            mine = pairs[owners[pairs[:, 1]] == owner]
            if len(mine) < MIN_MATCHES or int(owner) not in logos:
                continue
            score = _verify(
                value,
                logos[int(owner)],
                value.points[mine[:, 0]],
                ref_points[mine[:, 1]],
                mine[:, 0],
            )
            if score is not None:
                found.append((int(owner), score))
        return _one_logo_per_place(found)


def _one_logo_per_place(
    found: list[tuple[int, dict[str, Any]]],
) -> list[tuple[int, dict[str, Any]]]:
    """The most confident logo of those found at (nearly) the same place: look-alike logos
    share shapes, and a place holds one logo."""
    kept: list[tuple[int, dict[str, Any]]] = []
    for owner, score in sorted(found, key=lambda item: -item[1]["confidence"]):
        if all(_iou(score["box"], other["box"]) < 0.3 for _, other in kept):
            kept.append((owner, score))
    return kept


def _iou(a: list[float], b: list[float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@cache
def _warm_up() -> None:
    """Compile (or load from numba's cache) the matching kernel now, not in a first search
    that has a time budget."""
    words = np.zeros((1, 4), np.uint64)
    _nearest(words, np.ascontiguousarray(words.T), 1, RIVAL_CAP)


def _tentative_matches(
    query: np.ndarray, columns: np.ndarray, owners: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """(query row, reference row) pairs passing the distance and ratio tests, for reference
    descriptors laid out by `_as_columns`. The rival of the
    nearest reference descriptor is the nearest one that is not the same keypoint of the same
    logo (described again at another size): another logo's, or another place of this logo's.
    Among the `NEIGHBOURS` nearest, or the farthest of them when none qualifies."""
    count = columns.shape[1]
    if not count or not len(query):
        return np.zeros((0, 2), np.int64)
    k = min(NEIGHBOURS, count)
    nearest, distances = _nearest(_as_words(query), columns, k, RIVAL_CAP)
    best = nearest[:, 0]
    same_logo = owners[nearest] == owners[best][:, None]
    same_place = np.linalg.norm(points[nearest] - points[best][:, None], axis=2) < SAME_PLACE_PX
    rivals = ~(same_logo & same_place)
    rivals[:, 0] = False
    first = np.where(rivals.any(axis=1), rivals.argmax(axis=1), k - 1)
    rival_distance = distances[np.arange(len(query)), first]
    if k == 1:
        rival_distance = np.full(len(query), 257)
    best_distance = distances[:, 0]
    keep = (best_distance <= MAX_HAMMING) & (best_distance <= RATIO * rival_distance)
    return np.stack([np.flatnonzero(keep), best[keep]], axis=1).astype(np.int64)


def _as_words(descriptors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(descriptors, dtype=np.uint8).view(np.uint64).reshape(-1, 4)


def _as_columns(descriptors: np.ndarray) -> np.ndarray:
    """(4, n) words: each word of every descriptor contiguous, so the scan vectorises."""
    return np.ascontiguousarray(_as_words(descriptors).T)


@njit(nogil=True, cache=True)
def _nearest(query, reference, k, cap):  # type: ignore[no-untyped-def]
    """For each query descriptor, the `k` nearest reference descriptors (`reference` as
    `_as_columns` gives it) within Hamming distance `cap`, nearest first; missing neighbours
    have distance 257. A row of distances is computed in one vectorised pass, then scanned.
    """
    n = query.shape[0]
    m = reference.shape[1]
    rows = np.zeros((n, k), np.int64)
    distances = np.full((n, k), 257, np.int64)
    row = np.empty(m, np.int32)
    r0, r1, r2, r3 = reference[0], reference[1], reference[2], reference[3]
    for i in range(n):
        q0, q1, q2, q3 = query[i, 0], query[i, 1], query[i, 2], query[i, 3]
        for j in range(m):
            row[j] = (
                _popcount(r0[j] ^ q0)
                + _popcount(r1[j] ^ q1)
                + _popcount(r2[j] ^ q2)
                + _popcount(r3[j] ^ q3)
            )
        worst = cap + 1
        for j in range(m):
            d = row[j]
            if d < worst:
                slot = k - 1
                while slot > 0 and distances[i, slot - 1] > d:
                    distances[i, slot] = distances[i, slot - 1]
                    rows[i, slot] = rows[i, slot - 1]
                    slot -= 1
                distances[i, slot] = d
                rows[i, slot] = j
                worst = min(distances[i, k - 1], cap + 1)
    return rows, distances


def _verify(
    query: LogoFeatures,
    logo: LogoFeatures,
    query_xy: np.ndarray,
    ref_xy: np.ndarray,
    query_rows: np.ndarray,
) -> dict[str, Any] | None:
    """The best of up to `RANSAC_ROUNDS` transforms: when one fails the appearance check, its
    inliers are set aside and RANSAC runs again on the rest (chance agreements in a busy photo
    can outnumber the logo's own matches)."""
    best: dict[str, Any] | None = None
    keep = np.ones(len(query_xy), dtype=bool)
    for _ in range(RANSAC_ROUNDS):
        if keep.sum() < MIN_MATCHES:
            break
        score, inlier_mask = _fit(query, logo, query_xy[keep], ref_xy[keep], query_rows[keep])
        if score is not None and (best is None or score["confidence"] > best["confidence"]):
            best = score
        if inlier_mask is None or (best is not None and best["appearance"] >= GOOD_APPEARANCE):
            break
        keep[np.flatnonzero(keep)[inlier_mask]] = False
    return best


def _fit(
    query: LogoFeatures,
    logo: LogoFeatures,
    query_xy: np.ndarray,
    ref_xy: np.ndarray,
    query_rows: np.ndarray,
) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """Inliers, appearance and box of the similarity transform (rotation, uniform scale,
    shift) RANSAC finds from the reference to the upload (None when implausible), and which
    matches agreed with it (None when too few did for another round to be worth it).

    A pasted logo or watermark is scaled, not warped: four degrees of freedom need fewer
    agreeing matches than a full homography and leave noise less room to agree by chance."""
    cv2 = opencv()

    transform, mask = cv2.estimateAffinePartial2D(
        ref_xy, query_xy, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX,
        maxIters=2000, confidence=0.995, refineIters=10,
    )  # fmt: skip
    if transform is None or mask is None:
        return None, None
    agreed = mask.ravel().astype(bool)
    inliers = len(np.unique(query_rows[agreed]))
    if inliers < MIN_INLIERS:
        return None, None  # no consensus worth a further round
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if min(logo.width, logo.height) * scale < MIN_BOX_SIDE:
        return None, agreed
    corners = np.float32([[0, 0], [logo.width, 0], [logo.width, logo.height], [0, logo.height]])
    quad = corners @ transform[:, :2].T.astype(np.float32) + transform[:, 2].astype(np.float32)
    x0, y0 = np.clip(quad.min(axis=0), 0, None)
    x1, y1 = np.minimum(quad.max(axis=0), (query.width, query.height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return None, agreed  # (nearly) outside the image
    similarity = appearance(query, logo, transform, scale)
    box = [
        round(float(x0) / query.width, 4),
        round(float(y0) / query.height, 4),
        round(float(x1 - x0) / query.width, 4),
        round(float(y1 - y0) / query.height, 4),
    ]
    score = {
        "confidence": confidence(inliers, similarity),
        "inliers": inliers,
        "appearance": round(similarity, 3),
        "box": box,
    }
    return score, agreed


def appearance(
    query: LogoFeatures, logo: LogoFeatures, transform: np.ndarray, scale: float
) -> float:
    """Normalised cross-correlation of the reference's opaque pixels with the upload's pixels
    where the transform puts them: high for the logo even half transparent over a photo,
    near zero where chance keypoint matches agreed on a transform."""
    cv2 = opencv()

    if query.pixels is None or logo.pixels is None or logo.mask is None:
        return 0.0
    thumb_h, thumb_w = logo.pixels.shape
    to_frame = logo.width / thumb_w
    warp = transform.astype(np.float64).copy()
    warp[:, :2] *= to_frame  # thumbnail pixels -> upload pixels
    step = scale * to_frame  # upload pixels per thumbnail pixel
    pixels = query.pixels
    if step > 1.5:  # shrink the region first so sampling does not alias
        # Start from a copy of the upload halved until 2-4 of its pixels remain per thumbnail
        # pixel: a large region (a chance transform's) then costs no more than a small one.
        times = max(0, int(np.log2(step)) - 1)
        factor = 2**times  # a level pixel's centre is at factor * u + (factor - 1) / 2
        pixels = query.halved(times)
        warp /= factor
        warp[:, 2] -= (factor - 1) / (2 * factor)
        step /= factor
        corners = np.array([[0, 0, 1], [thumb_w, 0, 1], [thumb_w, thumb_h, 1], [0, thumb_h, 1]])
        quad = corners @ warp.T
        x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 2
        region = pixels[y0:y1, x0:x1]
        if region.size == 0:
            return 0.0
        size = (max(1, round(region.shape[1] / step)), max(1, round(region.shape[0] / step)))
        pixels = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        warp[:, 2] -= (x0, y0)
        warp *= (size[0] / region.shape[1] + size[1] / region.shape[0]) / 2
    patch = cv2.warpAffine(
        pixels, warp, (thumb_w, thumb_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    ).astype(np.float32)  # fmt: skip
    opaque = logo.mask > 127
    if opaque.sum() < 16:
        return 0.0
    a = logo.pixels[opaque].astype(np.float32)
    b = patch[opaque]
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else 0.0
