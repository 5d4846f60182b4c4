"""Image decoding (safe against bombs and truncation) and the PDQ signal type.

PDQ is computed with the `pdqhash` bindings of Meta's reference C++ on the RGB pixels Pillow
produces, which is what python-threatexchange (and so HMA) does: hashes are bit-exact with it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pdqhash
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
PDQ_HEX_LENGTH = 64

# Our own pixel limit is checked before decoding; Pillow's global one only guards other callers.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an upload to a fully loaded, EXIF-oriented image, or raise a clear 4xx error."""
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
    try:
        image.load()
        return ImageOps.exif_transpose(image)
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


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    """(64 hex digits, quality 0-100) for a decoded image."""
    pixels = np.ascontiguousarray(np.asarray(to_rgb(image)))
    bits, quality = pdqhash.compute(pixels)
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def pdq_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@register
class PDQSignal(SignalType):
    """Meta's PDQ perceptual hash: 256 bits, compared by Hamming distance."""

    name = "pdq"
    kinds = frozenset({ContentKind.photo})
    index_kind = "hamming"
    default_threshold = 31

    def compute(self, upload: Upload) -> dict[str, Any]:
        value, quality = pdq_hash(upload.image())
        return {"pdq": value, "pdq_quality": quality}

    def normalize(self, value: str) -> str:
        if not isinstance(value, str):
            raise InvalidInput("a pdq hash must be a string of 64 hex digits")
        value = value.strip().lower()
        if len(value) != PDQ_HEX_LENGTH or any(c not in "0123456789abcdef" for c in value):
            raise InvalidInput(
                "a pdq hash must be exactly 64 hex digits", signal_type="pdq", value=value[:80]
            )
        return value

    def distance(self, a: str, b: str) -> int:
        return pdq_distance(a, b)
