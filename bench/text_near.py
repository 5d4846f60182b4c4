"""Benchmark near-duplicate text lookup (MinHash + LSH) at bank sizes up to 1M texts.

The bank holds real texts (with the near-duplicate variants used as queries held out) plus
filler signatures. Filler is drawn uniformly at random: the MinHash signature of a text that
shares no shingle with the queries is, position by position, an independent uniform minimum, so
random signatures stand in for unrelated texts without hashing a million documents. Queries are
edited copies of bank texts (words dropped, added, swapped; punctuation and case changed) and
unrelated texts; ground truth is a brute-force scan of every signature.

    python bench/text_near.py --quick            # 100k texts
    python bench/text_near.py                    # 1M texts
    python bench/text_near.py --json             # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import numpy as np

from prescreen.matching.minhash_index import NUM_PERM, MinHashIndex, encode_signature
from prescreen.signals.text import normalize_text
from prescreen.signals.text_near import minhash, text_near_value

_WORD_LIST = (
    "the of and to in is that for it on with as was by at from this be are or an have not "
    "they which one you were all we her she there would their will when who more if no out "
    "so said what up its about into than them can only other new some could time these two "
    "may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each "
    "just those people how brothers fight join victory state city army attack news report "
    "police market school water"
)
WORDS = _WORD_LIST.split()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + " " + str(rng.randrange(10**9))


def edit(rng: random.Random, text: str, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.4:
            words.insert(i, rng.choice(WORDS))
        elif op < 0.7 and len(words) > 3:
            del words[i]
        else:
            words[i] = rng.choice(WORDS)
    out = " ".join(words)
    return out.upper() + "!!!" if rng.random() < 0.3 else out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100k texts instead of 1M")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--size", type=int)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    size = args.size or (100_000 if args.quick else 1_000_000)
    rng = random.Random(1)
    nrng = np.random.default_rng(1)

    real = 5000
    base_texts = [make_text(rng, rng.randint(12, 45)) for _ in range(real)]
    t = time.perf_counter()
    base_values = [text_near_value(x) for x in base_texts]
    sig_ms = (time.perf_counter() - t) * 1000 / real
    log(f"signature: {sig_ms:.3f} ms per text")

    filler = nrng.integers(0, 2**32, size=(size - real, NUM_PERM), dtype=np.uint32)
    ids = list(range(size))
    values = base_values + [encode_signature(row) for row in filler]
    del filler
    index = MinHashIndex()
    t = time.perf_counter()
    index.add(ids, values)
    build_s = time.perf_counter() - t
    log(f"built {len(index)} in {build_s:.1f} s")
    sigs = np.stack([minhash(normalize_text(x)) for x in base_texts])

    queries, truth = [], []
    for q in range(args.queries):
        if q % 4 == 3:
            text = make_text(rng, rng.randint(12, 45))
        else:
            text = edit(rng, base_texts[rng.randrange(real)], rng.randint(0, 4))
        value = text_near_value(text)
        qs = minhash(normalize_text(text))
        sims = np.count_nonzero(sigs == qs, axis=1) / NUM_PERM
        truth.append({int(i) for i in np.flatnonzero(sims >= 0.8)})
        queries.append(value)

    for value in queries[:50]:  # warm up
        index.search(value, 0)
    times, cpu, found, expected = [], [], 0, 0
    for value, want in zip(queries, truth, strict=True):
        c = time.thread_time()
        t = time.perf_counter()
        hits = index.search(value, 0)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
        got = {i for i, s in hits if s >= 0.8}
        found += len(got & want)
        expected += len(want)
    times_arr = np.array(times)

    # live add: matched immediately
    extra = [make_text(rng, 30) for _ in range(1000)]
    t = time.perf_counter()
    index.add(list(range(size, size + 1000)), [text_near_value(x) for x in extra])
    add_ms = (time.perf_counter() - t) * 1000 / 1000
    live = sum(
        any(i == size + k for i, _ in index.search(text_near_value(x), 0))
        for k, x in enumerate(extra[:200])
    )

    result = {
        "size": size,
        "queries": len(queries),
        "p50_ms": round(float(np.percentile(times_arr, 50)), 3),
        "p99_ms": round(float(np.percentile(times_arr, 99)), 3),
        "max_ms": round(float(times_arr.max()), 3),
        # CPU time of the lookup thread: the wall-clock tail on a shared machine is mostly
        # time spent waiting for a core, which this leaves out.
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3),
        "recall_at_0.8_vs_brute_force": round(found / max(expected, 1), 4),
        "build_s": round(build_s, 1),
        "signature_ms": round(sig_ms, 3),
        "add_ms_per_text": round(add_ms, 3),
        "live_adds_found": f"{live}/200",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
