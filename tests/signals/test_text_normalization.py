# ruff: noqa: RUF001, RUF003 (look-alike and non-Latin letters are the point of these tests)
"""Text normalisation (every text path uses it) and language detection."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from prescreen.signals.text import (
    _INVISIBLE_RE,
    detect_language,
    normalize_for_model,
    normalize_text,
    text_hash,
)


def test_every_format_character_is_removed() -> None:
    missing = [
        hex(cp) for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) == "Cf" and not _INVISIBLE_RE.match(chr(cp))
    ]  # fmt: skip
    assert missing == []
    assert normalize_text("a\u200bb\u2060c\ufeffd\u00ade") == "abcde"


@pytest.mark.parametrize(
    "variant",
    [
        "K1LL the inf1d3ls",  # leetspeak inside words
        "k\u200bill the infidels",  # zero-width
        "kіll thе іnfidels",  # Cyrillic і and е
        "ＫＩＬＬ　ｔｈｅ　ｉｎｆｉｄｅｌｓ",  # full-width
        "k i l l   the   i.n.f.i.d.e.l.s!!!",  # letter spacing, punctuation runs
        "ki\u0336ll the infidels",  # stray combining mark
    ],
)
def test_evasions_fold_to_the_same_text(variant: str) -> None:
    assert normalize_text(variant) == "kill the infidels"


def test_leetspeak_only_inside_letter_runs_so_numbers_survive() -> None:
    assert normalize_text("Attack on 5 May 2015, covid19, 4chan") == (
        "attack on 5 may 2015 covid19 4chan"
    )
    assert text_hash("meet at 5") != text_hash("meet at s")
    assert normalize_text("ca$h j1h4d") == "cash jihad"
    # The classifier path also folds word edges; the hash path does not.
    assert normalize_text("4ttack h3ll0") == "4ttack hell0"
    assert normalize_for_model("4ttack h3ll0") == "attack hello"


def test_genuine_cyrillic_and_greek_text_is_not_folded_to_latin() -> None:
    assert normalize_text("Нет войне") == "нет войне"
    assert normalize_text("Καλημέρα κόσμε") == "καλημέρα κόσμε"
    assert text_hash("Нет войне") != text_hash("het boйhe")
    # ...but look-alikes in a Latin text are
    assert normalize_text("ѕо what") == "so what"


@pytest.mark.parametrize(
    "lang,text",
    [
        ("en", "The attack was condemned by the government on Tuesday and the police said more"),
        ("fr", "L'attaque a été condamnée par le gouvernement, selon les enquêteurs de la police"),
        ("de", "Der Anschlag wurde von der Regierung verurteilt und die Polizei ermittelt noch"),
        ("es", "El ataque fue condenado por el gobierno y la policía sigue investigando"),
        ("tr", "Saldırı hükümet tarafından kınandı ve polis soruşturmayı sürdürüyor, bu önemli"),
        ("ru", "Нападение было осуждено правительством, и полиция продолжает расследование"),
        ("ar", "أدانت الحكومة الهجوم في هذا اليوم وقالت الشرطة إن التحقيق مستمر"),
        ("fa", "دولت این حمله را محکوم کرد و پلیس می گوید که تحقیقات ادامه دارد"),
        ("ur", "حکومت نے حملے کی مذمت کی ہے اور پولیس کا کہنا ہے کہ تحقیقات جاری ہیں"),
        ("it", "L'attacco è stato condannato dal governo e la polizia indaga ancora su questo"),
        ("zh", "北京是中国的首都"),
        ("ja", "東京は日本の首都です"),
        ("el", "Η επίθεση καταδικάστηκε από την κυβέρνηση"),
        ("he", "הממשלה גינתה את הפיגוע"),
    ],
)
def test_detect_language(lang: str, text: str) -> None:
    assert detect_language(text) == lang


def test_detect_language_undetermined() -> None:
    assert detect_language("") == "und"
    assert detect_language("1234 !!! https://example.com @someone") == "und"
    assert detect_language("xq zv") == "und"


def test_normalisation_is_fast_enough_for_the_classifier() -> None:
    import time

    text = "Brothers, join the caravan of the khilafah today https://t.co/x #IS " * 4
    start = time.perf_counter()
    for _ in range(200):
        normalize_for_model(text)
    assert (time.perf_counter() - start) / 200 < 0.005
