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
# Every format (Cf) character of Unicode 15.1 as ranges, so removal is one regex pass;
# tests check the table against the running Python's `unicodedata`.
_FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
_INVISIBLE_RE = re.compile(
    "["
    + "".join(re.escape(ch) for ch in sorted(_INVISIBLE))
    + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in _FORMAT_RANGES)
    + "]"
)

# Combining marks stacked on Latin, Greek or Cyrillic letters ("zalgo" text) and Arabic short
# vowels and tatweel: they change the bytes, not the words. NFKC has already composed accented
# letters such as "é" into one code point, so those survive.
_STRAY_MARKS = re.compile(
    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]"
)

# Latin look-alikes from Cyrillic and Greek (lower case, after case folding).
_HOMOGLYPH_MAP = {
    "а": "a", "в": "b", "с": "c", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "ѕ": "s", "т": "t", "у": "y", "х": "x",
    "ԁ": "d", "ɡ": "g", "ӏ": "l", "ԛ": "q", "ԝ": "w",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
}  # fmt: skip
_HOMOGLYPHS = str.maketrans(_HOMOGLYPH_MAP)
_CONFUSABLE = frozenset(_HOMOGLYPH_MAP)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

# Leetspeak: digits and symbols standing in for letters.
_LEET_MAP = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
             "$": "s"}  # fmt: skip
_LEET = str.maketrans(_LEET_MAP)
# Only a short run of leet characters with a letter on BOTH sides is folded ("k1ll", "j1h4d",
# "ca$h"). Numbers ("2015", "covid19", "4chan", "a 4 b") keep their digits, so the exact text
# hash still tells "attack on 5 may" from "attack on s may" and keeps dates, counts and ids.
_LEET_INNER = re.compile(r"[^\W\d_][0134578@$]{1,3}(?=[^\W\d_])", re.UNICODE)
# Classifier-only extension: a whole word made of letters and leet characters, with at least
# one letter, is folded ("4ttack", "h473", "1t"). Too lossy for the hash (it would fold "abc1" or
# "mp3"), fine for scoring. Words holding 2, 6 or 9 are numbers or names ("b2b", "covid19").
_LEET_WORD = re.compile(r"(?<![\w@$])(?=[\w@$]*[^\W\d_])[\w@$]*[0134578@$][\w@$]*(?![\w@$])",
                        re.UNICODE)  # fmt: skip
_NOT_LEET_DIGIT = re.compile(r"[269]")


def _fold_leet_word(match: re.Match[str]) -> str:
    word = match.group(0)
    return word if _NOT_LEET_DIGIT.search(word) else word.translate(_LEET)


# Letter-spacing evasion: three or more single letters separated by one space or mark
# ("k i l l", "k.i.l.l") are joined back into a word.
_SPACED = re.compile(r"(?<!\w)(?:[^\W\d_][ .\-_*]){2,}[^\W\d_](?!\w)", re.UNICODE)
_SPACED_SEP = re.compile(r"[ .\-_*]")

_RUNS = re.compile(r"[\W_]+", re.UNICODE)


def _is_latin(ch: str) -> bool:
    return ch.isascii() or "\u00c0" <= ch <= "\u024f" or "\u1e00" <= ch <= "\u1eff"


def _fold_homoglyphs(text: str) -> str:
    """Fold Cyrillic/Greek look-alikes in Latin words, never in genuinely Cyrillic or Greek text.

    A word is folded when it mixes Latin letters with look-alikes ("join" spelt with a Cyrillic
    o), or when it is made only of look-alikes in a text that is mostly Latin. Russian or Greek
    words in Russian or Greek text are left alone, so those languages keep distinct hashes.
    """
    if _CONFUSABLE.isdisjoint(text):
        return text
    words = _WORD.findall(text)
    latin = sum(1 for w in words for ch in w if _is_latin(ch))
    other = sum(len(w) for w in words) - latin
    latin_text = latin > other

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        if _CONFUSABLE.isdisjoint(word):
            return word
        has_latin = any(_is_latin(ch) for ch in word)
        if has_latin or (latin_text and all(ch in _CONFUSABLE for ch in word)):
            return word.translate(_HOMOGLYPHS)
        return word

    return _WORD.sub(fold, text)


def _join_spaced(match: re.Match[str]) -> str:
    return _SPACED_SEP.sub("", match.group(0))


