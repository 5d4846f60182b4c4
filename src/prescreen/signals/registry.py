"""Registry of signal types. Built-ins register on import; plug-ins via the
`prescreen.signal_types` entry-point group (each entry point names a SignalType subclass)."""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from typing import Any, TypeVar

from prescreen.core.errors import InvalidInput
from prescreen.signals.base import SignalType, Upload

log = logging.getLogger(__name__)
_REGISTRY: dict[str, SignalType] = {}
_plugins_loaded = False


class _Loading(threading.local):
    active = False


_loading = threading.RLock()
_loading_now = _Loading()
T = TypeVar("T", bound=type[SignalType])


def register(cls: T) -> T:
    """Class decorator: make a signal type available by its name."""
    _REGISTRY[cls.name] = cls()
    return cls


def _load_plugins() -> None:
    """Register the built-in types and entry-point plug-ins, once. Request threads may ask at the
    same moment: the others wait until every type is registered (a half-filled registry would
    call "pdq" unknown); the loading thread itself may re-enter while importing."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    with _loading:
        if _plugins_loaded or _loading_now.active:
            return
        _loading_now.active = True
        try:
            from prescreen.signals import builtin  # noqa: F401  (registers the built-in types)

            for ep in entry_points(group="prescreen.signal_types"):
                try:
                    register(ep.load())
                except Exception:
                    log.exception("could not load signal type plug-in", extra={"plugin": ep.name})
            _plugins_loaded = True
        finally:
            _loading_now.active = False


def all_types() -> dict[str, SignalType]:
    _load_plugins()
    return dict(_REGISTRY)


def index_kind(name: str) -> str:
    """How signals of this type are indexed; "exact" for a type no longer registered (its
    stored values can still be matched as they are)."""
    _load_plugins()
    found = _REGISTRY.get(name)
    return found.index_kind if found is not None else "exact"


def get(name: str) -> SignalType:
    _load_plugins()
    found = _REGISTRY.get(name)  # no copy: imports call this once per line
    if found is None:
        known = sorted(_REGISTRY)
        raise InvalidInput(f"unknown signal type {name!r}", known=known, signal_type=name)
    return found


def compute_signals(upload: Upload) -> dict[str, Any]:
    """Every registered signal for this upload's kind, in registration order."""
    signals: dict[str, Any] = {}
    for signal_type in all_types().values():
        if upload.kind in signal_type.kinds:
            signals.update(signal_type.compute(upload))
    return signals


def normalize_signals(raw: dict[str, str]) -> dict[str, str]:
    """Validate user-given `{type: value}` pairs; unknown types or bad values raise InvalidInput."""
    if not raw:
        raise InvalidInput("no signals given")
    return {name: get(name).normalize(value) for name, value in raw.items()}
