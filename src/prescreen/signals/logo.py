"""Logo and watermark signal: ORB keypoints of a reference logo, found in uploads by local
features with a geometric (RANSAC) check and an appearance check.

Most new propaganda from a known outlet carries its logo or watermark, small and often
semi-transparent, anywhere in the picture or in a corner of a video frame. Hashes of the whole
image cannot see it; local features can: keypoints of the reference logo are matched to
keypoints of the upload, a similarity transform fitted to the matches says where the logo is
and how many matches agree (the inliers), and comparing the reference's small picture with the
pixels found there confirms it (see `prescreen.matching.logo_index`).

The `logo` value of a bank entry is `orb1:` followed by URL-safe base64 of a zlib-compressed
record: the reference's width and height, the keypoints' (x, y) in the reference's frame
(float32), their 32-byte ORB descriptors, and a 64 px greyscale picture of the logo with its
opacity mask. The reference is described at several sizes so a logo at 5% of an image's width
matches as well as one at 30%.

An upload's features (`query_features`) are computed at screening time and never stored.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prescreen.core.errors import InvalidInput
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.opencv import opencv
from prescreen.signals.registry import register

PREFIX = "orb1:"
REFERENCE_SIDE = 320  # the reference's longer side, in its own frame
REFERENCE_SCALES = (1.0, 0.55, 0.3)  # extra sizes the reference is described at
# Per scale: 400 found no more logos on the benchmark and made matching 14% slower.
REFERENCE_FEATURES = 300
REFERENCE_PAD = 24  # edge pixels repeated so keypoints near the edge get descriptors
QUERY_MAX_SIDE = 1280  # an upload is described at most this large
QUERY_FEATURES = 3200  # keypoints kept per upload, spread over a grid
QUERY_GRID = (6, 5)  # cells (columns, rows) that share the keypoints out
DEFAULT_THRESHOLD = 0.5  # confidence a logo match needs unless its bank sets another
FULL_INLIERS = 8  # agreeing keypoints that leave the confidence to the appearance check
MAX_VALUE_CHARS = 200_000
THUMB_SIDE = 64
_HEADER = struct.Struct("<4sHHIHH")  # magic, width, height, keypoints, thumbnail width, height
_MAGIC = b"ORB1"


@dataclass(frozen=True)
class LogoFeatures:
    """Keypoints of an image: (x, y) as float32 rows and 32-byte ORB descriptors."""

    width: int
    height: int
    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray  # (n, 32) uint8
    # A reference's small greyscale picture and its opacity mask (THUMB_SIDE on the longer
    # side), or an upload's full greyscale pixels: what the appearance check compares.
    pixels: np.ndarray | None = None
    mask: np.ndarray | None = None
    # An upload's pixels halved again and again, built as the appearance check needs them.
    halvings: list[np.ndarray] = field(default_factory=list, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.points)

    def halved(self, times: int) -> np.ndarray:
        """The pixels box-averaged down by 2**times (0: the pixels themselves)."""
        assert self.pixels is not None
        cv2 = opencv()
        levels = self.halvings
        while len(levels) < times:
            source = levels[-1] if levels else self.pixels
            height, width = source.shape
            size = (max(1, width // 2), max(1, height // 2))
            levels.append(cv2.resize(source, size, interpolation=cv2.INTER_AREA))
        return levels[times - 1] if times else self.pixels


def _orb(features: int, fast_threshold: int = 12) -> Any:
    cv2 = opencv()
    return cv2.ORB_create(
        nfeatures=features,
        scaleFactor=1.25,
        nlevels=6,
        edgeThreshold=19,
        patchSize=19,
        fastThreshold=fast_threshold,
    )


def _grey_on_mid(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """A PIL image as greyscale with transparent parts on mid grey (a watermark's
    surroundings are unknown; grey is as far from dark as from light), and its opacity."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        backdrop.alpha_composite(rgba)
        return np.asarray(backdrop.convert("L")), np.asarray(rgba.getchannel("A"))
    grey = np.asarray(image.convert("L"))
    return grey, np.full(grey.shape, 255, np.uint8)