def normalize_text(text: str) -> str:
    """The canonical form every text path uses (exact hash, near-duplicate hash, classifiers).

    In order: Unicode NFKC and case folding; invisible characters (format characters such as
    zero-width spaces and joiners, soft hyphens, fillers) and stray combining marks removed;
    Cyrillic/Greek look-alikes folded to Latin inside Latin words; leetspeak folded where a digit
    or `@`/`$` sits between letters; letter-spaced words joined; every run of whitespace,
    punctuation and symbols collapsed to one space.
    """
    return _normalize(text, leet_edges=False)


def normalize_for_model(text: str) -> str:
    """`normalize_text` plus leetspeak folded at word edges too: for classifiers, not hashes."""
    return _normalize(text, leet_edges=True)


def _fold_leet(match: re.Match[str]) -> str:
    return match.group(0).translate(_LEET)


def _normalize(text: str, leet_edges: bool) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _INVISIBLE_RE.sub("", text)
    text = _STRAY_MARKS.sub("", text)
    text = unicodedata.normalize("NFKC", _fold_homoglyphs(text))
    text = _LEET_INNER.sub(_fold_leet, text)
    if leet_edges:
        text = _LEET_WORD.sub(_fold_leet_word, text)
    text = _SPACED.sub(_join_spaced, text)
    return _RUNS.sub(" ", text).strip()


