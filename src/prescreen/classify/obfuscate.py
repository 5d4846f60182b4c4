"""Evasions a poster uses to slip text past filters, for robustness tests and evaluation."""

from __future__ import annotations

import random

_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і"}  # noqa: RUF001
_ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def leetspeak(text: str, rng: random.Random, rate: float = 0.5) -> str:
    return "".join(
        _LEET[ch.lower()] if ch.lower() in _LEET and rng.random() < rate else ch for ch in text
    )


def homoglyphs(text: str, rng: random.Random, rate: float = 0.5) -> str:
    return "".join(
        _HOMOGLYPHS[ch] if ch in _HOMOGLYPHS and rng.random() < rate else ch for ch in text
    )


def zero_width(text: str, rng: random.Random, rate: float = 0.3) -> str:
    return "".join(
        ch + rng.choice(_ZERO_WIDTH) if ch.isalpha() and rng.random() < rate else ch for ch in text
    )


def spacing(text: str, rng: random.Random, rate: float = 0.3) -> str:
    """Spell some words letter by letter ("k i l l") and double some spaces."""
    words = []
    for word in text.split(" "):
        if word.isalpha() and len(word) >= 3 and rng.random() < rate:
            word = " ".join(word)
        elif rng.random() < rate:
            word = word + " "
        words.append(word)
    return " ".join(words)


def case_noise(text: str, rng: random.Random, rate: float = 0.5) -> str:
    return "".join(ch.upper() if rng.random() < rate else ch for ch in text)


OBFUSCATIONS = {
    "leetspeak": leetspeak,
    "homoglyphs": homoglyphs,
    "zero_width": zero_width,
    "spacing": spacing,
}


def obfuscate(text: str, kind: str, seed: int = 0) -> str:
    """One evasion by name, or "all" for every one in turn (plus random case)."""
    rng = random.Random(seed)
    if kind == "all":
        for fn in (leetspeak, homoglyphs, spacing, zero_width, case_noise):
            text = fn(text, rng)
        return text
    return OBFUSCATIONS[kind](text, rng)
