"""Generated media for the OCR and logo tests and benchmark: drawn logos (no real branding),
varied photos, captions in English and Arabic rendered with Debian's DejaVu fonts."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tests.media import photo as synthetic_scene

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
SIZE_2MP = (1632, 1224)
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "camera",
    "hubble_deep_field",
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text.split()))


ENGLISH_WORDS = _words(
    "the army of the faithful will rise again and march on every city of the enemy "
    "join our brothers now victory is near glory awaits those who answer the call "
    "news from the front today fighters captured the bridge after heavy battle near "
    "river market weather report people gather morning evening children school water "
    "bread"
)
ARABIC_WORDS = _words(
    "النصر قادم بإذن الله يا أيها الإخوة انضموا إلى صفوف المجاهدين في كل مكان "
    "الدولة باقية وتتمدد أخبار الجبهة اليوم سيطر المقاتلون على الجسر بعد معركة "
    "السوق الطقس الناس الصباح المساء الأطفال المدرسة الماء الخبز الكتاب البيت"
)


def font_available() -> bool:
    return FONT_REGULAR.is_file() and FONT_BOLD.is_file()


@cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def draw_logo(seed: int, width: int = 320) -> Image.Image:
    """An emblem drawn from shapes and letters, different for every seed (RGBA, transparent
    around the shape)."""
    rng = np.random.default_rng(10_000 + seed)
    height = int(width * rng.uniform(0.6, 1.0))
    logo = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    base = (*tuple(int(c) for c in rng.integers(0, 120, 3)), 255)
    accent = (*tuple(int(c) for c in rng.integers(150, 256, 3)), 255)
    box = (2, 2, width - 3, height - 3)
    shape = seed % 3
    if shape == 0:
        draw.rounded_rectangle(box, radius=height // 6, fill=base)
    elif shape == 1:
        draw.ellipse(box, fill=base)
    else:
        cx, cy = width / 2, height / 2
        points = [
            (cx + (width / 2 - 3) * math.cos(a), cy + (height / 2 - 3) * math.sin(a))
            for a in np.linspace(0, 2 * math.pi, 7)[:-1] + math.pi / 6
        ]
        draw.polygon(points, fill=base)
    _star(draw, width * rng.uniform(0.25, 0.35), height * 0.35, height * 0.2, accent, rng)
    for _ in range(3):
        x0 = rng.uniform(0.45, 0.75) * width
        y0 = rng.uniform(0.15, 0.5) * height
        draw.rectangle((x0, y0, x0 + width * 0.15, y0 + height * 0.06), fill=accent)
    letters = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(2, 5))))
    font = _font(FONT_BOLD, int(height * 0.28))
    draw.text((width / 2, height * 0.78), letters, font=font, fill=accent, anchor="mm")
    return logo


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill, rng) -> None:
    spikes = int(rng.integers(5, 8))
    points = []
    for i in range(spikes * 2):
        radius = r if i % 2 == 0 else r * 0.45
        angle = math.pi * i / spikes - math.pi / 2
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=fill)


@cache
def _skimage_photo(name: str) -> Image.Image:
    import skimage.data

    pixels = (
        skimage.data.stereo_motorcycle()[0]
        if name == "motorcycle"
        else getattr(skimage.data, name)()
    )
    return Image.fromarray(np.asarray(pixels)).convert("RGB")


def base_photo(seed: int, size: tuple[int, int] = SIZE_2MP) -> Image.Image:
    """A varied photo at `size`: a random crop of one of scikit-image's photographs (mirrored
    and recoloured at random), or a synthetic scene."""
    rng = np.random.default_rng(20_000 + seed)
    choice = seed % (len(SKIMAGE_PHOTOS) + 1)
    if choice == len(SKIMAGE_PHOTOS):
        return synthetic_scene(seed, size)
    source = _skimage_photo(SKIMAGE_PHOTOS[choice])
    crop = rng.uniform(0.6, 1.0)
    w, h = int(source.width * crop), int(source.height * crop)
    x, y = int(rng.integers(0, source.width - w + 1)), int(rng.integers(0, source.height - h + 1))
    image = source.crop((x, y, x + w, y + h)).resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = rng.uniform(0.8, 1.2, 3)
    pixels = np.clip(np.asarray(image, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@dataclass(frozen=True)
class Placement:
    """Where a logo was put: box as fractions of the image (x, y, width, height)."""

    box: tuple[float, float, float, float]
    width_frac: float
    opacity: float


def place_logo(
    image: Image.Image,
    logo: Image.Image,
    width_frac: float,
    opacity: float,
    rng: np.random.Generator,
    corner: bool = False,
) -> tuple[Image.Image, Placement]:
    """The image with the logo pasted at `width_frac` of its width and `opacity`, anywhere (or
    in a random corner, as channels watermark video)."""
    width = max(8, int(image.width * width_frac))
    height = max(4, int(logo.height * width / logo.width))
    scaled = logo.resize((width, height), Image.Resampling.LANCZOS)
    alpha = np.asarray(scaled.getchannel("A"), dtype=np.float32) * opacity
    scaled.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    if corner:
        margin = int(image.width * 0.02)
        x = margin if rng.random() < 0.5 else image.width - width - margin
        y = margin if rng.random() < 0.5 else image.height - height - margin
    else:
        x = int(rng.integers(0, image.width - width + 1))
        y = int(rng.integers(0, image.height - height + 1))
    out = image.convert("RGBA")
    out.alpha_composite(scaled, (x, y))
    box = (x / image.width, y / image.height, width / image.width, height / image.height)
    return out.convert("RGB"), Placement(box, width_frac, opacity)


def caption_words(rng: np.random.Generator, language: str, count: int = 5) -> list[str]:
    words = ENGLISH_WORDS if language == "eng" else ARABIC_WORDS
    return [str(w) for w in rng.choice(words, size=count, replace=False)]


def add_caption(
    image: Image.Image,
    words: list[str],
    language: str,
    height_frac: float,
    rng: np.random.Generator,
) -> Image.Image:
    """The image with a caption line whose letters are `height_frac` of the image's height,
    white on a dark band or dark on a light band, at the top, middle or bottom."""
    text = " ".join(words)
    size = max(8, int(image.height * height_frac))
    font = _font(FONT_BOLD if rng.random() < 0.5 else FONT_REGULAR, size)
    direction = "rtl" if language == "ara" else "ltr"
    while font.getlength(text, direction=direction) > image.width * 0.9 and size > 8:
        size = int(size * 0.9)
        font = _font(FONT_REGULAR, size)
    length = font.getlength(text, direction=direction)
    band_height = int(size * 1.8)
    y = int(rng.choice([0.04, 0.45, 0.85]) * (image.height - band_height))
    x = int(rng.uniform(0.02, 0.98) * (image.width - length))
    light_band = rng.random() < 0.3
    band = (235, 235, 235, 200) if light_band else (10, 10, 10, 170)
    ink = (20, 20, 20) if light_band else (255, 255, 255)
    out = image.convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((x - size, y, x + length + size, y + band_height), fill=band)
    out.alpha_composite(overlay)
    draw = ImageDraw.Draw(out)
    draw.text((x, y + band_height / 2), text, font=font, fill=ink, anchor="lm", direction=direction)
    return out.convert("RGB")


def add_stroke(image: Image.Image) -> Image.Image:
    """A copy with one dark, slightly slanted stroke: the shape of a caption line to the text
    detector, but one mark where a line of text has letters."""
    out = image.copy()
    ImageDraw.Draw(out).line((400, 600, 1000, 640), fill=(20, 20, 20), width=20)
    return out


def jpeg_bytes(image: Image.Image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def video_with_logo(
    logo: Image.Image, seconds: float = 2.0, size: tuple[int, int] = (640, 360), fps: int = 10
) -> bytes:
    """An H.264 MP4 of a drifting scene with the logo as a watermark in its top-right corner."""
    import av

    width, height = size
    scene = base_photo(5, (width * 2, height))
    mark_w = int(width * 0.14)
    mark = logo.resize((mark_w, int(logo.height * mark_w / logo.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            offset = int(i * width / (seconds * fps))
            frame = scene.crop((offset, 0, offset + width, height)).convert("RGBA")
            frame.alpha_composite(mark, (width - mark_w - 12, 12))
            picture = av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