# --- language detection --------------------------------------------------------------------
# Script first, then, within a script shared by several languages, the share of each language's
# most frequent function words (plus a few letters only one of them uses).


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the of and to in is that it for was on are with as be this by at not have from or they "
        "we you he she but his her an will would there their what about which when has been who "
        "were can i my me do no so if our all just"
    ),
    "fr": _words(
        "le la les des de du un une et est dans que qui pour pas sur au aux avec ce cette il elle "
        "ils nous vous sont par plus ne se en mais ou son sa ses leur été être je tu on y à très "
        "comme"
    ),
    "de": _words(
        "der die das und ist nicht ein eine einen dem den des zu mit sich auf für von im auch es "
        "sie er wir ihr sind war wurde werden aus bei nach wie noch nur oder aber dass ich du "
        "kein keine über"
    ),
    "es": _words(
        "el la los las de del y que en un una es por con para no se su sus al lo como más pero "
        "fue son está ha este esta ser hay muy también entre sobre sin ya yo"
    ),
    "it": _words(
        "il lo la gli le di del della che è e un una per non con sono nel nella alla questo "
        "questa anche come più ma ha ho si sul dei degli"
    ),
    "pt": _words(
        "o a os as de do da dos das e que em um uma é para com não por se no na mais como mas foi "
        "ao ele ela são está também muito isso"
    ),
    "nl": _words(
        "de het een en van is dat op te in niet zijn met voor er maar ook als aan door bij wordt "
        "werd dit deze hij zij wij ze"
    ),
    "tr": _words(
        "ve bir bu da de için ile olarak çok daha ama gibi ne o şu olan değil mi kadar sonra ya "
        "her en bunu ben sen biz onlar var yok ise diye"
    ),
    "id": _words(
        "yang dan di ini itu dengan untuk dari dalam tidak akan pada juga ke ada oleh karena saya "
        "kami mereka sudah"
    ),
    "ar": _words(
        "في من على إلى عن أن إن التي الذي هذا هذه مع كان لا ما هو هي قد لم كل بعد ذلك عند بين حتى "
        "أو ثم لقد الله"
    ),
    "fa": _words(
        "است این که را از به با برای در های ها می نمی شد شده بود آن یک هم تا کرد کنند نیست ما شما "
        "او"
    ),
    "ur": _words("ہے کے کی میں سے کو اور یہ نہیں ہیں تھا تھی وہ پر کا ہو گا گے بھی ایک اس"),
    "ru": _words(
        "и в не на что с по это как он она они мы вы из за у же от для так но был была были "
        "только все его ее уже или бы если да нет"
    ),
    "uk": _words(
        "і в не на що з по це як він вона вони ми ви із за у же від для так але був була тільки "
        "все його її вже або якщо та"
    ),
}
# Letters (after case folding) that point strongly at one language of a shared script.
_MARKER_LETTERS: dict[str, str] = {
    "ñ": "es", "¿": "es", "¡": "es", "ß": "de", "ä": "de", "ö": "de", "ü": "de",
    "ç": "fr", "è": "fr", "ê": "fr", "à": "fr", "ù": "fr", "œ": "fr", "ë": "fr",
    "ı": "tr", "ğ": "tr", "ş": "tr", "ã": "pt", "õ": "pt",
    "ٹ": "ur", "ڈ": "ur", "ڑ": "ur", "ں": "ur", "ے": "ur", "ہ": "ur", "ھ": "ur",
    "پ": "fa", "ژ": "fa", "گ": "fa", "چ": "fa", "ی": "fa", "ک": "fa",
    "ة": "ar", "ي": "ar", "ك": "ar", "ى": "ar",
    "і": "uk", "ї": "uk", "є": "uk", "ґ": "uk", "ы": "ru", "э": "ru", "ъ": "ru", "ё": "ru",
}  # fmt: skip
_SCRIPT_LANGS = {
    "latin": ("en", "fr", "de", "es", "it", "pt", "nl", "tr", "id"),
    "arabic": ("ar", "fa", "ur"),
    "cyrillic": ("ru", "uk"),
}
# Scripts used (almost) only by one language.
_SINGLE_SCRIPT = {
    "greek": "el", "hebrew": "he", "devanagari": "hi", "bengali": "bn", "thai": "th",
    "hangul": "ko", "kana": "ja", "han": "zh", "georgian": "ka", "armenian": "hy",
    "ethiopic": "am", "gurmukhi": "pa", "tamil": "ta",
}  # fmt: skip
_SCRIPT_RANGES = (
    (0x0041, 0x024F, "latin"), (0x1E00, 0x1EFF, "latin"), (0x0370, 0x03FF, "greek"),
    (0x1F00, 0x1FFF, "greek"), (0x0400, 0x052F, "cyrillic"), (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"), (0x0600, 0x06FF, "arabic"), (0x0750, 0x077F, "arabic"),
    (0xFB50, 0xFDFF, "arabic"), (0xFE70, 0xFEFF, "arabic"), (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bengali"), (0x0A00, 0x0A7F, "gurmukhi"), (0x0B80, 0x0BFF, "tamil"),
    (0x0E00, 0x0E7F, "thai"), (0x10A0, 0x10FF, "georgian"), (0x1200, 0x137F, "ethiopic"),
    (0x3040, 0x30FF, "kana"), (0x4E00, 0x9FFF, "han"), (0x3400, 0x4DBF, "han"),
    (0xAC00, 0xD7AF, "hangul"), (0x1100, 0x11FF, "hangul"),
)  # fmt: skip
_URLISH = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|<user>|<url>", re.IGNORECASE)


def _script(ch: str) -> str | None:
    code = ord(ch)
    for low, high, name in _SCRIPT_RANGES:
        if low <= code <= high:
            return name
    return None


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, or "und" when there is too little to tell.

    A compact script-and-function-word detector: the dominant writing system decides alone where
    one language owns it (Greek, Hebrew, Hangul...), and among the languages sharing Latin, Arabic
    or Cyrillic script the one whose most common function words and distinctive letters occur
    most wins. Covers en, fr, de, es, it, pt, nl, tr, id, ar, fa, ur, ru, uk by vocabulary and
    el, he, hi, bn, th, ko, ja, zh, ka, hy, am, pa, ta by script. Links, mentions and hashtags are
    ignored. Short or mixed texts can be wrong; a text with no letters is "und".
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _URLISH.sub(" ", text)
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            script = _script(ch)
            if script is not None:
                counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "und"
    if counts.get("kana") and counts.get("han"):
        counts["kana"] += counts.pop("han")  # Japanese mixes kanji with kana
    script = max(counts, key=counts.__getitem__)
    if script in _SINGLE_SCRIPT:
        return _SINGLE_SCRIPT[script]
    candidates = _SCRIPT_LANGS[script]
    scores = dict.fromkeys(candidates, 0.0)
    words = _WORD.findall(text)
    for word in words:
        for lang in candidates:
            if word in _STOPWORDS[lang]:
                scores[lang] += 1.0
    for ch in text:
        lang = _MARKER_LETTERS.get(ch)
        if lang in scores:
            scores[lang] += 0.5
    best = max(candidates, key=lambda lang: (scores[lang], -candidates.index(lang)))
    if scores[best] == 0:
        # Arabic or Cyrillic script without any evidence: the script's main language.
        return candidates[0] if script != "latin" and len(words) >= 1 else "und"
    return best


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
