"""Image hashing speed and drift: prescreen's fast path against python-threatexchange's.

Speed: per-image latency (p50/p99 ms) and images per second on one core for 0.3, 2 and 12 MP
JPEG and PNG files, each hasher in a fresh process of its own, for
* threatexchange: `threatexchange.signal_type.pdq.pdq_hasher.pdq_from_bytes`, the function
  `PdqSignal.hash_from_bytes` (and so HMA) uses: full decode, PDQ on every pixel;
* prescreen: `PDQSignal.compute` on the same bytes, i.e. what screening runs per upload
  (draft-mode JPEG decode, PDQ on >= 512 px, border check, trimmed hash when bars are found).
The test images are made from a real 12 MP phone photo of Meta's PDQ test set when
../shared/data/pdq is present, otherwise from skimage's `coffee` scaled up with sensor-like
noise; 2 and 0.3 MP versions are downscaled from it.

Drift: Hamming distance between prescreen's hash and the reference hash (pdqhash on the full-
resolution RGB pixels, as threatexchange computes it, of the same EXIF-upright image) over
every image of the PDQ test set: p50/p95/max.

Variant cost: time of `query_variants` and `bank_variants` against one plain hash of the same
decoded image.

    python bench/image_hashing.py --quick           # under a minute
    python bench/image_hashing.py --json --quick    # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
from PIL import Image, ImageOps

from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.image import PDQSignal, bits_to_hex, decode_image, pdq_distance, pdq_hash
from prescreen.signals.image_variants import bank_variants, query_variants

ROOT = Path(__file__).resolve().parent.parent
PDQ_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pdq"
PHOTO_12MP = PDQ_DATA / "pdq/data/reg-test-input/exif-rotn/exif-rotn-1.jpg"
SIZES = {"0.3MP": (640, 480), "2MP": (1632, 1224), "12MP": (4032, 3024)}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def source_photo() -> tuple[Image.Image, str]:
    if PHOTO_12MP.is_file():
        image = ImageOps.exif_transpose(Image.open(PHOTO_12MP)).convert("RGB")
        return image.resize(SIZES["12MP"], Image.Resampling.LANCZOS), str(
            PHOTO_12MP.relative_to(PDQ_DATA)
        )
    import skimage.data

    small = Image.fromarray(skimage.data.coffee())
    big = np.asarray(small.resize(SIZES["12MP"], Image.Resampling.BICUBIC), dtype=np.float32)
    noise = np.random.default_rng(0).normal(0, 4, big.shape)
    image = Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8), "RGB")
    return image, "skimage.data.coffee scaled up + noise"


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def timed(fn: Callable[[], Any], runs: int, budget_s: float) -> list[float]:
    fn()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "images_per_s_per_core": round(1000 / float(np.mean(times)), 1),
        "runs": len(times),
    }


def threatexchange_hasher() -> Callable[[bytes], Any] | None:
    try:
        from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes
    except ImportError:
        log("threatexchange is not installed: pip install threatexchange (skipping the peer)")
        return None
    return pdq_from_bytes


def prescreen_hasher() -> Callable[[bytes], Any]:
    signal = PDQSignal()
    return lambda data: signal.compute(Upload(ContentKind.photo, data=data))


HASHERS = {"prescreen": prescreen_hasher, "threatexchange": threatexchange_hasher}


def times_of(hasher: str, files: list[bytes], runs: int, budget: float) -> list[list[float]] | None:
    """Latencies (ms) of one hasher on each file, or None when it is not installed."""
    hash_bytes = HASHERS[hasher]()
    if hash_bytes is None:
        return None
    return [timed(lambda d=data: hash_bytes(d), runs, budget) for data in files]


def in_fresh_process(hasher: str, files: list[bytes], runs: int, budget: float) -> Any:
    """`times_of` in a process of its own: run in one process, each hasher's large frees and
    allocations left malloc in a state that moved the other's times by up to 25%."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(times_of, hasher, files, runs, budget).result()


