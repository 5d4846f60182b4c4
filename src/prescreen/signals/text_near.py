"""Near-duplicate text signal: MinHash over character shingles of the normalised text.

The exact `text` signal catches a re-post that differs only cosmetically; `text_near` also
catches one with words added, dropped or changed (a new link, a different call to action, a
typo). Each bank sets the Jaccard similarity a text must reach (`text_near_threshold`, 0..1,
default 0.8); the index returns the estimated similarity as the score.

Shingles are the overlapping 5-character windows of `normalize_text(text)` (spaces included),
so the signal works for any script and for texts of a few words. A text shorter than one
shingle is a single shingle; an empty text has the empty set's signature (all values 2**32-1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prescreen.matching.minhash_index import (
    NUM_PERM,
    decode_signature,
    encode_signature,
    jaccard_estimate,
    mix64,
)
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register
from prescreen.signals.text import normalize_text

SHINGLE = 5
DEFAULT_THRESHOLD = 0.8
_SEED = 0x7E47_4E45_4152  # fixed: signatures must be comparable across processes and releases
_rng = np.random.default_rng(_SEED)
# Permutation i maps a 64-bit shingle hash x to the top 32 bits of (A[i] * x + B[i]) mod 2**64.
_A = _rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_POW = np.array([mix64(np.array([k + 1], dtype=np.uint64))[0] for k in range(SHINGLE)])
_EMPTY = np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint32)
_CHUNK = 4096  # shingles per block, bounds memory for long texts


def shingle_hashes(normalized: str) -> np.ndarray:
    """64-bit hashes of the distinct `SHINGLE`-character windows of an already normalised text."""
    if not normalized:
        return np.zeros(0, dtype=np.uint64)
    cps = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) < SHINGLE:
        cps = np.concatenate([cps, np.zeros(SHINGLE - len(cps), dtype=np.uint64)])
    n = len(cps) - SHINGLE + 1
    acc = np.zeros(n, dtype=np.uint64)
    for k in range(SHINGLE):
        acc = acc + cps[k : k + n] * _POW[k]
    return np.unique(mix64(acc))


def minhash(normalized: str) -> np.ndarray:
    """The uint32 MinHash signature of an already normalised text."""
    hashes = shingle_hashes(normalized)
    if not len(hashes):
        return _EMPTY.copy()
    sig = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    for start in range(0, len(hashes), _CHUNK):
        block = hashes[start : start + _CHUNK]
        values = (block[:, None] * _A[None, :] + _B[None, :]) >> np.uint64(32)
        np.minimum(sig, values.min(axis=0), out=sig)
    return sig.astype(np.uint32)


def text_near_value(text: str) -> str:
    """The encoded `text_near` signal of a raw text."""
    return encode_signature(minhash(normalize_text(text)))


def similarity(a: str, b: str) -> float:
    """Estimated Jaccard similarity of two encoded signals."""
    return jaccard_estimate(decode_signature(a), decode_signature(b))


@register
class TextNearSignal(SignalType):
    """MinHash of the normalised text's character 5-grams, matched by Jaccard similarity."""

    name = "text_near"
    kinds = frozenset({ContentKind.text})
    index_kind = "minhash"

    def compute(self, upload: Upload) -> dict[str, Any]:
        return {"text_near": text_near_value(upload.text or "")}

    def normalize(self, value: str) -> str:
        return encode_signature(decode_signature(value))

    def distance(self, a: str, b: str) -> int:
        return self.score_distance(similarity(a, b))

    def threshold(self, bank: Any) -> float:  # type: ignore[override]
        value = getattr(bank, "text_near_threshold", None)
        return DEFAULT_THRESHOLD if value is None else float(value)

    def accepts(self, score: Any, bank: Any) -> bool:
        return float(score) >= self.threshold(bank)

    def score_distance(self, score: Any) -> int:
        return round((1 - float(score)) * 100)

    def score_detail(self, score: Any) -> dict[str, Any]:
        return {"similarity": round(float(score), 3)}