def reference_features(image: Any) -> LogoFeatures:
    """Features of a reference logo (a PIL image, transparency allowed), at several sizes."""
    cv2 = opencv()
    grey, alpha = _grey_on_mid(image)
    height, width = grey.shape
    scale = REFERENCE_SIDE / max(width, height)
    frame_w, frame_h = max(1, round(width * scale)), max(1, round(height * scale))
    canonical = cv2.resize(grey, (frame_w, frame_h), interpolation=cv2.INTER_AREA)
    points, descriptors = [], []
    for factor in REFERENCE_SCALES:
        size = (max(8, round(frame_w * factor)), max(8, round(frame_h * factor)))
        scaled = cv2.resize(canonical, size, interpolation=cv2.INTER_AREA)
        padded = cv2.copyMakeBorder(scaled, *(REFERENCE_PAD,) * 4, cv2.BORDER_REPLICATE)
        keypoints, found = _orb(REFERENCE_FEATURES, 8).detectAndCompute(padded, None)
        if found is None:
            continue
        xy = np.array([k.pt for k in keypoints], dtype=np.float32) - REFERENCE_PAD
        points.append(xy * np.float32(frame_w / size[0]))
        descriptors.append(found)
    if not points or sum(len(p) for p in points) < 8:
        raise InvalidInput("the logo has too little detail to be found in other images")
    thumb_scale = THUMB_SIDE / max(width, height)
    thumb_size = (max(4, round(width * thumb_scale)), max(4, round(height * thumb_scale)))
    return LogoFeatures(
        frame_w,
        frame_h,
        np.concatenate(points),
        np.concatenate(descriptors),
        cv2.resize(grey, thumb_size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha, thumb_size, interpolation=cv2.INTER_AREA),
    )


