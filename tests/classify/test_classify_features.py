"""The text model's n-gram features, computed without scikit-learn, are scikit-learn's
HashingVectorizer features exactly: a model trained with either scores the same."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from prescreen.classify.features import CHAR_NGRAMS, N_FEATURES, WORD_NGRAMS, hashed_counts
from prescreen.classify.model import prepare

TEXTS = [
    "",
    " ",
    "a",
    "ab c",
    "to be or not to be, that is the question",
    "join the brothers in the land of the caliphate",
    "ÄÖ ü  日本語のテキスト  mixed",  # two- and three-byte characters
    "🙂🙂 emoji 🙂 a🙂b \U0001d518\U0001d52b",  # four-byte characters
    "\t\n  spaced   out\x1c sep\u3000ideographic\u2029para",  # whitespace str.split knows
    "١٢٣ مرحبا بالعالم، هذا نص عربي",
    "x\u200by zero\u00a0width nbsp",
    "I" * 2000,
    "under_score snake_case CamelCase 1234 3.14",
]


def sklearn_counts(texts: list[str]) -> sparse.csr_matrix:
    common = {"n_features": N_FEATURES, "alternate_sign": False, "norm": None,
              "lowercase": False, "dtype": np.float32}  # fmt: skip
    words = HashingVectorizer(
        analyzer="word", ngram_range=WORD_NGRAMS, token_pattern=r"(?u)\b\w+\b", **common
    )
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, **common)
    counts = sparse.hstack([words.transform(texts), chars.transform(texts)], format="csr")
    counts.sum_duplicates()
    counts.sort_indices()
    return counts


@pytest.mark.parametrize("prepared", [False, True], ids=["raw", "prepared"])
def test_counts_equal_scikit_learns_feature_for_feature(prepared: bool) -> None:
    rng = np.random.default_rng(3)
    alphabet = list("abcdefghij klmnop  ,.!é日🙂\u0627\u0644")
    texts = TEXTS + ["".join(rng.choice(alphabet, size=rng.integers(0, 300))) for _ in range(300)]
    if prepared:
        texts = [prepare(text) for text in texts]
    expected = sklearn_counts(texts)
    ours = hashed_counts(texts)
    assert np.array_equal(ours.indptr, expected.indptr)
    assert np.array_equal(ours.indices, expected.indices)
    assert np.array_equal(ours.data, expected.data)


def test_a_lone_surrogate_fails_as_encoding_it_would() -> None:
    with pytest.raises(UnicodeEncodeError):
        hashed_counts(["broken \ud800 text"])


def test_scoring_text_imports_neither_scikit_learn_nor_scipy_sparse() -> None:
    """Every server process scores text; those libraries cost each ~50 MB it would not use."""
    code = (
        "import sys\n"
        "from prescreen.classify.service import classify\n"
        "assert classify(['join the brothers'])[0]['terrorism'] > 0.5\n"
        "loaded = [m for m in ('sklearn', 'scipy.sparse') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
