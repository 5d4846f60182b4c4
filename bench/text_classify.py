"""Benchmark the default text model: batch throughput and single-text latency on one core.

Texts are tweet-length (up to 280 characters), taken from the hand-written hard-negative set and
from generated sentences, cut or repeated to length, so the benchmark needs no external data.

    python bench/text_classify.py --quick        # 4,000 texts, 300 single calls
    python bench/text_classify.py                # 40,000 texts, 2,000 single calls
    python bench/text_classify.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

# One core: keep BLAS and friends from spreading over more.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from prescreen.classify.evaluation import load_hard_negatives  # noqa: E402
from prescreen.classify.service import BATCH, default_model  # noqa: E402
from prescreen.classify.synthetic import generate  # noqa: E402


def texts_of_length(n: int, seed: int = 1, full: bool = False) -> list[str]:
    """Tweet-like texts of 60..280 characters (exactly 280 with `full`)."""
    rng = random.Random(seed)
    pool = [r["text"] for r in load_hard_negatives()] + [t for t, _ in generate(2000, seed)]
    out = []
    for _ in range(n):
        text = rng.choice(pool)
        while len(text) < 280 and (full or rng.random() < 0.6):
            text += " " + rng.choice(pool)
        out.append(text[:280] if full else text[: rng.randint(60, 280)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--full", action="store_true", help="every text exactly 280 characters")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    n_batch, n_single = (4000, 300) if args.quick else (40_000, 2000)

    t = time.perf_counter()
    model = default_model()
    model.predict(["warm up"])
    load_s = time.perf_counter() - t
    texts = texts_of_length(n_batch, full=args.full)

    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for start in range(0, len(texts), BATCH):
            model.predict(texts[start : start + BATCH])
        runs.append(len(texts) / (time.perf_counter() - t))
    singles = texts_of_length(n_single, seed=2, full=args.full)
    times, cpu = [], []
    for text in singles:
        c = time.thread_time()
        t = time.perf_counter()
        model.predict([text])
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
    result = {
        "model_version": model.version,
        "texts": len(texts),
        "mean_chars": round(float(np.mean([len(x) for x in texts])), 1),
        "texts_per_s": round(float(np.median(runs)), 1),
        "texts_per_s_runs": [round(r, 1) for r in runs],
        "single_p50_ms": round(float(np.percentile(times, 50)), 3),
        "single_p99_ms": round(float(np.percentile(times, 99)), 3),
        "single_cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3),
        "load_s": round(load_s, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:20} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
