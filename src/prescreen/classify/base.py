"""The classifier plug-in interface and its registry.

A classifier has a `name`, the `heads` it scores (e.g. `("terrorism", "hate")`), a `version`
that goes into every decision's reasons, and `score(texts)` returning one `{head: score 0..1}`
dict per text. Anything with those four members is a classifier (structural typing); subclass
`BaseClassifier` for a head start.

Plug-ins are found through the Python entry-point group `prescreen.classifiers`. An entry point
may name a classifier instance, a class (instantiated without arguments) or a factory function
(called without arguments)::

    [project.entry-points."prescreen.classifiers"]
    my-model = "my_package.moderation:MyClassifier"

A classifier that cannot answer right now (remote endpoint down, circuit open) raises
`ClassifierUnavailable`; `safe_score` turns that, and any other failure, into a result with
status `"unavailable"` so screening can go on without it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "prescreen.classifiers"


class ClassifierUnavailable(Exception):
    """The classifier cannot score now; callers should carry on without its scores."""


@runtime_checkable
class Classifier(Protocol):
    name: str
    heads: Sequence[str]
    version: str

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One `{head: probability 0..1}` per text, in order."""
        ...


class BaseClassifier(ABC):
    """Convenience base: set `name`, `heads` and `version`, implement `score`."""

    name: str = "classifier"
    heads: Sequence[str] = ()
    version: str = "0"

    @abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, float]]: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version} heads={list(self.heads)}>"


@dataclass
class ScoreResult:
    classifier: str
    version: str
    status: Literal["ok", "unavailable"]
    scores: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"classifier": self.classifier, "version": self.version, "status": self.status,
                "scores": self.scores, "error": self.error}  # fmt: skip


def safe_score(classifier: Classifier, texts: Sequence[str]) -> ScoreResult:
    """Score, never raise: a failing or unavailable classifier gives status "unavailable"."""
    try:
        scores = classifier.score(list(texts))
        if len(scores) != len(texts):
            raise ValueError(f"{len(scores)} results for {len(texts)} texts")
        return ScoreResult(classifier.name, classifier.version, "ok", scores)
    except ClassifierUnavailable as exc:
        return ScoreResult(classifier.name, classifier.version, "unavailable", error=str(exc))
    except Exception as exc:  # a plug-in's bug must not break screening
        log.exception("classifier failed", extra={"classifier": classifier.name})
        return ScoreResult(
            classifier.name, classifier.version, "unavailable", error=type(exc).__name__
        )


def is_classifier(obj: Any) -> bool:
    return (
        isinstance(getattr(obj, "name", None), str)
        and isinstance(getattr(obj, "version", None), str)
        and getattr(obj, "heads", None) is not None
        and callable(getattr(obj, "score", None))
    )


# --- registry ------------------------------------------------------------------------------------

_lock = threading.Lock()
_registry: dict[str, Classifier] = {}
_plugins_loaded = False


def register(classifier: Classifier) -> Classifier:
    """Make a classifier available by its name (replacing one of the same name)."""
    if not is_classifier(classifier):
        raise TypeError(f"{classifier!r} lacks name, heads, version or score")
    with _lock:
        _registry[classifier.name] = classifier
    return classifier


def _instantiate(obj: Any) -> Classifier:
    if is_classifier(obj) and not isinstance(obj, type):
        return obj
    if callable(obj):
        made = obj()
        if is_classifier(made):
            return made
    raise TypeError(f"{obj!r} is not a classifier, classifier class or factory")


def load_plugins(force: bool = False) -> None:
    """Load every `prescreen.classifiers` entry point once; a broken plug-in is logged, skipped."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return
        _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(_instantiate(ep.load()))
        except Exception:
            log.exception("could not load classifier plug-in", extra={"plugin": ep.name})


def all_classifiers() -> dict[str, Classifier]:
    """The built-in default model plus every plug-in, by name."""
    from prescreen.classify.service import default_classifier

    load_plugins()
    with _lock:
        found = dict(_registry)
    found.setdefault(default_classifier().name, default_classifier())
    return found


def get(name: str) -> Classifier:
    classifiers = all_classifiers()
    if name not in classifiers:
        raise KeyError(f"unknown classifier {name!r}; known: {sorted(classifiers)}")
    return classifiers[name]


def unregister(name: str) -> None:
    with _lock:
        _registry.pop(name, None)


Factory = Callable[[], Classifier]
