"""Video hashing compatible with Meta's vPDQ, and the `vpdq` signal type.

vPDQ hashes a video as a list of per-frame PDQ hashes: one frame every `seconds_per_hash`
seconds (one per second by default), each with its PDQ quality (0-100), frame number and
timestamp in seconds. Two videos are compared as unordered bags of frame hashes
(:func:`match_videos`). The text form (:func:`to_vpdq_text`, :func:`parse_vpdq_text`) is the one
Meta's tools read and write: one frame per line, ``frame_number,quality,pdq_hex,timestamp``.

Decoding is done with PyAV (which bundles FFmpeg; no system FFmpeg is needed) on a single thread,
since workers already run one per core. The choices that make it fast, measured against the
reference hashes of Meta's sample clips (see ``bench/video_hashing.py`` and
``docs/benchmarks.md``):

* **Which frames.** Like the reference, frame ``n`` is sampled when ``n`` is a multiple of
  ``int(fps * seconds_per_hash)`` (at least 1), with ``fps`` the stream's average frame rate and
  timestamp ``n / fps``; frame numbers come from presentation timestamps (for constant frame
  rate video, the same as counting frames). The decoder skips frames that no other frame
  refers to (``skip_frame = "NONREF"``, typically most B-frames) unless the frame is due to be
  sampled: on the benchmark clips a quarter to nearly half of all frames are never decoded,
  and the hashed frames are exactly the reference's. (Should a due frame still not come out,
  the next decoded frame is hashed under its own number.) ``skip_nonref=False`` decodes all.
* **No RGB conversion.** The reference converts each sampled frame to RGB24 with libswscale
  (BT.601, no resizing) and hashes the luma ``0.299 R + 0.587 G + 0.114 B``. For 8-bit YUV
  frames that luma *is* the Y plane rescaled (``(Y - 16) * 255 / 219`` for limited range, ``Y``
  for full range): the chroma terms cancel. So PDQ is computed straight from the Y plane.
* **PDQ on a few rows.** PDQ blurs the luma image with two box-filter passes along each axis
  and keeps 64 x 64 samples of it. Only the rows and columns that reach those samples are read,
  with the combined filter weights precomputed per frame size: about 1 ms per 720p frame,
  where converting to RGB and running the reference C++ costs about 22 ms. On the same luma
  this is bit-exact with the reference implementation (``pdqhash``; checked in the tests).
  Frames in other pixel formats (10-bit, RGB, palette...) are converted to RGB24 first.
* **No downscaling.** Letting libswscale shrink frames to ~512 px before PDQ moved hashes by a
  median of 6-12 bits from the reference on the sample clips, so frames are hashed at full size.

Limits (all enforced while decoding, not trusted from the container's header, so a file whose
header lies about its length still stops at the limit) come from :class:`VideoLimits`;
:meth:`VideoLimits.from_env` reads them from the environment:

========================================  =================================  ===================
variable                                  meaning                            default
========================================  =================================  ===================
``PRESCREEN_MAX_VIDEO_BYTES``             size of the file                   500 MiB
``PRESCREEN_MAX_VIDEO_SECONDS``           presentation time of any frame     10800 (3 hours)
``PRESCREEN_MAX_VIDEO_WIDTH``             frame width                        7680
``PRESCREEN_MAX_VIDEO_HEIGHT``            frame height                       4320
``PRESCREEN_MAX_VIDEO_PIXELS``            width x height of a frame          7680 x 4320
``PRESCREEN_MAX_VIDEO_FRAMES``            video packets read (~ frames)      1,000,000
========================================  =================================  ===================

Errors are the service's own: :class:`~prescreen.core.errors.UnsupportedMedia` for files that are
not a video container we read or have no video stream, :class:`~prescreen.core.errors.InvalidInput`
for empty, truncated or corrupt files and videos without a usable frame, and
:class:`~prescreen.core.errors.PayloadTooLarge` for anything over a limit. Only the container
formats in ``VIDEO_FORMATS`` are opened: never playlists (HLS, concat...) that would make FFmpeg
open other files or URLs.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.pdq_luma import MIN_HASHABLE_DIM, luma_of_rgb, pdq_from_luma
from prescreen.signals.registry import register

__all__ = [
    "VideoFrameHash",
    "VideoLimits",
    "VideoSignal",
    "dedupe_frames",
    "hash_video",
    "match_videos",
    "parse_vpdq_text",
    "to_vpdq_text",
]

DEFAULT_MATCH_DISTANCE = 31
DEFAULT_MATCH_QUALITY = 50

# Demuxers we accept. Anything else (playlists such as HLS or concat that open further files or
# URLs, image sequences, raw data) is refused before its header is read.
VIDEO_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "ogg",
    "asf",
    "h264",
    "hevc",
    "m4v",
    "ivf",
    "gif",
)
_FORMAT_WHITELIST = ",".join(VIDEO_FORMATS)

# 8-bit pixel formats whose first plane is luma (Y), and those among them that are full range.
_Y_PLANE_FORMATS = frozenset(
    {
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv440p",
        "yuvj440p",
        "yuv411p",
        "yuvj411p",
        "yuv410p",
        "yuva420p",
        "nv12",
        "nv21",
        "nv16",
        "nv24",
        "gray",
    }
)
_FULL_RANGE_FORMATS = frozenset(
    {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p", "gray"}
)
_LIMITED_RANGE_SCALE = 255.0 / 219.0
# Half-frame hashes (see `hash_video`): a bar's rows or columns vary by less than this (luma
# standard deviation), and a picture inside bars smaller than twice this is not split.
BAR_SPREAD = 2.0
MIN_PART_SIDE = 32
HALVES = ("crop_top", "crop_bottom", "crop_left", "crop_right")  # the picture's halves


# --------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class VideoFrameHash:
    """One hashed frame: frame number (0-based), PDQ quality 0-100, 64 hex digits, seconds."""

    frame: int
    quality: int
    pdq: str
    timestamp: float


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on the work one video may cause; each is checked while decoding."""

    max_bytes: int = 500 * 1024 * 1024
    max_seconds: float = 3 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_frames: int = 1_000_000
    max_pixels: int = 7680 * 4320

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> VideoLimits:
        """Defaults overridden by ``PRESCREEN_MAX_VIDEO_*`` variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field_name, variable, kind in (
            ("max_bytes", "PRESCREEN_MAX_VIDEO_BYTES", int),
            ("max_seconds", "PRESCREEN_MAX_VIDEO_SECONDS", float),
            ("max_width", "PRESCREEN_MAX_VIDEO_WIDTH", int),
            ("max_height", "PRESCREEN_MAX_VIDEO_HEIGHT", int),
            ("max_pixels", "PRESCREEN_MAX_VIDEO_PIXELS", int),
            ("max_frames", "PRESCREEN_MAX_VIDEO_FRAMES", int),
        ):
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = kind(raw.strip())
            except ValueError as exc:
                raise ValueError(f"{variable}={raw!r} is not a valid {kind.__name__}") from exc
            if not value > 0 or (kind is float and not math.isfinite(value)):
                raise ValueError(f"{variable}={raw!r} must be a positive number")
            values[field_name] = value
        return cls(**values)


def _luma_pdq(frame: Any, halves: dict[str, tuple[str, int]] | None = None) -> tuple[str, int]:
    """PDQ of one decoded frame as the reference sees it after converting it to RGB24; with
    `halves` (a dict to fill), also the PDQ of each half of the picture inside its bars."""
    name = frame.format.name
    mapping: dict[str, Any] = {}
    if name in _Y_PLANE_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        luma = y[:, : plane.width]
        if name not in _FULL_RANGE_FORMATS:
            mapping = {"scale": _LIMITED_RANGE_SCALE, "offset": 16.0, "clip": (16, 235)}
    else:
        luma = luma_of_rgb(frame.to_ndarray(format="rgb24"))
    if halves is not None:
        top, bottom, left, right = _content_box(luma)
        # Every other row and column: a quarter of the work, and PDQ's blur makes up for it
        # (halves are compared only with halves hashed the same way, never with the reference).
        step = 2 if min(bottom - top, right - left) >= 4 * MIN_PART_SIDE else 1
        picture = luma[top:bottom:step, left:right:step]
        middle_y, middle_x = picture.shape[0] // 2, picture.shape[1] // 2
        parts = (
            picture[:middle_y],
            picture[middle_y:],
            picture[:, :middle_x],
            picture[:, middle_x:],
        )
        for part, pixels in zip(HALVES, parts, strict=True):
            halves[part] = pdq_from_luma(pixels, **mapping)
    return pdq_from_luma(luma, **mapping)


def _content_box(luma: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside uniform bars (letterbox, pillarbox):
    rows and columns at the edges whose pixels barely vary are bars."""
    step = max(1, min(luma.shape) // 180)  # a sample of the pixels is plenty to see a bar
    sample = np.asarray(luma[::step, ::step], dtype=np.float32)

    def extent(spread: np.ndarray) -> tuple[int, int]:
        content = np.flatnonzero(spread > BAR_SPREAD)
        if content.size == 0:
            return 0, spread.size
        return int(content[0]), int(content[-1]) + 1

    top, bottom = extent(sample.std(axis=1))
    left, right = extent(sample[top:bottom].std(axis=0))
    height, width = luma.shape
    box = (top * step, min(height, bottom * step), left * step, min(width, right * step))
    if box[1] - box[0] < MIN_PART_SIDE * 2 or box[3] - box[2] < MIN_PART_SIDE * 2:
        return 0, height, 0, width
    return box


# --------------------------------------------------------------------------------------------
# Decoding


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    raise InvalidInput("the video stream has no frame rate")


def _open(source: bytes | str | os.PathLike[str], limits: VideoLimits) -> tuple[Any, Any]:
    """(PyAV container, file object to close) after size checks."""
    import av  # imported here so that the rest of the service does not pay for it

    if isinstance(source, bytes | bytearray | memoryview):
        size = len(source)
        fileobj: Any = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            fileobj = path.open("rb")
        except OSError as exc:
            raise InvalidInput(f"cannot read the video file: {exc.strerror or exc}") from exc
    if size == 0:
        fileobj.close()
        raise InvalidInput("the file is empty (0 bytes)")
    if size > limits.max_bytes:
        fileobj.close()
        raise PayloadTooLarge(
            f"video is {size:,} bytes, over the limit of {limits.max_bytes:,}",
            size=size,
            max_bytes=limits.max_bytes,
        )
    head = fileobj.read(512)
    fileobj.seek(0)
    try:
        container = av.open(
            fileobj,
            mode="r",
            options={
                "format_whitelist": _FORMAT_WHITELIST,
                "protocol_whitelist": "file",
                "enable_drefs": "0",
            },
        )
    except MemoryError as exc:
        fileobj.close()
        raise PayloadTooLarge("the video needs more memory to open than is available") from exc
    except Exception as exc:  # FFmpeg fails in many ways on hostile data
        fileobj.close()
        audio = _sniff_audio(head)
        if audio is not None:
            raise UnsupportedMedia(
                f"the file is {audio} audio, not a video: audio-only files cannot be hashed"
            ) from exc
        known = _sniff_container(head)
        if known is not None and not isinstance(exc, av.error.ArgumentError):
            raise InvalidInput(
                f"the {known} file is truncated or corrupt: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        raise UnsupportedMedia(
            "the file is not a video in a supported container", supported=list(VIDEO_FORMATS)
        ) from exc
    return container, fileobj


def _sniff_container(head: bytes) -> str | None:
    """Name of the video container the first bytes announce, if any (for error messages)."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4/QuickTime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "ASF/WMV"
    if head[:4] == b"\x00\x00\x01\xba":
        return "MPEG-PS"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "MPEG-TS"
    return None


def _sniff_audio(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3 (or other MPEG)"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    return None


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"video frames are {width}x{height}, over the limit of "
            f"{limits.max_width}x{limits.max_height} ({limits.max_pixels:,} pixels)",
            width=width,
            height=height,
            max_width=limits.max_width,
            max_height=limits.max_height,
            max_pixels=limits.max_pixels,
        )
    if width < MIN_HASHABLE_DIM or height < MIN_HASHABLE_DIM:
        raise InvalidInput(f"video frames are {width}x{height}, too small to hash")


def hash_video(
    data: bytes | str | os.PathLike[str],
    limits: VideoLimits = VideoLimits(),
    seconds_per_hash: float = 1.0,
    *,
    skip_nonref: bool = True,
    halves: dict[str, list[VideoFrameHash]] | None = None,
) -> list[VideoFrameHash]:
    """vPDQ frame hashes of a video given as bytes or a file path (see the module docstring).

    `seconds_per_hash` 0 hashes every decoded frame. With `halves` (a dict to fill), the same
    frames are also hashed in halves, by name in `HALVES`: the top, bottom, left and right half
    of the picture inside its bars. A large logo or caption pasted over one part of every frame
    moves the whole frame's PDQ past any threshold, but leaves the opposite half as it was.
    Raises InvalidInput, UnsupportedMedia or PayloadTooLarge; never anything else for bad input.
    """
    if not (seconds_per_hash >= 0 and math.isfinite(seconds_per_hash)):
        raise ValueError("seconds_per_hash must be a finite number >= 0")
    container, fileobj = _open(data, limits)
    try:
        return _hash_container(container, limits, seconds_per_hash, skip_nonref, halves)
    finally:
        container.close()
        fileobj.close()


def _hash_container(
    container: Any,
    limits: VideoLimits,
    seconds_per_hash: float,
    skip_nonref: bool,
    halves: dict[str, list[VideoFrameHash]] | None = None,
) -> list[VideoFrameHash]:
    import av

    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise UnsupportedMedia(
            f"the file has no video stream (streams: {', '.join(kinds)}); "
            "audio-only files cannot be hashed as video"
        )
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None or stream.codec_context.codec is None:
        raise UnsupportedMedia("the video stream's codec is not supported")
    if context.width and context.height:  # some containers only know once a frame is decoded
        _check_size(context.width, context.height, limits)
    declared = float(stream.duration * stream.time_base) if stream.duration else None
    if declared is not None and declared > limits.max_seconds:
        raise PayloadTooLarge(
            f"video is {declared:,.6g} s long, over the limit of {limits.max_seconds:,.6g} s",
            seconds=declared,
            max_seconds=limits.max_seconds,
        )
    fps = _frame_rate(stream)
    frame_mod = max(1, int(seconds_per_hash * fps))
    time_base = stream.time_base
    stream.thread_type = "NONE"
    context.thread_count = 1

    hashes: list[VideoFrameHash] = []
    packets = decoded = errors = 0
    origin: int | None = stream.start_time
    last_frame = -1
    next_sample = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                if packets > limits.max_frames:
                    raise PayloadTooLarge(
                        f"video has more than {limits.max_frames:,} frames",
                        max_frames=limits.max_frames,
                    )
                if origin is None and packet.pts is not None:
                    origin = packet.pts
                if skip_nonref:
                    # decode the frame due for sampling even if no other frame refers to it
                    due = (
                        packet.pts is not None
                        and origin is not None
                        and (round((packet.pts - origin) * time_base * fps) % frame_mod == 0)
                    )
                    context.skip_frame = "DEFAULT" if due else "NONREF"
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                # a damaged packet: the decoder drops it and goes on, as the reference does
                errors += 1
                if errors > 100 and errors > decoded:
                    raise
                continue
            for frame in frames:
                decoded += 1
                if frame.width != context.width or frame.height != context.height:
                    _check_size(frame.width, frame.height, limits)
                if frame.pts is None or origin is None:
                    number = last_frame + 1
                else:
                    number = max(round((frame.pts - origin) * time_base * fps), last_frame + 1)
                last_frame = number
                seconds = float(number / fps)
                if seconds > limits.max_seconds:
                    raise PayloadTooLarge(
                        f"video runs past the limit of {limits.max_seconds:,.6g} s "
                        "(whatever its header says)",
                        max_seconds=limits.max_seconds,
                    )
                if number < next_sample:
                    continue
                parts: dict[str, tuple[str, int]] | None = None if halves is None else {}
                value, quality = _luma_pdq(frame, parts)
                hashes.append(VideoFrameHash(number, quality, value, round(seconds, 6)))
                for part, (part_value, part_quality) in (parts or {}).items():
                    frame_hash = VideoFrameHash(number, part_quality, part_value, round(seconds, 6))
                    halves.setdefault(part, []).append(frame_hash)  # type: ignore[union-attr]
                next_sample = (number // frame_mod + 1) * frame_mod
    except (InvalidInput, PayloadTooLarge, UnsupportedMedia):
        raise
    except av.error.FFmpegError as exc:
        if not hashes:
            raise InvalidInput(f"the video is truncated or corrupt: {exc}") from exc
        # a damaged tail: keep what was decoded before it, as the reference does
    except MemoryError as exc:
        raise PayloadTooLarge("the video needs more memory to decode than is available") from exc
    except Exception as exc:  # anything else a hostile stream provokes is still bad input
        raise InvalidInput(f"the video could not be decoded: {exc}") from exc
    if not hashes:
        raise InvalidInput("the video has no decodable frames (empty, truncated or corrupt)")
    return hashes


# --------------------------------------------------------------------------------------------
# Pruning, text form and matching


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def dedupe_frames(frames: Iterable[VideoFrameHash], distance: int = 0) -> list[VideoFrameHash]:
    """vPDQ's optional pruning: drop each frame within `distance` bits of the last *kept* frame.

    Frames are taken in the order given (frame order); the first is always kept. With
    `distance` 0 only runs of identical consecutive hashes collapse to their first frame (a still
    scene), which never changes a match result; a larger `distance` shrinks hashes further at
    some cost in recall.
    """
    if distance < 0:
        raise ValueError("distance must be >= 0")
    kept: list[VideoFrameHash] = []
    last: int | None = None
    for frame in frames:
        value = int(frame.pdq, 16)
        if last is not None and (value ^ last).bit_count() <= distance:
            continue
        kept.append(frame)
        last = value
    return kept


def to_vpdq_text(frames: Iterable[VideoFrameHash]) -> str:
    """Meta's vPDQ text: ``frame,quality,pdq_hex,timestamp`` per line, timestamp to 3 decimals."""
    return "".join(f"{f.frame},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for f in frames)


_HEX = re.compile(r"[0-9a-f]{64}")
_INT = re.compile(r"\d{1,12}")
_SECONDS = re.compile(r"\d{1,12}(\.\d{1,9})?")


def parse_vpdq_text(text: str, max_frames: int = VideoLimits.max_frames) -> list[VideoFrameHash]:
    """Parse vPDQ text strictly; InvalidInput names the first bad line (1-based).

    Blank lines are ignored; frame numbers must increase from line to line.
    """
    if not isinstance(text, str):
        raise InvalidInput("vPDQ text must be a string")
    frames: list[VideoFrameHash] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        frame = _parse_line(line, number)
        if frames and frame.frame <= frames[-1].frame:
            raise InvalidInput(
                f"vPDQ line {number}: frame {frame.frame} does not come after frame "
                f"{frames[-1].frame}",
                line=number,
            )
        frames.append(frame)
        if len(frames) > max_frames:
            raise PayloadTooLarge(f"vPDQ text has more than {max_frames:,} frames")
    if not frames:
        raise InvalidInput("vPDQ text has no frames")
    return frames


def _parse_line(line: str, number: int) -> VideoFrameHash:
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"vPDQ line {number}: {why}: {line[:120]!r}", line=number)

    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 4:
        raise bad(
            f"expected 4 comma-separated fields (frame,quality,hash,timestamp), got {len(parts)}"
        )
    frame, quality, value, seconds = parts
    if not _INT.fullmatch(frame):
        raise bad("frame number must be a non-negative integer")
    if not _INT.fullmatch(quality) or int(quality) > 100:
        raise bad("quality must be an integer from 0 to 100")
    value = value.lower()
    if not _HEX.fullmatch(value):
        raise bad("hash must be exactly 64 hex digits")
    if not _SECONDS.fullmatch(seconds):
        raise bad("timestamp must be a non-negative number of seconds")
    return VideoFrameHash(int(frame), int(quality), value, float(seconds))


def match_videos(
    query: Sequence[VideoFrameHash],
    target: Sequence[VideoFrameHash],
    distance: int = DEFAULT_MATCH_DISTANCE,
    quality: int = DEFAULT_MATCH_QUALITY,
) -> tuple[float, float]:
    """vPDQ's brute-force comparison: (query_match_percent, compared_match_percent).

    Both sides keep only frames of quality >= `quality`, then their unique hashes.
    query_match_percent is the share of the query's unique hashes within `distance` bits
    (inclusive) of some target hash; compared_match_percent the share of the target's unique
    hashes within `distance` of some query hash. A side with no hash left scores 0. Meta's usual
    decision: a match when compared >= 80 and query >= 0.
    """
    q = _unique_hashes(query, quality)
    t = _unique_hashes(target, quality)
    if q.size == 0 or t.size == 0:
        return 0.0, 0.0
    # (len(q), len(t)) Hamming distances via XOR of the four 64-bit words and a popcount
    xor = q[:, None, :] ^ t[None, :, :]
    bits = np.unpackbits(xor.view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int32)
    close = bits <= distance
    return (
        100.0 * float(close.any(axis=1).sum()) / q.shape[0],
        100.0 * float(close.any(axis=0).sum()) / t.shape[0],
    )


def _unique_hashes(frames: Sequence[VideoFrameHash], quality: int) -> np.ndarray:
    values = sorted({f.pdq for f in frames if f.quality >= quality})
    if not values:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").reshape(-1, 4)
    return raw.astype(np.uint64)


# --------------------------------------------------------------------------------------------
# Signal type


def _frames_from_value(value: Any) -> list[VideoFrameHash]:
    if isinstance(value, str):
        return parse_vpdq_text(value)
    if isinstance(value, list | tuple):
        if not value:
            raise InvalidInput("a vpdq value needs at least one frame")
        lines = []
        for i, item in enumerate(value, start=1):
            if isinstance(item, VideoFrameHash):
                item = asdict(item)
            if not isinstance(item, dict) or set(item) != {"frame", "quality", "pdq", "timestamp"}:
                raise InvalidInput(
                    f"vpdq frame {i}: expected an object with frame, quality, pdq and timestamp",
                    line=i,
                )
            fields = (item["frame"], item["quality"], item["pdq"], item["timestamp"])
            if not all(
                isinstance(x, int | float | str) and not isinstance(x, bool) for x in fields
            ):
                raise InvalidInput(f"vpdq frame {i}: fields must be numbers and a hex string")
            timestamp = item["timestamp"]
            if isinstance(timestamp, int | float):
                if not math.isfinite(timestamp) or timestamp < 0:
                    raise InvalidInput(f"vpdq frame {i}: timestamp must be >= 0", line=i)
                timestamp = f"{timestamp:.3f}"
            lines.append(f"{item['frame']},{item['quality']},{item['pdq']},{timestamp}")
        return parse_vpdq_text("\n".join(lines))
    raise InvalidInput("a vpdq value must be vPDQ text or a list of frame objects")


@register
class VideoSignal(SignalType):
    """vPDQ: per-frame PDQ hashes of a video, one frame per second, matched by share of frames.

    `compute` gives ``{"vpdq": [{"frame", "quality", "pdq", "timestamp"}, ...]}`` with runs of
    identical consecutive hashes collapsed (:func:`dedupe_frames` at distance 0); `normalize`
    takes that list or vPDQ text and returns canonical vPDQ text. `distance` is 100 minus the
    lower of the two match percentages of :func:`match_videos` at its defaults (0 = every
    frame of each video has a close frame in the other); `default_threshold` is the per-frame
    PDQ distance used by that comparison.
    """

    name = "vpdq"
    kinds = frozenset({ContentKind.video})
    index_kind = "vpdq"
    default_threshold = DEFAULT_MATCH_DISTANCE

    def compute(self, upload: Upload) -> dict[str, Any]:
        """`vpdq`, and as `vpdq_variants` the half-frame hashes ({name: [frames, quality]},
        quality the median of the frames'), searched and stored like an image's crops."""
        halves: dict[str, list[VideoFrameHash]] = {}
        frames = dedupe_frames(
            hash_video(upload.data or b"", VideoLimits.from_env(), halves=halves)
        )
        variants = {}
        for name, part in halves.items():
            kept = dedupe_frames(part)
            median = int(np.median([f.quality for f in kept]))
            variants[name] = [[asdict(f) for f in kept], median]
        signals: dict[str, Any] = {"vpdq": [asdict(f) for f in frames]}
        if variants:
            signals["vpdq_variants"] = variants
        return signals

    def normalize(self, value: Any) -> str:
        return to_vpdq_text(_frames_from_value(value))

    def distance(self, a: str, b: str) -> int:
        query, compared = match_videos(_frames_from_value(a), _frames_from_value(b))
        return 100 - math.floor(min(query, compared))

    # Index scores are VideoScore objects (matching/video_index.py): shares of matched frames.
    def threshold(self, bank: Any) -> int:
        return DEFAULT_MATCH_DISTANCE

    def accepts(self, score: Any, bank: Any) -> bool:
        return (
            score.query_match_pct >= bank.vpdq_query_match_pct
            and score.bank_match_pct >= bank.vpdq_bank_match_pct
        )

    def score_distance(self, score: Any) -> int:
        return score.min_frame_distance

    def score_detail(self, score: Any) -> dict[str, Any]:
        return {
            "query_match_percent": round(score.query_match_pct, 1),
            "compared_match_percent": round(score.bank_match_pct, 1),
        }
