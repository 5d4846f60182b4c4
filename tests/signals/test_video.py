"""vPDQ video hashing: agreement with Meta's reference hashes, family matching on Meta's sample
clips, the text format, the signal type, and hostile or oversized inputs."""

from __future__ import annotations

import io
import os
import struct
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from tests.conftest import SHARED_DATA

from prescreen.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.pdq_luma import pdq_from_luma
from prescreen.signals.video import (
    VideoFrameHash,
    VideoLimits,
    VideoSignal,
    dedupe_frames,
    hash_video,
    match_videos,
    parse_vpdq_text,
    to_vpdq_text,
)

av = pytest.importorskip("av")

VPDQ_DATA = SHARED_DATA / "vpdq"
VIDEOS = VPDQ_DATA / "tmk" / "sample-videos"
REFERENCE = VPDQ_DATA / "vpdq" / "sample-hashes"
needs_vpdq_data = pytest.mark.skipif(
    not VIDEOS.is_dir() or not REFERENCE.is_dir(),
    reason=f"vPDQ sample videos and reference hashes not found under {VPDQ_DATA}",
)

# Variants of one "chair" scene: different lengths and cuts, grey, sepia, small logo, bars.
CHAIR = [
    "chair-19-sd-bar",
    "chair-20-sd-bar",
    "chair-22-sd-grey-bar",
    "chair-22-sd-sepia-bar",
    "chair-22-with-small-logo-bar",
    "chair-orig-22-sd-bar",
]
# These start on the same frame, so their 1-per-second samples line up with each other.
CHAIR_ALIGNED = [name for name in CHAIR if name != "chair-19-sd-bar"]
# The large logo covers so much of the frame that no frame is within 31 bits of the plain
# chair, even in Meta's own every-frame reference hashes (about 10% of frames match): vPDQ
# cannot find it, so it is only checked not to match other content.
CHAIR_LARGE_LOGO = "chair-22-with-large-logo-bar"
PATTERN = ["pattern-hd-no-bar", "pattern-longer-no-bar"]
OTHER = ["doorknob-hd-no-bar", "pattern-sd-grey-bar", "pattern-sd-with-small-logo-bar"]


def _reference(name: str) -> dict[int, VideoFrameHash]:
    return {f.frame: f for f in parse_vpdq_text((REFERENCE / f"{name}.txt").read_text())}


