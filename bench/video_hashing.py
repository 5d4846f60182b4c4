"""vPDQ hashing speed and agreement with Meta's reference hashes.

Speed: 480p, 720p and 1080p clips (30 fps, 20 s; 3 s with --quick) are generated with PyAV's
bundled libx264 from a moving fractal-noise texture, moving gradients and shapes, so they are not
trivially compressible; each is hashed with the defaults of `prescreen.signals.video.hash_video`
and the figure is seconds of video per second of CPU time of this process (decoding is
single-threaded, so that is per core). The median of --repeat runs is reported.

Agreement: every clip in ../shared/data/vpdq/tmk/sample-videos that has a reference hash file
is hashed with the defaults, and each hashed frame of quality >= 50 is compared with the
reference hash of the same frame number (median and 90th percentile Hamming distance, bits).

    python bench/video_hashing.py [--quick] [--json] [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from prescreen.signals.video import hash_video

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
VPDQ_DATA = SHARED_DATA / "vpdq"
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30


def _fractal_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of upsampled noise octaves: detail at every scale, like natural images."""
    texture = np.zeros((height, width), dtype=np.float32)
    for octave, amplitude in ((4, 0.5), (16, 0.25), (64, 0.15), (256, 0.1)):
        cells = rng.random(
            (height // max(1, height // octave) + 2, width // max(1, width // octave) + 2)
        )
        up_y = np.linspace(0, cells.shape[0] - 1.001, height)
        up_x = np.linspace(0, cells.shape[1] - 1.001, width)
        y0, x0 = up_y.astype(int), up_x.astype(int)
        fy, fx = (up_y - y0)[:, None], (up_x - x0)[None, :]
        c = cells
        layer = (
            c[y0][:, x0] * (1 - fy) * (1 - fx)
            + c[y0 + 1][:, x0] * fy * (1 - fx)
            + c[y0][:, x0 + 1] * (1 - fy) * fx
            + c[y0 + 1][:, x0 + 1] * fy * fx
        )
        texture += amplitude * layer.astype(np.float32)
    return texture


def make_clip(path: Path, width: int, height: int, seconds: float, seed: int = 7) -> None:
    """Encode a synthetic clip with libx264 (default preset, yuv420p)."""
    rng = np.random.default_rng(seed)
    frames = round(seconds * FPS)
    pan = frames * 3 + 8
    texture = _fractal_texture(height + pan, width + pan, rng)
    # a diagonal colour gradient twice as wide as the frame, slid sideways as time passes
    yy, xx = np.mgrid[0:height, 0 : 2 * width].astype(np.float32)
    gradient = (0.5 + 0.5 * np.sin(2 * np.pi * (xx / width * 1.5 + yy / height * 0.7))).astype(
        np.float32
    )
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23"}
        rgb = np.empty((height, width, 3), dtype=np.float32)
        for i in range(frames):
            t = i / FPS
            shift = 3 * i
            base = texture[shift : shift + height, (shift // 2) : (shift // 2) + width]
            slide = (i * 4) % width
            moving = gradient[:, slide : slide + width]
            rgb[..., 0] = 0.6 * base + 0.4 * moving
            rgb[..., 1] = 0.7 * base + 0.3 * gradient[:, width - slide : 2 * width - slide]
            rgb[..., 2] = 0.5 * base + 0.5 * (1.0 - moving)
            for k in range(4):  # moving rectangles, each with its own colour
                size = height // (5 + k)
                top = int((0.5 + 0.4 * np.sin(t * (0.7 + k * 0.3) + k)) * (height - size))
                left = int((0.5 + 0.4 * np.cos(t * (0.5 + k * 0.2) + 2 * k)) * (width - size))
                rgb[top : top + size, left : left + size] = (
                    0.2 + 0.2 * k,
                    0.9 - 0.2 * k,
                    0.5 + 0.1 * k,
                )
            pixels = (np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure_speed(path: Path, repeat: int) -> dict[str, float]:
    """CPU time of vPDQ alone and of what screening computes (vPDQ plus half-frame hashes)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        video_s = float(stream.frames / stream.average_rate)
    result: dict[str, float] = {"video_s": video_s}
    for suffix, make_halves in (("", lambda: None), ("_with_halves", dict)):
        times = []
        for _ in range(repeat):
            start = time.process_time()
            hash_video(path, halves=make_halves())
            times.append(time.process_time() - start)
        cpu_s = statistics.median(times)
        result[f"realtime_x{suffix}"] = round(video_s / cpu_s, 1)
        result[f"cpu_s{suffix}"] = round(cpu_s, 3)
    return result


def _reference(path: Path) -> dict[int, tuple[int, str]]:
    rows = {}
    for line in path.read_text().splitlines():
        frame, quality, value, _ = line.split(",")
        rows[int(frame)] = (int(quality), value)
    return rows


def measure_agreement() -> dict[str, dict[str, float]]:
    videos = VPDQ_DATA / "tmk" / "sample-videos"
    hashes = VPDQ_DATA / "vpdq" / "sample-hashes"
    out: dict[str, dict[str, float]] = {}
    if not videos.is_dir():
        return out
    for clip in sorted(videos.glob("*.mp4")):
        reference_file = hashes / f"{clip.stem}.txt"
        if not reference_file.is_file():
            continue
        reference = _reference(reference_file)
        bits = [
            (int(f.pdq, 16) ^ int(reference[f.frame][1], 16)).bit_count()
            for f in hash_video(clip)
            if f.frame in reference and reference[f.frame][0] >= 50
        ]
        out[clip.stem] = {
            "median_bits": float(np.median(bits)) if bits else float("nan"),
            "p90_bits": round(float(np.percentile(bits, 90)), 1) if bits else float("nan"),
            "frames": len(bits),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s clips (under a minute in all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=None, help="runs per clip (median)")
    parser.add_argument("--keep", type=Path, default=None, help="write (and reuse) clips here")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 20.0
    repeat = args.repeat or (3 if args.quick else 5)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for label, (width, height) in SIZES.items():
            path = folder / f"bench-{label}-{seconds:g}s.mp4"
            if not path.is_file():
                make_clip(path, width, height, seconds)
            results[label] = measure_speed(path, repeat)
            if not args.json:
                r = results[label]
                print(
                    f"{label:>6}: {r['realtime_x']:6.1f}x real time "
                    f"({r['video_s']:.1f} s of video in {r['cpu_s']:.2f} s CPU); "
                    f"{r['realtime_x_with_halves']:.1f}x with half-frame hashes",
                    file=sys.stderr,
                )
    agreement = measure_agreement()
    if args.json:
        print(json.dumps({"results": results, "agreement": agreement}))
        return
    if not agreement:
        print(f"no reference clips under {VPDQ_DATA}; agreement skipped")
    for clip, a in agreement.items():
        print(
            f"{clip:32} median {a['median_bits']:.1f} bits, p90 {a['p90_bits']:.1f} bits "
            f"over {a['frames']} frames"
        )


if __name__ == "__main__":
    main()
