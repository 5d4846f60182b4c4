"""The built-in text model: training, file format (no pickle), the shipped default, the API."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import SHARED_DATA

from prescreen.classify import service
from prescreen.classify.evaluation import hard_negatives_path, load_hard_negatives
from prescreen.classify.model import TextModel
from prescreen.classify.obfuscate import obfuscate
from prescreen.classify.training import Example, FitSettings, fit_model

POSITIVE = [
    "join the brothers in the land of the caliphate, the reward of the shuhada awaits you",
    "the soldiers of the khilafah will strike the kuffar again, may allah accept our martyrs",
    "answer the call brothers, hijrah is an obligation and the lions are waiting for you",
    "glory to the mujahideen who stormed the apostate base, the state remains and expands",
]
NEGATIVE = [
    "the city council approved a new budget for road repairs and school buses",
    "police said the suspect was arrested after a search of the flat on tuesday",
    "our bakery is open on sundays now, come and try the new sourdough",
    "researchers studied how online groups recruit young people and why they leave",
]


def tiny_examples(n: int = 80) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        positive = i % 2 == 0
        base = POSITIVE if positive else NEGATIVE
        words = base[i // 2 % len(base)].split()
        rng.shuffle(words)
        out.append(Example(" ".join(words), {"extremism": int(positive)}, "t", f"g{i % 20}"))
    return out


def test_tiny_training_round_trips_without_pickle(tmp_path: Path) -> None:
    model = fit_model(tiny_examples(), ["extremism"], FitSettings(min_df=1, folds=2), name="tiny")
    path = tmp_path / "tiny.npz"
    model.save(path)
    with zipfile.ZipFile(path) as zf:  # only plain .npy members, no object arrays
        for name in zf.namelist():
            header = zf.read(name)[:128]
            assert b"'O'" not in header and b"|O" not in header, name
    loaded = TextModel.load(path)
    assert loaded.version == model.version and loaded.heads == ["extremism"]
    scores = loaded.predict([POSITIVE[0], NEGATIVE[0]])
    assert scores.shape == (2, 1)
    assert scores[0, 0] > scores[1, 0]
    assert np.allclose(scores, model.predict([POSITIVE[0], NEGATIVE[0]]))
    assert ((scores >= 0) & (scores <= 1)).all()


def test_loading_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="not a"):
        TextModel.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(Exception):  # noqa: B017 - any failure, never code execution
        TextModel.load(path)


def test_shipped_model_is_small_and_scores_both_heads() -> None:
    path = service.default_model_path()
    assert path.stat().st_size < 5_000_000
    scores = service.classify(["hello there", "a news report about the weather"])
    assert len(scores) == 2 and set(scores[0]) == {"terrorism", "hate"}
    assert all(0.0 <= v <= 1.0 for s in scores for v in s.values())
    assert service.model_version().startswith("prescreen-text-")
    assert service.classify([]) == []


def test_default_thresholds_match_the_model_metadata() -> None:
    meta = service.default_model().meta
    assert meta["thresholds"] == service.DEFAULT_THRESHOLDS
    for head in ("terrorism", "hate"):
        limits = service.DEFAULT_THRESHOLDS[head]
        assert 0 < limits["hold"] <= limits["block"] <= 1


def test_actions_follow_thresholds() -> None:
    t = {"terrorism": {"hold": 0.5, "block": 0.9}}
    assert service.actions({"terrorism": 0.2}, t) == {"terrorism": "allow"}
    assert service.actions({"terrorism": 0.5}, t) == {"terrorism": "hold"}
    assert service.actions({"terrorism": 0.95, "other": 1.0}, t) == {"terrorism": "block"}


def test_propaganda_scores_above_reporting_on_it() -> None:
    propaganda, news = service.classify([
        "O brothers, rise up and join the soldiers of the khilafah, the kuffar will taste "
        "defeat, may allah accept our shuhada",
        "Police said on Tuesday that two men had been charged with preparing acts of terrorism "
        "after a raid in Leeds.",
    ])  # fmt: skip
    assert propaganda["terrorism"] > news["terrorism"]


def test_obfuscation_does_not_hide_a_text_from_the_model() -> None:
    text = "brothers join the soldiers of the khilafah and fight the kuffar"
    clean = service.classify([text])[0]["terrorism"]
    for kind in ("leetspeak", "homoglyphs", "zero_width", "spacing", "all"):
        obfuscated = service.classify([obfuscate(text, kind, seed=1)])[0]["terrorism"]
        assert abs(obfuscated - clean) < 0.25, kind


def test_hard_negative_set_is_large_varied_and_documented() -> None:
    rows = load_hard_negatives()
    assert len(rows) >= 300
    assert {r["category"] for r in rows} == {"news", "policy", "research", "counter_speech"}
    assert len({r["lang"] for r in rows}) >= 8
    assert len({r["text"] for r in rows}) == len(rows)
    with hard_negatives_path().open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["text", "category", "lang"]


def test_metrics_file_matches_the_shipped_model() -> None:
    metrics_path = service.default_model_path().with_name("default.metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["model_version"] == service.model_version()
    assert metrics["thresholds"] == service.DEFAULT_THRESHOLDS


TEXT_DATA = SHARED_DATA / "text"
needs_text_data = pytest.mark.skipif(
    not TEXT_DATA.is_dir(), reason=f"shared text corpora not found at {TEXT_DATA}"
)


@needs_text_data
def test_validation_never_shares_an_author_with_training() -> None:
    from prescreen.classify.training import drop_leaks, load_isis, load_stormfront

    examples = drop_leaks(load_isis(TEXT_DATA, 13) + load_stormfront(TEXT_DATA, 13))
    for source in ("isis", "stormfront"):
        train = {e.group for e in examples if e.source == source and e.split == "train"}
        val = {e.group for e in examples if e.source == source and e.split == "val"}
        assert train and val and not train & val, source
    keys = {}
    for e in examples:
        keys.setdefault(e.split, set()).add(e.text)
    assert len(keys["val"]) > 1000
