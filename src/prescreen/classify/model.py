"""The built-in text model: hashed word and character n-grams, TF-IDF, one linear head per label,
isotonic calibration. Saved as one `.npz` of plain arrays (read with `allow_pickle=False`), so
loading a model file can never run code.

File layout (every member a numpy array):
  meta          uint8   UTF-8 JSON: format, version, heads, feature settings, metrics
  feature_index int32   hashed feature ids kept at training time (document frequency >= min_df)
  idf           float32 their inverse document frequencies
  coef          float32 (heads, features) linear weights over the kept features
  intercept     float32 (heads,)
  cal_x_<i>     float32 isotonic calibration knots of head i (raw margin -> probability)
  cal_y_<i>     float32
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prescreen.classify.features import (
    CHAR_NGRAMS,
    N_FEATURES,
    WORD_NGRAMS,
    SparseRows,
    hashed_counts,
)
from prescreen.signals.text import normalize_for_model

FORMAT = "prescreen-text-model/1"
MAX_CHARS = 2000  # longer texts are scored on their first MAX_CHARS characters

_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\bpic\.twitter\.com/\S+|(?<!\w)@\w+|<user>|<url>|&amp;|&lt;|&gt;"
    r"|(?<!\w)rt(?=\s*:?\s)",
    re.IGNORECASE,
)


def prepare(text: str) -> str:
    """Model input: links, @mentions, retweet markers and HTML entities dropped, then
    `normalize_for_model` (NFKC, case, invisibles, homoglyphs, leetspeak, spacing)."""
    return normalize_for_model(_NOISE.sub(" ", text[:MAX_CHARS]))


def tfidf(counts: SparseRows, idf: np.ndarray) -> SparseRows:
    """Sub-linear TF times IDF (`idf` by column; 0 drops the feature), rows L2-normalised."""
    data = ((1.0 + np.log(counts.data)) * idf[counts.indices]).astype(np.float32)
    rows = counts.row_ids()
    norms = np.sqrt(np.bincount(rows, weights=data.astype(np.float64) ** 2,
                                minlength=counts.n_rows))  # fmt: skip
    norms[norms == 0] = 1.0
    data /= norms[rows].astype(np.float32)
    return SparseRows(counts.indptr, counts.indices, data).where(data != 0)


@dataclass
class TextModel:
    heads: list[str]
    feature_index: np.ndarray
    idf: np.ndarray
    coef: np.ndarray  # (heads, kept features)
    intercept: np.ndarray
    calibration: list[tuple[np.ndarray, np.ndarray]]
    meta: dict[str, Any] = field(default_factory=dict)
    _lookup: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unversioned"))

    def _kept(self, counts: SparseRows) -> SparseRows:
        """Counts over the model's kept features only (column i = feature_index[i]). A sorted
        lookup instead of dense (2**22 x heads) arrays keeps each process ~50 MB smaller."""
        if self._lookup is None:
            order = np.argsort(self.feature_index, kind="stable")
            self._lookup = (self.feature_index[order], order)
        ordered, order = self._lookup
        at = np.minimum(np.searchsorted(ordered, counts.indices), len(ordered) - 1)
        return counts.where(ordered[at] == counts.indices, indices=order[at])

    def margins(self, texts: Sequence[str]) -> np.ndarray:
        """(n, heads) uncalibrated linear scores."""
        x = tfidf(self._kept(hashed_counts([prepare(t) for t in texts])), self.idf)
        return x.dot(self.coef) + self.intercept[None, :]

    def calibrate(self, margins: np.ndarray) -> np.ndarray:
        out = np.empty_like(margins, dtype=np.float64)
        for i, (knots_x, knots_y) in enumerate(self.calibration):
            out[:, i] = np.interp(margins[:, i], knots_x, knots_y)
        return np.clip(out, 0.0, 1.0)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n, heads) calibrated probabilities."""
        if not len(texts):
            return np.zeros((0, len(self.heads)))
        return self.calibrate(self.margins(texts))

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probs = self.predict(texts)
        return [
            {head: round(float(p), 4) for head, p in zip(self.heads, row, strict=True)}
            for row in probs
        ]

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        meta = {**self.meta, "format": FORMAT, "heads": self.heads,
                "n_features": N_FEATURES, "word_ngrams": list(WORD_NGRAMS),
                "char_ngrams": list(CHAR_NGRAMS)}  # fmt: skip
        arrays: dict[str, np.ndarray] = {
            "feature_index": self.feature_index.astype(np.int32),
            "idf": self.idf.astype(np.float32),
            "coef": self.coef.astype(np.float32),
            "intercept": self.intercept.astype(np.float32),
        }
        for i, (knots_x, knots_y) in enumerate(self.calibration):
            arrays[f"cal_x_{i}"] = np.asarray(knots_x, dtype=np.float32)
            arrays[f"cal_y_{i}"] = np.asarray(knots_y, dtype=np.float32)
        digest = hashlib.sha256()
        for name in sorted(arrays):
            digest.update(name.encode() + arrays[name].tobytes())
        meta.setdefault("version", f"{meta.get('name', 'text')}-{digest.hexdigest()[:12]}")
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        Path(path).write_bytes(buffer.getvalue())
        self.meta = meta

    @classmethod
    def load(cls, path: str | Path) -> TextModel:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} file")
            if (
                meta.get("n_features") != N_FEATURES
                or tuple(meta.get("word_ngrams", ())) != WORD_NGRAMS
                or tuple(meta.get("char_ngrams", ())) != CHAR_NGRAMS
            ):
                raise ValueError(f"{path}: feature settings differ from this version's")
            heads = list(meta["heads"])
            return cls(
                heads=heads,
                feature_index=data["feature_index"].astype(np.int64),
                idf=data["idf"].astype(np.float32),
                coef=data["coef"].astype(np.float32),
                intercept=data["intercept"].astype(np.float32),
                calibration=[
                    (data[f"cal_x_{i}"].astype(np.float64), data[f"cal_y_{i}"].astype(np.float64))
                    for i in range(len(heads))
                ],
                meta=meta,
            )


def batched(items: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
