"""Decide what an uploaded file is from its bytes, and refuse files that lie about it."""

from __future__ import annotations

from pathlib import PurePath

from prescreen.core.errors import InvalidInput, UnsupportedMedia
from prescreen.signals.base import ContentKind

IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".flv", ".3gp", ".ts"}
TEXT_EXTENSIONS = {".txt", ".text", ".md", ".csv"}


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _looks_like_video(data: bytes) -> bool:
    return (
        data[4:8] == b"ftyp"
        or data.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
        or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
        or data.startswith(b"FLV")
    )


def declared_kind(filename: str | None, content_type: str | None) -> ContentKind | None:
    """What the caller says the file is, from its MIME type or its extension."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime.startswith("image/"):
        return ContentKind.photo
    if mime.startswith("video/"):
        return ContentKind.video
    if mime.startswith("text/"):
        return ContentKind.text
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return ContentKind.photo
    if suffix in VIDEO_EXTENSIONS:
        return ContentKind.video
    if suffix in TEXT_EXTENSIONS:
        return ContentKind.text
    return None


def sniff_kind(data: bytes) -> ContentKind | None:
    if _looks_like_image(data):
        return ContentKind.photo
    if _looks_like_video(data):
        return ContentKind.video
    if b"\x00" not in data[:8192]:
        try:
            data.decode("utf-8")
            return ContentKind.text
        except UnicodeDecodeError:
            return None
    return None


def detect_kind(
    data: bytes, filename: str | None = None, content_type: str | None = None
) -> ContentKind:
    """The content kind of an upload; a declared kind the bytes contradict is an error."""
    name = filename or "the upload"
    if not data:
        raise InvalidInput(f"{name} is empty (0 bytes)")
    actual = sniff_kind(data)
    declared = declared_kind(filename, content_type)
    if declared is ContentKind.text and actual is None:
        decode_text(data, name)  # names the first invalid byte
    if declared is not None and (
        actual != declared and not (declared is ContentKind.photo and actual is None)
    ):
        seen = actual.value if actual else "unrecognised binary data"
        raise UnsupportedMedia(
            f"{name} is declared as {declared.value} but its bytes are {seen}",
            declared=declared.value,
            detected=seen,
        )
    if actual is None and declared is ContentKind.photo:
        return ContentKind.photo  # let the image decoder name the exact problem
    if actual is None:
        raise UnsupportedMedia(
            f"{name} is neither a supported image nor valid UTF-8 text",
        )
    return actual


def decode_text(data: bytes, name: str = "the text") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