def query_features(grey: np.ndarray, max_features: int = QUERY_FEATURES) -> LogoFeatures:
    """Features of an upload (a greyscale array), downscaled to `QUERY_MAX_SIDE`, with the
    keypoints shared out over a grid so a textured area cannot starve a small logo elsewhere.
    Points are in the given array's pixels."""
    cv2 = opencv()
    height, width = grey.shape
    scale = min(1.0, QUERY_MAX_SIDE / max(width, height))
    work = grey
    if scale < 1.0:
        work = cv2.resize(grey, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
    orb = _orb(max_features * 3)
    keypoints = _spread(orb.detect(work, None), work.shape, max_features)
    keypoints, descriptors = orb.compute(work, keypoints)
    if descriptors is None or not keypoints:
        empty = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
        return LogoFeatures(width, height, *empty, pixels=grey)
    xy = np.array([k.pt for k in keypoints], dtype=np.float32) / np.float32(scale)
    return LogoFeatures(width, height, xy, descriptors, pixels=grey)


def _spread(keypoints: Any, shape: tuple[int, ...], limit: int) -> list[Any]:
    """The strongest keypoints of each grid cell, `limit` in all."""
    if len(keypoints) <= limit:
        return list(keypoints)
    cv2 = opencv()
    columns, rows = QUERY_GRID
    height, width = shape[:2]
    per_cell = max(1, limit // (columns * rows))
    xy = cv2.KeyPoint_convert(keypoints)
    cells = (xy[:, 0] * columns / width).astype(np.int64) * (rows + 1) + (
        xy[:, 1] * rows / height
    ).astype(np.int64)
    response = np.fromiter((k.response for k in keypoints), np.float32, len(keypoints))
    _, first_seen, group = np.unique(cells, return_index=True, return_inverse=True)
    # Cells in the order the detector first reached them, strongest keypoint first in each.
    order = np.lexsort((-response, first_seen[group]))
    ranked = cells[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return [keypoints[i] for i in order[rank < per_cell].tolist()]


def encode_features(features: LogoFeatures) -> str:
    assert features.pixels is not None and features.mask is not None
    thumb_h, thumb_w = features.pixels.shape
    header = _HEADER.pack(_MAGIC, features.width, features.height, len(features), thumb_w, thumb_h)
    body = b"".join(
        (
            features.points.astype("<f4").tobytes(),
            features.descriptors.astype(np.uint8).tobytes(),
            features.pixels.astype(np.uint8).tobytes(),
            features.mask.astype(np.uint8).tobytes(),
        )
    )
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(header + body, 6)).decode()


def decode_features(value: str) -> LogoFeatures:
    """The features in a `logo` value, or InvalidInput."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        raise InvalidInput(f"a logo signal starts with {PREFIX!r}")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"a logo signal is at most {MAX_VALUE_CHARS:,} characters")
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(value[len(PREFIX) :]), bufsize=65536)
        magic, width, height, count, thumb_w, thumb_h = _HEADER.unpack_from(raw)
    except (binascii.Error, zlib.error, struct.error, ValueError) as exc:
        raise InvalidInput("the logo signal is not valid base64 of compressed features") from exc
    thumb = thumb_w * thumb_h
    expected = _HEADER.size + count * (8 + 32) + 2 * thumb
    if magic != _MAGIC or len(raw) != expected or count < 4 or not (width and height and thumb):
        raise InvalidInput("the logo signal's features are malformed")
    offset = _HEADER.size
    points = np.frombuffer(raw, "<f4", count * 2, offset).reshape(count, 2)
    descriptors = np.frombuffer(raw, np.uint8, count * 32, offset + count * 8)
    offset += count * 40
    pixels = np.frombuffer(raw, np.uint8, thumb, offset).reshape(thumb_h, thumb_w)
    mask = np.frombuffer(raw, np.uint8, thumb, offset + thumb).reshape(thumb_h, thumb_w)
    if not np.isfinite(points).all():
        raise InvalidInput("the logo signal's keypoints are malformed")
    return LogoFeatures(
        width, height, points.astype(np.float32), descriptors.reshape(count, 32), pixels, mask
    )


def logo_value(data: bytes, max_pixels: int = 100_000_000) -> str:
    """The `logo` signal of a reference logo file (PNG with transparency is best)."""
    from prescreen.signals.image import decode_image

    return encode_features(reference_features(decode_image(data, max_pixels)))


def confidence(inliers: int, appearance: float) -> float:
    """Agreeing keypoints and the appearance check as one confidence from 0 to 1."""
    return round(min(1.0, inliers / FULL_INLIERS) * max(0.0, appearance), 4)


@register
class LogoSignal(SignalType):
    """A reference logo's keypoints; an upload matches when a transform maps enough of them
    into it. Computed only for the entries of logo banks (see `logo_value`), never stored for
    uploads: screening searches an upload's own features directly."""

    name = "logo"
    kinds: frozenset[ContentKind] = frozenset()
    index_kind = "logo"  # type: ignore[assignment]

    def compute(self, upload: Upload) -> dict[str, Any]:
        return {"logo": logo_value(upload.data or b"", upload.max_image_pixels)}

    def normalize(self, value: str) -> str:
        return encode_features(decode_features(value))

    def threshold(self, bank: Any) -> float:  # type: ignore[override]
        value = getattr(bank, "logo_threshold", None)
        return DEFAULT_THRESHOLD if value is None else float(value)

    def accepts(self, score: Any, bank: Any) -> bool:
        return float(score["confidence"]) >= self.threshold(bank)

    def score_distance(self, score: Any) -> int:
        return round((1 - float(score["confidence"])) * 100)

    def score_detail(self, score: Any) -> dict[str, Any]:
        return {
            "confidence": round(float(score["confidence"]), 3),
            "inliers": int(score["inliers"]),
            "box": score["box"],
        }
