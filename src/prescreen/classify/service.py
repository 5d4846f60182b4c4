"""The default text classifier as the rest of prescreen uses it.

`classify(texts)` gives one `{"terrorism": p, "hate": p}` per text (calibrated probabilities,
0..1), `model_version()` names the model for decision reasons, and `DEFAULT_THRESHOLDS` holds
the default policy's per-head hold and block thresholds, chosen on validation data (see
docs/model-card.md). Set `PRESCREEN_TEXT_MODEL` to a model file made by
`prescreen classify train` to use another model.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from prescreen.classify.base import BaseClassifier
from prescreen.classify.model import TextModel, batched

MODEL_ENV = "PRESCREEN_TEXT_MODEL"
HEADS = ("terrorism", "hate")
# Hold: highest recall at precision >= 0.90 on account-disjoint validation (terrorism) / best
# mean macro-F1 over HateXplain and user-disjoint Stormfront validation (hate). Block: precision
# >= 0.98 (terrorism) / >= 0.95 (hate) on the same sets. Written by scripts/train_text_model.py
# into the model's metadata too; a test checks the two agree.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "terrorism": {"hold": 0.371, "block": 0.8282},
    "hate": {"hold": 0.45, "block": 0.9167},
}
BATCH = 1024

_lock = threading.Lock()
_model: TextModel | None = None
_classifier: DefaultClassifier | None = None


def default_model_path() -> Path:
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override)
    return Path(str(files("prescreen.classify") / "models" / "default.npz"))


def load_model(path: str | Path | None = None) -> TextModel:
    """A model file (default: the shipped one); plain arrays only, nothing is unpickled."""
    return TextModel.load(path or default_model_path())


def default_model() -> TextModel:
    global _model
    with _lock:
        if _model is None:
            _model = load_model()
        return _model


class DefaultClassifier(BaseClassifier):
    """The shipped TF-IDF + linear model as a `Classifier`."""

    def __init__(self, model: TextModel) -> None:
        self.model = model
        self.name = "prescreen-text"
        self.heads = tuple(model.heads)
        self.version = model.version

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for chunk in batched(texts, BATCH):
            out.extend(self.model.score(chunk))
        return out


def default_classifier() -> DefaultClassifier:
    global _classifier
    model = default_model()
    with _lock:
        if _classifier is None or _classifier.model is not model:
            _classifier = DefaultClassifier(model)
        return _classifier


def classify(texts: list[str]) -> list[dict[str, float]]:
    """Calibrated scores 0..1 per head for each text, in order."""
    return default_classifier().score(texts)


def model_version() -> str:
    return default_model().version


def actions(scores: dict[str, float], thresholds: dict[str, dict[str, float]] | None = None
            ) -> dict[str, str]:  # fmt: skip
    """Per head, what the default policy does with a score: "allow", "hold" or "block"."""
    thresholds = thresholds or DEFAULT_THRESHOLDS
    out = {}
    for head, score in scores.items():
        limits = thresholds.get(head)
        if limits is None:
            continue
        out[head] = (
            "block" if score >= limits["block"] else "hold" if score >= limits["hold"] else "allow"
        )
    return out


def reset() -> None:
    """Forget the loaded model (tests, or after changing PRESCREEN_TEXT_MODEL)."""
    global _model, _classifier
    with _lock:
        _model = None
        _classifier = None