def speed(quick: bool) -> dict[str, Any]:
    photo, source = source_photo()
    runs, budget = (15, 4.0) if quick else (60, 15.0)
    files: dict[str, bytes] = {}
    for label, size in SIZES.items():
        image = photo if size == photo.size else photo.resize(size, Image.Resampling.LANCZOS)
        for fmt in ("JPEG", "PNG"):
            files[f"{label} {fmt}"] = encode(image, fmt)
    ours = in_fresh_process("prescreen", list(files.values()), runs, budget)
    theirs = in_fresh_process("threatexchange", list(files.values()), runs, budget)
    rows: dict[str, Any] = {"source": source}
    for k, (name, data) in enumerate(files.items()):
        row: dict[str, Any] = {"bytes": len(data), "prescreen": stats(ours[k])}
        if theirs is not None:
            row["threatexchange"] = stats(theirs[k])
            row["speedup_p50"] = round(
                row["threatexchange"]["p50_ms"] / row["prescreen"]["p50_ms"], 1
            )
        rows[name] = row
        log(f"{name}: {row}")
    return rows


def reference_hash(image: Image.Image) -> str:
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
    return bits_to_hex(bits)


def drift() -> dict[str, Any]:
    if not PDQ_DATA.is_dir():
        log(f"PDQ test images not found at {PDQ_DATA}: no drift measurement")
        return {}
    signal = PDQSignal()
    distances: dict[str, int] = {}
    for path in sorted(PDQ_DATA.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        data = path.read_bytes()
        reference = reference_hash(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        ours = signal.compute(Upload(ContentKind.photo, data=data))["pdq"]
        distances[str(path.relative_to(PDQ_DATA))] = pdq_distance(ours, reference)
    values = list(distances.values())
    large = [p for p, d in distances.items() if max(Image.open(PDQ_DATA / p).size) > 1024]
    return {
        "files": len(values),
        "files_over_1024px": len(large),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": max(values),
        "over_1024px": {
            "p50": float(np.percentile([distances[p] for p in large], 50)) if large else 0.0,
            "p95": float(np.percentile([distances[p] for p in large], 95)) if large else 0.0,
            "max": max((distances[p] for p in large), default=0),
        },
        "worst": sorted(distances.items(), key=lambda kv: -kv[1])[:5],
    }


def variant_cost(quick: bool) -> dict[str, Any]:
    photo, _ = source_photo()
    runs, budget = (15, 3.0) if quick else (50, 10.0)
    out: dict[str, Any] = {}
    for label in ("2MP", "12MP"):
        size = SIZES[label]
        image = photo if size == photo.size else photo.resize(size, Image.Resampling.LANCZOS)
        decoded = decode_image(encode(image, "JPEG"), 10**9, min_side=512)
        boxed = Image.new("RGB", (decoded.width, round(decoded.height * 1.3)))
        boxed.paste(decoded, (0, round(decoded.height * 0.15)))  # a letterboxed upload
        single = stats(timed(lambda d=decoded: pdq_hash(d), runs, budget))["p50_ms"]
        query = stats(timed(lambda d=decoded: query_variants(d), runs, budget))["p50_ms"]
        query_boxed = stats(timed(lambda d=boxed: query_variants(d), runs, budget))["p50_ms"]
        bank = stats(timed(lambda d=decoded: bank_variants(d), runs, budget))["p50_ms"]
        out[label] = {
            "single_hash_ms": single,
            "query_variants_ms": query,
            "query_variants_letterboxed_ms": query_boxed,
            "bank_variants_ms": bank,
            "query_variants": len(query_variants(decoded)),
            "query_variants_letterboxed": len(query_variants(boxed)),
            "bank_variants": len(bank_variants(decoded)),
        }
        log(f"variants {label}: {out[label]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    started = time.perf_counter()
    report = {
        "cores": os.cpu_count(),
        "speed": speed(args.quick),
        "drift_bits": drift(),
        "variant_cost": variant_cost(args.quick),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
        return
    print(f"source photo: {report['speed'].pop('source')}")
    print(f"{'file':12}{'threatexchange p50/p99 ms':>28}{'prescreen p50/p99 ms':>24}{'x':>7}")
    for name, row in report["speed"].items():
        theirs = row.get("threatexchange", {})
        ours = row["prescreen"]
        print(
            f"{name:12}{theirs.get('p50_ms', 0):>18.1f} / {theirs.get('p99_ms', 0):<7.1f}"
            f"{ours['p50_ms']:>14.1f} / {ours['p99_ms']:<7.1f}{row.get('speedup_p50', 0):>7.1f}"
        )
    print(f"drift (bits) on the PDQ test set: {report['drift_bits']}")
    print(f"variant cost: {report['variant_cost']}")
    print(f"{report['seconds']} s")


if __name__ == "__main__":
    main()
