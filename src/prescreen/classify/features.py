"""Hashed word and character n-gram counts, computed as scikit-learn's `HashingVectorizer`
computes them (the word analyzer with `(?u)\\b\\w+\\b` tokens and 1-2-grams, the `char_wb`
analyzer with 2-5-grams; each n-gram's UTF-8 bytes hashed with signed 32-bit MurmurHash3,
seed 0, into |h| mod `N_FEATURES`), without importing scikit-learn or SciPy.

Why not the vectorizer itself: every server process scores text with a linear model, and
importing scikit-learn and SciPy for its feature hashing alone cost the server ~50 MB. Here the
n-grams are never built as strings: they are spans of one UTF-8 buffer per batch, hashed by a
compiled kernel. `tests/classify/test_classify_features.py` checks the counts against
scikit-learn's, feature for feature.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

N_FEATURES = 1 << 21  # per analyzer; character features follow the word features
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
TOKEN = re.compile(r"(?u)\b\w+\b")
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class SparseRows:
    """Rows of a sparse matrix in CSR form: row i holds `indices[indptr[i]:indptr[i+1]]`
    (columns) with `data` (values)."""

    indptr: np.ndarray  # int64, rows + 1
    indices: np.ndarray  # int64
    data: np.ndarray  # float32

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> np.ndarray:
        """The row of each stored value."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def where(self, keep: np.ndarray, indices: np.ndarray | None = None) -> SparseRows:
        """The values where `keep` holds, optionally with new column indices."""
        counts = np.bincount(self.row_ids()[keep], minlength=self.n_rows)
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        columns = self.indices if indices is None else indices
        return SparseRows(indptr, columns[keep], self.data[keep])

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """(rows, k) products with `weights` of shape (k, columns)."""
        rows = self.row_ids()
        out = np.empty((self.n_rows, weights.shape[0]), dtype=np.float64)
        for k, column_weights in enumerate(weights):
            contributions = self.data * column_weights[self.indices]
            out[:, k] = np.bincount(rows, weights=contributions, minlength=self.n_rows)
        return out


def hashed_counts(texts: Sequence[str]) -> SparseRows:
    """Term counts of each text over the joint hashed space: word n-grams in
    [0, N_FEATURES), character n-grams in [N_FEATURES, 2 N_FEATURES); columns sorted."""
    token_text: list[str] = []
    word_text: list[str] = []
    token_lengths: list[int] = []
    token_rows: list[int] = []
    word_lengths: list[int] = []
    word_rows: list[int] = []
    for row, text in enumerate(texts):
        tokens = TOKEN.findall(text)
        words = text.split()  # what the char_wb analyzer's whitespace runs and split() leave
        # Every token is followed by one space, so two tokens of a row are the span of their
        # bigram, as the word analyzer joins it; every word is padded with a space each side.
        token_text.extend(f"{token} " for token in tokens)
        word_text.extend(f" {word} " for word in words)
        token_lengths.extend(map(len, tokens))
        token_rows.extend([row] * len(tokens))
        word_lengths.extend(len(word) + 2 for word in words)
        word_rows.extend([row] * len(words))
    utf8, byte_at = _utf8_with_offsets("".join(token_text) + "".join(word_text))
    lengths = np.array(token_lengths + word_lengths, dtype=np.int64)
    strides = lengths.copy()
    strides[: len(token_lengths)] += 1  # the space after each token
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(strides[:-1], out=starts[1:])
    keys = _hash_ngrams(
        utf8, byte_at, starts, lengths, np.array(token_rows + word_rows, dtype=np.int64),
        len(token_lengths), N_FEATURES, WORD_NGRAMS[1], CHAR_NGRAMS[0], CHAR_NGRAMS[1],
    )  # fmt: skip
    keys, counts = np.unique(keys, return_counts=True)
    rows, columns = np.divmod(keys, 2 * N_FEATURES)
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(texts)), out=indptr[1:])
    return SparseRows(indptr, columns, counts.astype(np.float32))


