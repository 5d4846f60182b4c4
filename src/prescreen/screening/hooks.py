"""Extension points around a screening decision, so other domains (review, strikes, exchange
statistics) react to decisions without screening knowing them.

- An *uploader check* runs before policy; a reason it returns makes the content at least held
  (e.g. a repeat offender's uploads go to review).
- A *decision listener* runs after the decision is stored, in the same transaction (e.g. a held
  upload opens a review case); it gets the upload's bytes when the request carried them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from prescreen.screening.models import Content, Decision


@dataclass
class Screened:
    content: Content
    decision: Decision
    media: bytes | None = None
    media_type: str | None = None


UploaderCheck = Callable[[Session, str], dict[str, Any] | None]
DecisionListener = Callable[[Session, Screened], None]
_checks: list[UploaderCheck] = []
_listeners: list[DecisionListener] = []


def uploader_check(fn: UploaderCheck) -> UploaderCheck:
    _checks.append(fn)
    return fn


def decision_listener(fn: DecisionListener) -> DecisionListener:
    _listeners.append(fn)
    return fn


def check_uploader(session: Session, user_id: str | None) -> list[dict[str, Any]]:
    if not user_id:
        return []
    return [reason for check in _checks if (reason := check(session, user_id))]


def announce(session: Session, screened: Screened) -> None:
    for listener in _listeners:
        listener(session, screened)
