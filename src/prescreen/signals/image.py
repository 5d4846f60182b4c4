"""Image decoding (safe against bombs and truncation) and the PDQ signal type.

PDQ is computed with the `pdqhash` bindings of Meta's reference C++ on RGB pixels from Pillow.

Fast path. python-threatexchange (and so HMA) decodes the whole file and runs PDQ at full
resolution; PDQ then blurs and decimates those pixels down to 64x64 anyway, so almost all of that
work is thrown away. Meta's own command-line tool (`pdq/cpp/io/pdqio.cpp`) resizes any image with a
side over 512 px to 512x512 before hashing. We follow the same idea with less drift:

* JPEGs are decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 inside the DCT, choosing the
  smallest scale that keeps both sides at least `HASH_MIN_SIDE` (512) px;
* other formats are box-averaged by the largest whole factor that keeps both sides >= 512 px;
* PDQ then runs on those pixels exactly as the reference does.

Images whose shorter side is under 1024 px are hashed at full resolution, so their hashes stay
bit-exact with python-threatexchange. For larger ones the drift from the full-resolution
reference hash is measured by `bench/image_hashing.py` (see docs/benchmarks.md): a few bits,
far below the matching threshold of 31. (Meta's tool squashes to exactly 512x512 with
nearest-neighbour sampling; measured against full resolution that drifts more, so we keep the
aspect ratio and use area averaging.)
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np
import pdqhash
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register

try:  # HEIC/HEIF photos (iPhone default) when the optional `pillow-heif` wheel is installed
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_FORMATS = frozenset({"HEIF"})
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_FORMATS = frozenset()

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"}) | HEIF_FORMATS
PDQ_HEX_LENGTH = 64
# Both sides of the pixels PDQ sees are kept at least this large (see the module docstring).
HASH_MIN_SIDE = 512
# Animated images: the first frame is the primary hash; this many more frames are sampled.
MAX_SAMPLED_FRAMES = 4
# Seeking in a GIF decodes every frame before the one sought: never look past this frame.
MAX_FRAME_INDEX = 300

# Our own pixel limit is checked before decoding; Pillow's global one only guards other callers.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int, *, min_side: int | None = None) -> Image.Image:
    """Decode an upload to a fully loaded, EXIF-oriented image, or raise a clear 4xx error.

    With `min_side`, a JPEG is decoded in draft mode at the smallest 1/2, 1/4 or 1/8 scale that
    keeps both sides at least `min_side` px (much faster for large photos). Animated images give
    their first frame (see `decode_frames` for the others). The pixel limit applies to the
    declared size, before anything is decoded.
    """
    image = _open(data, max_pixels)
    if min_side and image.format in ("JPEG", "MPO"):
        image.draft(None, (min_side, min_side))
    return _load(image)


def decode_frames(
    data: bytes,
    max_pixels: int,
    *,
    max_frames: int = MAX_SAMPLED_FRAMES,
    min_side: int | None = None,
) -> list[Image.Image]:
    """Frames sampled evenly from an animated GIF/WebP/PNG/TIFF, first frame excluded (it is what
    `decode_image` returns). Empty for still images."""
    image = _open(data, max_pixels)
    count = min(int(getattr(image, "n_frames", 1) or 1), MAX_FRAME_INDEX)
    if count <= 1 or max_frames <= 0:
        return []
    step = (count - 1) / max_frames
    indexes = sorted({min(count - 1, round(step * (k + 1))) for k in range(max_frames)} - {0})
    frames = []
    for index in indexes:
        try:
            image.seek(index)
            frame = image.convert("RGBA") if image.mode == "P" else image.copy()
        except EOFError:
            break
        except MemoryError as exc:
            raise PayloadTooLarge("animation needs more memory than is available") from exc
        except Exception as exc:  # a truncated animation: keep the frames we have
            if not frames:
                raise InvalidInput(f"animated image is truncated or corrupt: {exc}") from exc
            break
        frame = _load(frame)
        frames.append(_reduce(to_rgb(frame), min_side) if min_side else frame)
    return frames


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidInput("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia("the file is not an image in a supported format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from exc
    except Exception as exc:  # hostile headers raise all sorts of errors
        raise InvalidInput(f"image data is truncated or corrupt: {exc}") from exc
    if image.format not in IMAGE_FORMATS:
        raise UnsupportedMedia(
            f"image format {image.format} is not supported", supported=sorted(IMAGE_FORMATS)
        )
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; refused before decoding (possible decompression bomb)",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )
    if width == 0 or height == 0:
        raise InvalidInput("image has zero width or height")
    # The upload is in memory already: hand the decoder all of it at once. Fed in Pillow's
    # 64 KB blocks, libjpeg stops and resumes at each block's end; a 2 MP JPEG decoded 5 %
    # slower that way.
    image.decodermaxblock = max(len(data), ImageFile.MAXBLOCK)
    return image


def _load(image: Image.Image) -> Image.Image:
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # not a copy of every upright image
        return image
    except MemoryError as exc:
        raise PayloadTooLarge("image needs more memory to decode than is available") from exc
    except Exception as exc:  # decoders fail in many ways on hostile data
        raise InvalidInput(f"image data is truncated or corrupt: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels as the reference sees them; modes Pillow cannot convert directly get a detour."""
    if image.mode == "RGB":
        return image
    if image.mode == "LAB":
        srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
        return ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB")
    if image.mode == "HSV":
        return _hsv_to_rgb(image)
    if image.mode in ("F", "I") or image.mode.startswith("I;"):
        try:
            return image.convert("RGB")
        except ValueError:
            return _scale_to_l(image).convert("RGB")
    return image.convert("RGB")