def _utf8_with_offsets(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of `text` and the byte offset of each of its characters (plus the end).
    Raises UnicodeEncodeError on a lone surrogate, as encoding it for the vectorizer would."""
    utf8 = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    byte_at = np.zeros(len(text) + 1, dtype=np.int64)
    if len(utf8) == len(text):  # ASCII: one byte per character
        byte_at[1:] = np.arange(1, len(text) + 1)
    else:
        code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        widths = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
        np.cumsum(widths, out=byte_at[1:])
    return utf8, byte_at


@njit(cache=True, nogil=True)
def _murmur3_32(data: np.ndarray, start: int, end: int) -> int:
    """MurmurHash3 x86_32 of data[start:end], seed 0, as a signed 32-bit value."""
    h = np.uint64(0)
    length = end - start
    position = start
    for _ in range(length // 4):
        k = (np.uint64(data[position]) | (np.uint64(data[position + 1]) << np.uint64(8))
             | (np.uint64(data[position + 2]) << np.uint64(16))
             | (np.uint64(data[position + 3]) << np.uint64(24)))  # fmt: skip
        h ^= _mix_block(k)
        h = ((h << np.uint64(13)) | (h >> np.uint64(19))) & np.uint64(_MASK)
        h = (h * np.uint64(5) + np.uint64(0xE6546B64)) & np.uint64(_MASK)
        position += 4
    tail = length & 3
    k = np.uint64(0)
    if tail == 3:
        k ^= np.uint64(data[position + 2]) << np.uint64(16)
    if tail >= 2:
        k ^= np.uint64(data[position + 1]) << np.uint64(8)
    if tail >= 1:
        k ^= np.uint64(data[position])
        h ^= _mix_block(k)
    h ^= np.uint64(length)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(_MASK)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(_MASK)
    h ^= h >> np.uint64(16)
    signed = np.int64(h)
    return signed - (1 << 32) if signed >= (1 << 31) else signed


@njit(cache=True, nogil=True, inline="always")
def _mix_block(k: np.uint64) -> np.uint64:
    k = (k * np.uint64(0xCC9E2D51)) & np.uint64(_MASK)
    k = ((k << np.uint64(15)) | (k >> np.uint64(17))) & np.uint64(_MASK)
    return (k * np.uint64(0x1B873593)) & np.uint64(_MASK)


@njit(cache=True, nogil=True, inline="always")
def _column(h: int, n_features: int) -> int:
    if h == -(1 << 31):  # as the vectorizer defines |-2**31| mod n
        return ((1 << 31) - 1 - (n_features - 1)) % n_features
    return abs(h) % n_features


@njit(cache=True, nogil=True)
def _hash_ngrams(utf8, byte_at, starts, lengths, rows, n_tokens, n_features,
                 max_words, min_chars, max_chars):  # fmt: skip
    """row * 2 n_features + column for every n-gram: pieces [0, n_tokens) are tokens (word
    n-grams up to `max_words` long, of consecutive tokens of one row), the rest padded words
    (character n-grams, as the char_wb analyzer cuts them: a word shorter than n gives one
    n-gram, itself, and no longer ones)."""
    capacity = n_tokens * max_words
    for piece in range(n_tokens, len(starts)):
        capacity += (max_chars - min_chars + 1) * lengths[piece]
    keys = np.empty(capacity, dtype=np.int64)
    width = 2 * n_features
    count = 0
    for piece in range(n_tokens):
        first = starts[piece]
        for n in range(max_words):
            last = piece + n
            if last >= n_tokens or rows[last] != rows[piece]:
                break
            end = starts[last] + lengths[last]
            h = _murmur3_32(utf8, byte_at[first], byte_at[end])
            keys[count] = rows[piece] * width + _column(h, n_features)
            count += 1
    for piece in range(n_tokens, len(starts)):
        first = starts[piece]
        size = lengths[piece]
        for n in range(min_chars, max_chars + 1):
            grams = max(1, size - n + 1)
            for offset in range(grams):
                end = min(first + offset + n, first + size)
                h = _murmur3_32(utf8, byte_at[first + offset], byte_at[end])
                keys[count] = rows[piece] * width + n_features + _column(h, n_features)
                count += 1
            if size <= n:
                break
    return keys[:count]
