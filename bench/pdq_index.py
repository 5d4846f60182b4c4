"""Benchmark prescreen's PDQIndex against threatexchange's PDQIndex and FAISS flat scan.

Banks are built to look like real ones: near-duplicate clusters (a seed plus variants
with a few bit flips), one huge cluster, a block of all-zero hashes, PDQ hashes of real
photos with edits (when pdqhash, Pillow and scikit-image are installed) and uniform
random codes for the bulk. Queries are stored hashes with 0-40 planted bit flips plus
held-out photo edits; ground truth is an exhaustive scan.

    python bench/pdq_index.py --quick            # 1M codes, under a minute
    python bench/pdq_index.py                    # 10M codes
    python bench/pdq_index.py --huge             # 100M codes (prescreen only)
    python bench/pdq_index.py --quick --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from prescreen.matching.pdq_index import PDQIndex, words_to_hex

KEYS = ("p50_ms", "p99_ms", "qps", "recall", "build_s", "bytes_per_hash")
ADD_COUNT = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- data


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def flip_bits(rng: np.random.Generator, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Copy of ``codes`` with ``counts[i]`` random bits flipped in row ``i``."""
    out = codes.copy()
    rows = np.repeat(np.arange(codes.shape[0]), counts)
    bits = rng.integers(0, 256, size=rows.shape[0])
    masks = np.left_shift(np.uint64(1), (63 - bits % 64).astype(np.uint64))
    np.bitwise_xor.at(out, (rows, bits // 64), masks)  # a repeated bit just cancels
    return out


def bits_to_words(bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(np.asarray(bits, np.uint8).reshape(-1, 256), axis=1)
    return packed.view(">u8").astype(np.uint64).reshape(-1, 4)


def photo_hashes() -> tuple[np.ndarray, np.ndarray, str]:
    """PDQ hashes of scikit-image sample photos and edits of them.

    Returns (bank codes, held-out query codes, note). Empty when a package is missing."""
    empty = np.zeros((0, 4), np.uint64)
    try:
        import pdqhash
        from PIL import Image, ImageEnhance, ImageFilter, ImageOps
        from skimage import data
    except ImportError as exc:
        return empty, empty, f"photo hashes skipped ({exc.name} not installed)"

    def jpeg(img: Image.Image, quality: int) -> Image.Image:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    def crop(img: Image.Image, f: float) -> Image.Image:
        w, h = img.size
        dx, dy = int(w * f), int(h * f)
        return img.crop((dx, dy, w - dx, h - dy))

    edits: list[Callable[[Image.Image], Image.Image]] = [
        lambda im: im,
        lambda im: jpeg(im, 90),
        lambda im: jpeg(im, 50),
        lambda im: jpeg(im, 20),
        lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
        lambda im: im.filter(ImageFilter.GaussianBlur(4)),
        lambda im: crop(im, 0.03),
        lambda im: crop(im, 0.08),
        lambda im: im.resize((im.size[0] // 3, im.size[1] // 3)),
        lambda im: ImageEnhance.Brightness(im).enhance(1.3),
        lambda im: ImageEnhance.Contrast(im).enhance(0.7),
        lambda im: ImageOps.grayscale(im).convert("RGB"),
        lambda im: ImageOps.mirror(im),
        lambda im: im.rotate(3, expand=False),
        lambda im: jpeg(crop(im, 0.05).filter(ImageFilter.GaussianBlur(1)), 40),
    ]
    names = [
        "astronaut", "camera", "coffee", "chelsea", "rocket", "cat", "coins", "horse",
        "immunohistochemistry", "moon", "page", "text", "clock", "brick", "grass", "gravel",
        "retina", "motorcycle_left", "hubble_deep_field", "colorwheel",
    ]  # fmt: skip
    bank, held = [], []
    for name in names:
        try:
            arr = getattr(data, name)()
        except Exception:  # some samples need a download; skip them
            continue
        img = Image.fromarray(np.asarray(arr)).convert("RGB")
        for j, edit in enumerate(edits):
            bits, _quality = pdqhash.compute(np.asarray(edit(img).convert("RGB")))
            (held if j % 4 == 3 else bank).append(bits)
    if not bank:
        return empty, empty, "photo hashes skipped (no sample images)"
    note = f"{len(bank)} photo hashes in the bank, {len(held)} held-out photo edits as queries"
    return bits_to_words(np.array(bank)), bits_to_words(np.array(held)), note


def make_bank(n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Bank codes (shuffled) and the row ranges of each component, for planting queries."""
    photos, held, note = photo_hashes()
    n_zero = min(2000, n // 100)
    n_huge = min(10_000, n // 50)
    n_clustered = n // 10
    seeds = random_codes(rng, max(1, n_clustered // 20))
    members = seeds[rng.integers(0, seeds.shape[0], size=n_clustered)]
    clustered = flip_bits(rng, members, rng.integers(1, 11, size=n_clustered))
    huge_seed = random_codes(rng, 1)
    huge = flip_bits(rng, np.repeat(huge_seed, n_huge, axis=0), rng.integers(0, 7, size=n_huge))
    n_random = n - photos.shape[0] - n_zero - n_huge - n_clustered
    parts = {
        "photo": photos,
        "zero": np.zeros((n_zero, 4), np.uint64),
        "huge_cluster": huge,
        "clustered": clustered,
        "random": random_codes(rng, n_random),
    }
    codes = np.concatenate(list(parts.values()))
    perm = rng.permutation(n)
    inv = np.empty(n, np.int64)
    inv[perm] = np.arange(n)
    rows, start = {}, 0
    for name, part in parts.items():
        rows[name] = inv[start : start + part.shape[0]]
        start += part.shape[0]
    rows["held_out_photo"] = held  # codes, not rows
    return codes[perm], rows, note


def make_queries(
    codes: np.ndarray, rows: dict[str, np.ndarray], k: int, rng: np.random.Generator
) -> np.ndarray:
    """Stored codes with 0-40 planted flips, mixed across bank components."""
    held = rows["held_out_photo"][: k // 10]
    share = {"random": 0.45, "clustered": 0.3, "huge_cluster": 0.05, "zero": 0.02, "photo": 0.08}
    picks = []
    for name, frac in share.items():
        if rows[name].shape[0]:
            picks.append(rng.choice(rows[name], size=int(k * frac)))
    pick = np.concatenate(picks)
    pick = np.concatenate([pick, rng.choice(rows["random"], size=k - held.shape[0] - len(pick))])
    planted = flip_bits(rng, codes[pick], rng.integers(0, 41, size=pick.shape[0]))
    queries = np.concatenate([planted, held])
    return queries[rng.permutation(queries.shape[0])]


# ----------------------------------------------------------------------------- truth


@njit(inline="always")
def _pop(x):  # type: ignore[no-untyped-def]
    """SWAR popcount: an implementation independent of the index's."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(parallel=True, cache=True)
def _truth_counts(codes, qs, radius, cap, out):  # type: ignore[no-untyped-def]
    counts = np.zeros(qs.shape[0], np.int64)
    for i in prange(qs.shape[0]):
        c = 0
        for u in range(codes.shape[0]):
            d = (
                _pop(codes[u, 0] ^ qs[i, 0])
                + _pop(codes[u, 1] ^ qs[i, 1])
                + _pop(codes[u, 2] ^ qs[i, 2])
                + _pop(codes[u, 3] ^ qs[i, 3])
            )
            if d <= radius:
                if c < cap:
                    out[i, c] = u
                c += 1
        counts[i] = c
    return counts


def brute_force_truth(codes: np.ndarray, qs: np.ndarray, radius: int) -> list[set[int]]:
    """Row ids within radius of each query (ids are row numbers in the bench)."""
    cap = 16_384
    out = np.empty((qs.shape[0], cap), np.int64)
    counts = _truth_counts(codes, qs, radius, cap, out)
    truth = []
    for i, c in enumerate(counts.tolist()):
        if c > cap:
            d = np.bitwise_count(codes ^ qs[i]).sum(axis=1)
            truth.append(set(np.flatnonzero(d <= radius).tolist()))
        else:
            truth.append(set(out[i, :c].tolist()))
    return truth


def recall(found: list[set[int]], truth: list[set[int]]) -> float:
    want = sum(len(t) for t in truth)
    hit = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    return 1.0 if want == 0 else hit / want


def latency(fn: Callable[[int], Any], k: int) -> tuple[np.ndarray, list[Any]]:
    for i in range(min(3, k)):  # warm caches / JIT
        fn(i)
    out, ms = [], np.empty(k)
    for i in range(k):
        t = time.perf_counter()
        out.append(fn(i))
        ms[i] = (time.perf_counter() - t) * 1e3
    return ms, out


def summarize(ms: np.ndarray, qps: float, rec: float, build_s: float, bph: float) -> dict:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "qps": round(qps, 1),
        "recall": round(rec, 6),
        "build_s": round(build_s, 3),
        "bytes_per_hash": round(bph, 1),
    }


# ----------------------------------------------------------------------------- systems


def bench_prescreen(codes, qs, radius, truth, extra) -> dict:  # type: ignore[no-untyped-def]
    n = codes.shape[0]
    ids = np.arange(n, dtype=np.int64)
    PDQIndex.build(codes[:2000], ids[:2000]).search_batch(qs[:4], radius)  # JIT cache warm-up
    gc.collect()
    t = time.perf_counter()
    index = PDQIndex.build(codes, ids)
    build_s = time.perf_counter() - t
    extra["prescreen_layout"] = index.stats()
    ms, res = latency(lambda i: index.search(qs[i], radius), qs.shape[0])
    rec = recall([set(r[0].tolist()) for r in res], truth)
    exact = all(sorted(r[0].tolist()) == sorted(t) for r, t in zip(res, truth, strict=True))
    extra["prescreen_exact"] = exact
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        batch = index.search_batch(qs, radius)
        runs.append(time.perf_counter() - t)
    assert all(set(b[0].tolist()) == set(r[0].tolist()) for b, r in zip(batch, res, strict=True))
    qps = qs.shape[0] / float(np.median(runs))
    out = summarize(ms, qps, rec, build_s, index.nbytes() / n)
    live_add(index, qs, radius, extra)
    snapshot(index, qs, radius, extra)
    return out


def live_add(index: PDQIndex, qs: np.ndarray, radius: int, extra: dict) -> None:
    """Add 10k hashes to the live index and check each is found right away."""
    rng = np.random.default_rng(99)
    n = len(index)
    new = random_codes(rng, ADD_COUNT)
    new_ids = np.arange(10**12, 10**12 + ADD_COUNT, dtype=np.int64)
    index.background_compaction = False
    index.delta_limit = 10**9
    t = time.perf_counter()
    index.add(new, new_ids)
    add_s = time.perf_counter() - t
    probes = flip_bits(rng, new, rng.integers(0, min(radius, 10) + 1, size=ADD_COUNT))
    found = index.search_batch(probes, radius)
    matched = sum(int(new_ids[j] in set(f[0].tolist())) for j, f in enumerate(found))
    ms, _ = latency(lambda i: index.search(qs[i], radius), min(300, qs.shape[0]))
    extra["add_10k"] = {
        "n_before": n,
        "add_s": round(add_s, 4),
        "matched_immediately": f"{matched}/{ADD_COUNT}",
        "p50_ms_with_delta": round(float(np.median(ms)), 4),
    }
    index.remove(new_ids)


def snapshot(index: PDQIndex, qs: np.ndarray, radius: int, extra: dict) -> None:
    root = tempfile.mkdtemp(prefix="pdq-bench-", dir=os.environ.get("PDQ_BENCH_TMP"))
    try:
        t = time.perf_counter()
        index.save(os.path.join(root, "snap"))
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        loaded = PDQIndex.load(os.path.join(root, "snap"), mmap=True)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        first = loaded.search(qs[0], radius)
        first_ms = (time.perf_counter() - t) * 1e3
        same = set(first[0].tolist()) == set(index.search(qs[0], radius)[0].tolist())
        ms, _ = latency(lambda i: loaded.search(qs[i], radius), min(300, qs.shape[0]))
        extra["snapshot"] = {
            "save_s": round(save_s, 3),
            "load_s": round(load_s, 4),
            "first_query_ms": round(first_ms, 3),
            "p50_ms_after_load": round(float(np.median(ms)), 4),
            "same_results": same,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_threatexchange(codes, qs, radius, truth, limit) -> dict:  # type: ignore[no-untyped-def]
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex as TEIndex

    class Index(TEIndex):  # type: ignore[misc, valid-type]
        @classmethod
        def get_match_threshold(cls) -> int:
            return radius

    qhex = words_to_hex(qs[:limit])
    gc.collect()
    before = rss_bytes()  # the index keeps the hex strings, so they count as its memory
    hexes = words_to_hex(codes)
    t = time.perf_counter()
    index = Index(zip(hexes, range(len(hexes)), strict=True))
    build_s = time.perf_counter() - t
    del hexes
    gc.collect()
    bph = (rss_bytes() - before) / codes.shape[0]
    ms, res = latency(lambda i: index.query(qhex[i]), len(qhex))
    found = [{m.metadata for m in r} for r in res]
    rec = recall(found, truth[:limit])
    t = time.perf_counter()
    index.index.search_with_distance_in_result(qhex, radius)  # faiss batch, all threads
    qps = len(qhex) / (time.perf_counter() - t)
    return summarize(ms, qps, rec, build_s, bph)


def bench_faiss(codes, qs, radius, truth, limit) -> dict:  # type: ignore[no-untyped-def]
    import faiss

    as_bytes = codes.astype(">u8").view(np.uint8).reshape(-1, 32)
    qb = np.ascontiguousarray(qs[:limit].astype(">u8").view(np.uint8).reshape(-1, 32))
    gc.collect()
    t = time.perf_counter()
    index = faiss.IndexBinaryFlat(256)
    index.add(as_bytes)
    build_s = time.perf_counter() - t
    del as_bytes

    def one(i: int) -> set[int]:
        lims, _d, labels = index.range_search(qb[i : i + 1], radius + 1)  # strict bound
        return set(labels[lims[0] : lims[1]].tolist())

    ms, found = latency(one, qb.shape[0])
    rec = recall(found, truth[:limit])
    t = time.perf_counter()
    index.range_search(qb, radius + 1)
    qps = qb.shape[0] / (time.perf_counter() - t)
    return summarize(ms, qps, rec, build_s, index.code_size)


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    codes, rows, note = make_bank(args.n, rng)
    qs = make_queries(codes, rows, args.queries, rng)
    log(f"bank of {args.n:,} codes ready in {time.perf_counter() - t:.1f}s; {note}")
    t = time.perf_counter()
    truth = brute_force_truth(codes, qs, args.radius)
    planted = sum(len(x) for x in truth)
    log(f"ground truth ({planted} matches) in {time.perf_counter() - t:.1f}s")
    extra: dict[str, Any] = {"data": note, "truth_pairs": planted}
    results: dict[str, dict] = {}
    peers = {"threatexchange": bench_threatexchange, "faiss_flat": bench_faiss}
    limit = args.peer_queries or qs.shape[0]
    if limit < qs.shape[0]:
        extra["peer_queries"] = f"peers timed on the first {limit} of {qs.shape[0]} queries"
    for name in ("prescreen", *peers):
        if name != "prescreen" and name in args.skip:
            results[name] = {"error": "skipped (--skip)"}
            continue
        log(f"running {name} ...")
        try:
            if name == "prescreen":
                results[name] = bench_prescreen(codes, qs, args.radius, truth, extra)
            else:
                results[name] = peers[name](codes, qs, args.radius, truth, limit)
        except Exception as exc:  # a missing or failing peer must not stop the rest
            if name == "prescreen":
                raise
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        gc.collect()
        log(f"  {name}: {results[name]}")
    return {"n": args.n, "radius": args.radius, "results": results}, extra


def print_table(report: dict, extra: dict) -> None:
    print(f"PDQ index benchmark: n={report['n']:,} radius={report['radius']}")
    print(f"cores={os.cpu_count()}  {extra.get('data', '')}")
    if "peer_queries" in extra:
        print(extra["peer_queries"])
    head = f"{'system':<16}" + "".join(f"{k:>16}" for k in KEYS)
    print(head)
    print("-" * len(head))
    for name, r in report["results"].items():
        if "error" in r:
            print(f"{name:<16}  error: {r['error']}")
            continue
        print(f"{name:<16}" + "".join(f"{r[k]:>16}" for k in KEYS))
    res = report["results"]
    for peer in ("threatexchange", "faiss_flat"):
        if "p50_ms" in res.get(peer, {}) and res["prescreen"]["p50_ms"] > 0:
            ratio = res[peer]["p50_ms"] / res["prescreen"]["p50_ms"]
            print(f"prescreen p50 is {ratio:,.1f}x faster than {peer}")
    for key in ("prescreen_exact", "prescreen_layout", "add_10k", "snapshot"):
        if key in extra:
            print(f"{key}: {extra[key]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000, help="bank size (default 10M)")
    p.add_argument("--quick", action="store_true", help="1M bank, peers on 200 queries")
    p.add_argument("--huge", action="store_true", help="100M bank, prescreen only")
    p.add_argument("--radius", type=int, default=31)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--peer-queries", type=int, default=0, help="limit the slow peers' queries")
    p.add_argument("--skip", default="", help="comma list of peers to skip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    if args.quick:
        args.n = 1_000_000
        args.peer_queries = args.peer_queries or 200
    if args.huge or args.n >= 100_000_000:
        args.n = max(args.n, 100_000_000)
        args.skip = args.skip or "threatexchange,faiss_flat"
    args.skip = {s for s in args.skip.split(",") if s}
    report, extra = run(args)
    if args.json:
        print(json.dumps(report))
        log(json.dumps(extra))
    else:
        print_table(report, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
