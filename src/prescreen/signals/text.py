"""Text normalisation and the exact normalised-text signal.

Re-posted propaganda is edited just enough to dodge exact matching: full-width letters, zero-width
joiners, Cyrillic look-alikes, odd spacing and punctuation. Normalising first folds those away, so
one bank entry catches the whole family.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from prescreen.core.errors import InvalidInput
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register

# Characters that render as nothing; category Cf covers most, these are the usual extras.
_INVISIBLE = {"\u00ad", "\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}

# Latin look-alikes from Cyrillic and Greek (lower case, after case folding).
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "с": "c", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
        "м": "m", "н": "h", "о": "o", "р": "p", "ѕ": "s", "т": "t", "у": "y", "х": "x",
        "ԁ": "d", "ɡ": "g", "ӏ": "l", "ԛ": "q", "ԝ": "w",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    }
)  # fmt: skip

_RUNS = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """NFKC, case-fold, drop invisibles, fold homoglyphs, collapse punctuation/space runs."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if ch not in _INVISIBLE and unicodedata.category(ch) != "Cf")
    text = unicodedata.normalize("NFKC", text.translate(_HOMOGLYPHS))
    return _RUNS.sub(" ", text).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


@register
class TextSignal(SignalType):
    """SHA-256 of the normalised text: exact matching that survives cosmetic edits."""

    name = "text"
    kinds = frozenset({ContentKind.text})

    def compute(self, upload: Upload) -> dict[str, Any]:
        return {"text": text_hash(upload.text or "")}

    def normalize(self, value: str) -> str:
        value = str(value).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise InvalidInput(
                "a text signal is the 64-hex SHA-256 of the normalised text "
                "(use the `text` field to screen raw text)",
                signal_type="text",
            )
        return value