def _bits(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture(scope="module")
def hashed() -> dict[str, list[VideoFrameHash]]:
    """Every sample clip that has a reference file, hashed with the defaults."""
    if not VIDEOS.is_dir() or not REFERENCE.is_dir():
        pytest.skip(f"vPDQ sample data not found under {VPDQ_DATA}")
    return {
        clip.stem: hash_video(clip)
        for clip in sorted(VIDEOS.glob("*.mp4"))
        if (REFERENCE / f"{clip.stem}.txt").is_file()
    }


@pytest.fixture(scope="module")
def dense() -> dict[str, list[VideoFrameHash]]:
    """Bank-side hashes of one clip per family, every frame (a query sampled once a second can
    then start anywhere in the scene)."""
    return {
        name: hash_video(VIDEOS / f"{name}.mp4", seconds_per_hash=0)
        for name in ("chair-orig-22-sd-bar", "pattern-longer-no-bar")
    }


# --------------------------------------------------------------------------------------------
# Agreement with Meta's reference


@needs_vpdq_data
def test_every_clip_with_a_reference_is_within_two_bits(hashed) -> None:
    assert len(hashed) >= 13
    for name, frames in hashed.items():
        reference = _reference(name)
        fps = 30
        assert [f.frame for f in frames] == list(range(0, len(reference), fps)), name
        for f in frames:
            assert f.timestamp == pytest.approx(f.frame / fps), name
            assert abs(f.quality - reference[f.frame].quality) <= 3, (name, f.frame)
        distances = [
            _bits(f.pdq, reference[f.frame].pdq) for f in frames if reference[f.frame].quality >= 50
        ]
        assert distances, name
        assert float(np.median(distances)) <= 2, (name, distances)


@needs_vpdq_data
def test_without_frame_skipping_the_same_frames_are_hashed() -> None:
    path = VIDEOS / "doorknob-hd-no-bar.mp4"
    assert hash_video(path, skip_nonref=False) == hash_video(path)


def test_pdq_from_luma_is_bit_exact_with_the_reference_implementation() -> None:
    rng = np.random.default_rng(5)
    sizes = [(64, 64), (5, 5), (48, 64), (97, 131), (360, 640), (721, 1279), (1080, 1920)]
    for height, width in sizes:
        cell = int(rng.integers(1, 24))
        coarse = rng.random((height // cell + 2, width // cell + 2))
        image = np.kron(coarse, np.ones((cell, cell)))[:height, :width] * 200
        image = (image + rng.random((height, width)) * 55).astype(np.uint8)
        bits, quality = pdqhash.compute(np.ascontiguousarray(np.repeat(image[:, :, None], 3, 2)))
        expected = np.packbits(bits.astype(np.uint8)).tobytes().hex()
        assert pdq_from_luma(image) == (expected, quality), (height, width)
    assert pdq_from_luma(np.zeros((4, 100), np.uint8)) == ("0" * 64, 0)


# --------------------------------------------------------------------------------------------
# Matching (Meta's brute-force semantics at the defaults: distance 31, quality 50)


@needs_vpdq_data
def test_aligned_chair_variants_match_each_other(hashed) -> None:
    for a in CHAIR_ALIGNED:
        for b in CHAIR_ALIGNED:
            query, compared = match_videos(hashed[a], hashed[b])
            assert query >= 80 and compared >= 80, (a, b, query, compared)


@needs_vpdq_data
def test_every_chair_cut_matches_a_densely_hashed_bank_copy(hashed, dense) -> None:
    for name in CHAIR:
        query, _ = match_videos(hashed[name], dense["chair-orig-22-sd-bar"])
        assert query >= 80, (name, query)
    for name in PATTERN:
        query, _ = match_videos(hashed[name], dense["pattern-longer-no-bar"])
        assert query >= 80, (name, query)


@needs_vpdq_data
def test_chair_never_matches_other_content(hashed, dense) -> None:
    for a in [*CHAIR, CHAIR_LARGE_LOGO]:
        for b in [*PATTERN, *OTHER]:
            assert match_videos(hashed[a], hashed[b]) == (0.0, 0.0), (a, b)
            assert match_videos(hashed[b], hashed[a]) == (0.0, 0.0), (b, a)
        assert match_videos(hashed[a], dense["pattern-longer-no-bar"]) == (0.0, 0.0), a
    for b in [*PATTERN, *OTHER]:
        assert match_videos(hashed[b], dense["chair-orig-22-sd-bar"]) == (0.0, 0.0), b


def test_match_semantics_unique_quality_and_distance() -> None:
    zero, ones = "0" * 64, "f" * 64
    near = "0" * 56 + "7fffffff"  # 31 bits from zero
    far = "0" * 56 + "ffffffff"  # 32 bits from zero
    query = [VideoFrameHash(i, 100, zero, i) for i in range(5)] + [VideoFrameHash(9, 100, ones, 9)]
    target = [VideoFrameHash(0, 100, near, 0), VideoFrameHash(1, 10, ones, 1)]
    # unique query hashes: {zero, ones}; ones only matches a target frame of quality 10
    assert match_videos(query, target) == (50.0, 100.0)
    assert match_videos(query, target, quality=0) == (100.0, 100.0)
    assert match_videos(query, [VideoFrameHash(0, 100, far, 0)]) == (0.0, 0.0)
    assert match_videos(query, [VideoFrameHash(0, 100, far, 0)], distance=32) == (50.0, 100.0)
    assert match_videos([], target) == (0.0, 0.0)


def test_dedupe_drops_runs_within_distance_of_the_last_kept_frame() -> None:
    a, b, c = "0" * 64, "0" * 63 + "1", "0" * 63 + "3"
    frames = [VideoFrameHash(i, 90, h, float(i)) for i, h in enumerate([a, a, b, b, c, a])]
    assert [f.frame for f in dedupe_frames(frames)] == [0, 2, 4, 5]
    assert [f.frame for f in dedupe_frames(frames, distance=1)] == [0, 4, 5]
    assert [f.frame for f in dedupe_frames(frames, distance=2)] == [0]
    assert dedupe_frames([]) == []


# --------------------------------------------------------------------------------------------
# Text format and the signal type


@needs_vpdq_data
def test_text_round_trip_matches_the_reference_format(hashed) -> None:
    frames = hashed["chair-20-sd-bar"]
    text = to_vpdq_text(frames)
    assert text.splitlines()[1].startswith("30,") and text.splitlines()[1].endswith(",1.000")
    assert parse_vpdq_text(text) == frames
    reference_text = (REFERENCE / "doorknob-hd-no-bar.txt").read_text()
    assert to_vpdq_text(parse_vpdq_text(reference_text)) == reference_text


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("0,100," + "a" * 64 + ",0.000\n1,100," + "b" * 63 + ",0.033", 2, "64 hex"),
        ("0,100," + "a" * 64 + ",0.000,extra", 1, "4 comma-separated"),
        ("\n\n0,101," + "a" * 64 + ",0.000", 3, "quality"),
        ("-1,100," + "a" * 64 + ",0.000", 1, "frame number"),
        ("0,100," + "a" * 64 + ",-0.5", 1, "timestamp"),
        ("0,100," + "a" * 64 + ",nan", 1, "timestamp"),
        ("3,1," + "a" * 64 + ",0.1\n3,1," + "a" * 64 + ",0.1", 2, "does not come after"),
    ],
)
def test_parse_rejects_bad_lines_by_number(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_vpdq_text(text)
    assert f"line {line}" in err.value.message and words in err.value.message


def test_parse_rejects_empty_text() -> None:
    with pytest.raises(InvalidInput, match="no frames"):
        parse_vpdq_text("\n \n")


def test_signal_compute_and_normalize(tiny_clip: bytes) -> None:
    signal = VideoSignal()
    assert signal.name == "vpdq" and signal.kinds == frozenset({ContentKind.video})
    value = signal.compute(Upload(kind=ContentKind.video, data=tiny_clip))["vpdq"]
    assert value and all(set(v) == {"frame", "quality", "pdq", "timestamp"} for v in value)
    assert [v["frame"] for v in value] == [0, 10, 20]
    text = signal.normalize(value)
    assert text == signal.normalize(text.upper().replace("\n", "\r\n"))
    assert signal.distance(text, text) == 0
    with pytest.raises(InvalidInput):
        signal.normalize([{"frame": 0, "quality": 5}])
    with pytest.raises(InvalidInput):
        signal.normalize([])
    with pytest.raises(InvalidInput):
        signal.compute(Upload(kind=ContentKind.video, data=b""))


def test_limits_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("PRESCREEN_MAX_VIDEO_SECONDS", "60")
    monkeypatch.setenv("PRESCREEN_MAX_VIDEO_PIXELS", "2073600")
    monkeypatch.setenv("PRESCREEN_MAX_VIDEO_FRAMES", "5000")
    limits = VideoLimits.from_env()
    assert (limits.max_seconds, limits.max_pixels, limits.max_frames) == (60.0, 2073600, 5000)
    assert limits.max_width == VideoLimits().max_width
    monkeypatch.setenv("PRESCREEN_MAX_VIDEO_BYTES", "lots")
    with pytest.raises(ValueError, match="PRESCREEN_MAX_VIDEO_BYTES"):
        VideoLimits.from_env()


# --------------------------------------------------------------------------------------------
# Bad and oversized inputs: a clear error, quickly, and nothing else


def _encode_clip(seconds: float = 3.0, fps: int = 10, width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            pixels = np.full((height, width, 3), (i * 8) % 256, dtype=np.uint8)
            pixels[i % height : i % height + 10, 5:30] = 255
            pixels[:, width // 2 :, 1] = 40
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _encode_audio(container_format: str, codec: str) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=8000)
        for i in range(8):
            samples = (np.sin(np.arange(1024) * 0.05 + i) * 3000).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, i * 1024, Fraction(1, 8000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _claim_duration(data: bytes, divisor: int) -> bytes:
    """Divide the durations in the mp4 header (mvhd, tkhd, mdhd) by `divisor`; the frames stay."""
    patched = bytearray(data)
    for box, offset in ((b"mvhd", 20), (b"mdhd", 20), (b"tkhd", 24)):
        at = patched.find(box)
        assert at > 0 and patched[at + 4] == 0  # version 0 boxes: 32-bit fields
        (value,) = struct.unpack(">I", patched[at + offset : at + offset + 4])
        patched[at + offset : at + offset + 4] = struct.pack(">I", value // divisor)
    return bytes(patched)


@pytest.fixture(scope="module")
def tiny_clip() -> bytes:
    return _encode_clip()


def test_tiny_clip_hashes(tiny_clip: bytes, tmp_path: Path) -> None:
    frames = hash_video(tiny_clip)
    assert [(f.frame, f.timestamp) for f in frames] == [(0, 0.0), (10, 1.0), (20, 2.0)]
    path = tmp_path / "clip.mp4"
    path.write_bytes(tiny_clip)
    assert hash_video(path) == frames == hash_video(str(path))
    assert len(hash_video(tiny_clip, seconds_per_hash=0.5)) == 6
    assert len(hash_video(tiny_clip, seconds_per_hash=0)) == 30


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda clip: b"", InvalidInput, "empty"),
        (lambda clip: clip[: len(clip) // 2], InvalidInput, "truncated or corrupt"),
        (lambda clip: clip[:-200], InvalidInput, "truncated or corrupt"),
        (lambda clip: clip[:40], InvalidInput, "truncated or corrupt"),
        (lambda clip: os.urandom(20_000), UnsupportedMedia, "not a video"),
        (lambda clip: b"\x00" * 5000, UnsupportedMedia, "not a video"),
        (lambda clip: b"hello, world\n" * 400, UnsupportedMedia, "not a video"),
        (lambda clip: _encode_audio("wav", "pcm_s16le"), UnsupportedMedia, "audio"),
        (lambda clip: _encode_audio("mp4", "aac"), UnsupportedMedia, "no video stream"),
        (lambda clip: _encode_audio("mp3", "libmp3lame"), UnsupportedMedia, "audio"),
        (
            lambda clip: b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n",
            UnsupportedMedia,
            "not a video",
        ),
    ],
)
def test_bad_files_give_clear_errors(tiny_clip: bytes, make, error, words: str) -> None:
    start = time.monotonic()
    with pytest.raises(error) as err:
        hash_video(make(tiny_clip))
    assert words in err.value.message
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (VideoLimits(max_width=32), "64x48, over the limit"),
        (VideoLimits(max_pixels=1000), "64x48, over the limit"),
        (VideoLimits(max_seconds=1.5), "1.5 s"),
        (VideoLimits(max_frames=12), "more than 12 frames"),
        (VideoLimits(max_bytes=1000), "bytes, over the limit"),
    ],
)
def test_limits_are_enforced(tiny_clip: bytes, limits: VideoLimits, words: str) -> None:
    with pytest.raises(PayloadTooLarge) as err:
        hash_video(tiny_clip, limits)
    assert words in err.value.message


def test_a_header_that_lies_about_the_length_does_not_get_past_the_limits(tiny_clip) -> None:
    lying = _claim_duration(tiny_clip, 3)  # says 1 s; holds 3 s (30 frames)
    with av.open(io.BytesIO(lying)) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) <= 1.01
    assert len(hash_video(lying)) == 3  # every frame is still read
    with pytest.raises(PayloadTooLarge, match="whatever its header says"):
        hash_video(lying, VideoLimits(max_seconds=1.5))
    with pytest.raises(PayloadTooLarge, match="more than 20 frames"):
        hash_video(lying, VideoLimits(max_frames=20))


def test_seconds_per_hash_must_be_sane(tiny_clip: bytes) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            hash_video(tiny_clip, seconds_per_hash=bad)


def test_damaged_files_never_raise_anything_else(tiny_clip: bytes) -> None:
    rng = np.random.default_rng(11)
    mkv = io.BytesIO()
    with av.open(io.BytesIO(tiny_clip)) as source, av.open(mkv, "w", format="matroska") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    start = time.monotonic()
    for clip in (tiny_clip, mkv.getvalue()):
        for _ in range(25):
            damaged = bytearray(clip)
            for at in rng.integers(0, len(damaged), size=int(rng.integers(1, 40))):
                damaged[at] = int(rng.integers(0, 256))
            try:
                frames = hash_video(bytes(damaged), VideoLimits(max_frames=1000, max_seconds=60))
            except (InvalidInput, UnsupportedMedia, PayloadTooLarge):
                continue
            assert all(len(f.pdq) == 64 and 0 <= f.quality <= 100 for f in frames)
    assert time.monotonic() - start < 20
