"""The near-duplicate text signal and its MinHash LSH index."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from prescreen.core.errors import InvalidInput
from prescreen.matching.minhash_index import (
    NUM_PERM,
    MinHashIndex,
    decode_signature,
)
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.text import normalize_text
from prescreen.signals.text_near import (
    TextNearSignal,
    minhash,
    shingle_hashes,
    similarity,
    text_near_value,
)

POST = (
    "Brothers, the caravan is leaving: join us before the month ends, the victory is near "
    "and the reward is great for those who answer the call today"
)
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def random_text(rng: random.Random, n: int = 30) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def true_jaccard(a: str, b: str) -> float:
    sa = set(shingle_hashes(normalize_text(a)).tolist())
    sb = set(shingle_hashes(normalize_text(b)).tolist())
    return len(sa & sb) / len(sa | sb)


def test_signal_is_registered_and_computes_a_compact_value() -> None:
    from prescreen.signals.registry import all_types

    assert "text_near" in all_types()
    signal = TextNearSignal()
    value = signal.compute(Upload(kind=ContentKind.text, text=POST))["text_near"]
    assert value.startswith("mh1:") and len(value) == 687
    assert signal.normalize(value) == value
    assert decode_signature(value).shape == (NUM_PERM,)


@pytest.mark.parametrize(
    "bad", ["", "mh1:", "mh1:" + "A" * 683 + "!", "mh2:" + "A" * 683, "x" * 687]
)
def test_invalid_values_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        TextNearSignal().normalize(bad)


def test_estimate_tracks_true_jaccard_and_survives_cosmetic_edits() -> None:
    edited = POST.upper().replace("today", "today!!! http://t.co/abc")
    assert similarity(text_near_value(POST), text_near_value(POST.upper() + "...")) == 1.0
    est = similarity(text_near_value(POST), text_near_value(edited))
    real = true_jaccard(POST, edited)
    assert abs(est - real) < 0.15 and est > 0.7
    assert similarity(text_near_value(POST), text_near_value("the weather is fine in Lyon")) < 0.1


def test_signatures_are_stable_across_processes() -> None:
    # The permutations come from a fixed seed; a change here would break every stored bank.
    assert text_near_value("hello world")[:24] == text_near_value("Hello, WORLD!")[:24]
    assert minhash("").tolist() == [0xFFFFFFFF] * NUM_PERM
    assert minhash("ab").shape == (NUM_PERM,)


def test_bank_threshold_semantics() -> None:
    signal = TextNearSignal()
    bank = SimpleNamespace(text_near_threshold=0.9)
    assert signal.threshold(bank) == 0.9
    assert signal.threshold(SimpleNamespace()) == 0.8
    assert signal.accepts(0.9, bank) and not signal.accepts(0.89, bank)
    assert signal.score_distance(0.83) == 17
    assert signal.score_detail(0.83333) == {"similarity": 0.833}


def brute_force(sigs: dict[int, np.ndarray], query: np.ndarray, floor: float) -> dict[int, float]:
    out = {}
    for i, s in sigs.items():
        sim = np.count_nonzero(s == query) / NUM_PERM
        if sim >= floor:
            out[i] = sim
    return out


def test_index_finds_near_duplicates_with_exact_scores() -> None:
    rng = random.Random(3)
    texts = [random_text(rng) for _ in range(300)]
    index = MinHashIndex(merge_threshold=64)  # exercise both the tail and the sorted part
    values = [text_near_value(t) for t in texts]
    for start in range(0, 300, 50):
        index.add(list(range(start, start + 50)), values[start : start + 50])
    assert len(index) == 300
    sigs = {i: decode_signature(v) for i, v in enumerate(values)}
    for k in range(40):
        words = texts[k].split()
        words[rng.randrange(len(words))] = "changed"
        query = text_near_value(" ".join(words))
        want = brute_force(sigs, decode_signature(query), 0.7)
        got = dict(index.search(query, 0))
        assert k in got
        for i, sim in want.items():
            assert got[i] == sim  # everything at >= 0.7 is found, with the same score


def test_index_add_replace_remove_and_compact() -> None:
    index = MinHashIndex(merge_threshold=4)
    a, b = text_near_value(POST), text_near_value("something else entirely, about cooking")
    index.add([1, 2], [a, b])
    assert [i for i, _ in index.search(a)] == [1]
    index.add([1], [b])  # re-adding an id replaces its value
    assert sorted(i for i, _ in index.search(b)) == [1, 2]
    assert index.search(a) == []
    index.remove([1, 2, 99])
    assert len(index) == 0 and index.search(b) == []
    index.add([5] * 0, [])
    for i in range(20):  # enough removals to trigger compaction
        index.add([100 + i], [a])
        index.remove([100 + i])
    index.add([7], [a])
    assert index.search(a) == [(7, 1.0)]
    with pytest.raises(InvalidInput):
        index.add([8], ["nope"])
    assert len(index) == 1


def test_index_is_safe_under_concurrent_reads_and_writes() -> None:
    rng = random.Random(5)
    index = MinHashIndex(merge_threshold=32)
    stable = [text_near_value(random_text(rng)) for _ in range(50)]
    index.add(list(range(50)), stable)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for i, value in enumerate(stable[:10]):
                    assert (i, 1.0) in index.search(value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    churn = [text_near_value(random_text(rng)) for _ in range(200)]
    for i, value in enumerate(churn):
        index.add([1000 + i], [value])
        if i % 3 == 0:
            index.remove([1000 + i])
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 50 + 200 - 67