def _hsv_to_rgb(image: Image.Image) -> Image.Image:
    hsv = np.asarray(image, dtype=np.float64) / 255.0
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(hsv.shape, dtype=np.float64)
    for k, (r, g, b) in enumerate(choices):
        mask = i == k
        rgb[mask] = np.stack([r[mask], g[mask], b[mask]], axis=-1)
    return Image.fromarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def _scale_to_l(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def hashing_pixels(image: Image.Image, min_side: int = HASH_MIN_SIDE) -> Image.Image:
    """The RGB pixels PDQ runs on: box-averaged by the largest whole factor that keeps both
    sides at least `min_side` px (unchanged when the shorter side is under 2 x `min_side`)."""
    return _reduce(to_rgb(image), min_side)


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    factor = min(image.size) // min_side if min_side else 1
    return image.reduce(factor) if factor > 1 else image


def pdq_from_pixels(rgb: Image.Image) -> tuple[str, int]:
    """PDQ of exactly these RGB pixels (no resizing): what the reference computes on them."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb)))
    return bits_to_hex(bits), int(quality)


def bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_hash(image: Image.Image, *, full_resolution: bool = False) -> tuple[str, int]:
    """(64 hex digits, quality 0-100) for a decoded image, on the fast path's pixels.

    `full_resolution=True` hashes every pixel, as python-threatexchange does (slower, same
    result for images whose shorter side is under 1024 px)."""
    rgb = to_rgb(image) if full_resolution else hashing_pixels(image)
    return pdq_from_pixels(rgb)


def pdq_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


_PDQ_HEX = re.compile(f"[0-9a-f]{{{PDQ_HEX_LENGTH}}}")


@register
class PDQSignal(SignalType):
    """Meta's PDQ perceptual hash: 256 bits, compared by Hamming distance."""

    name = "pdq"
    kinds = frozenset({ContentKind.photo})
    index_kind = "hamming"
    default_threshold = 31

    def compute(self, upload: Upload) -> dict[str, Any]:
        """`pdq` is the hash of the upright, untrimmed image (what every other PDQ tool
        computes). `pdq_variants` adds, by name, the hashes that defeat common evasions: for
        an upload the 7 rotations/mirrors, the image without its bars or blurred fill, with
        each corner blanked, and shrunk to a thumbnail (and sampled frames of an animation);
        for a bank item, the same but centred crops instead of rotations."""
        from prescreen.signals.image_variants import bank_variants, query_variants

        if upload._image is not None or not upload.data:
            image = upload.image()
        else:
            image = decode_image(upload.data, upload.max_image_pixels, min_side=HASH_MIN_SIDE)
        upload.preview = image
        variants = (bank_variants if upload.for_bank else query_variants)(image)
        value, quality = variants.pop("original")
        if not upload.for_bank and upload.data and _maybe_animated(upload.data):
            frames = decode_frames(upload.data, upload.max_image_pixels, min_side=HASH_MIN_SIDE)
            for number, frame in enumerate(frames, start=2):  # frame 1 is the primary hash
                variants[f"frame{number}"] = pdq_from_pixels(frame)
        signals: dict[str, Any] = {"pdq": value, "pdq_quality": quality}
        if variants:
            signals["pdq_variants"] = {name: list(pair) for name, pair in variants.items()}
        return signals

    def normalize(self, value: str) -> str:
        if not isinstance(value, str):
            raise InvalidInput("a pdq hash must be a string of 64 hex digits")
        value = value.strip().lower()
        if not _PDQ_HEX.fullmatch(value):
            raise InvalidInput(
                "a pdq hash must be exactly 64 hex digits", signal_type="pdq", value=value[:80]
            )
        return value

    def distance(self, a: str, b: str) -> int:
        return pdq_distance(a, b)


def _maybe_animated(data: bytes) -> bool:
    """Cheap test on the header: only GIF, WebP, PNG (APNG) and TIFF can hold several frames."""
    return (
        data.startswith((b"GIF8", b"II*\x00", b"MM\x00*"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP" and b"ANIM" in data[:64])
        or (data.startswith(b"\x89PNG") and b"acTL" in data[:4096])
    )
