"""Policy: from matches to allow / hold / block, with a reason for every step."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prescreen.matching.service import Match

POLICY_VERSION = "1"
EXCHANGE_HOLD = "exchange_hold"  # set on matches that exchange says must be held for review


class Outcome(StrEnum):
    allow = "allow"
    hold = "hold"
    block = "block"


SEVERITY = {Outcome.allow: 0, Outcome.hold: 1, Outcome.block: 2}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: list[dict[str, Any]]


def decide(
    matches: list[Match],
    pdq_quality: int | None,
    min_pdq_quality: int,
    uploader_reasons: list[dict[str, Any]] | None = None,
    classifier_reasons: list[dict[str, Any]] | None = None,
) -> Verdict:
    """An allow-list match wins over everything; otherwise the strictest bank action wins.

    A PDQ match on a low-quality image (flat, tiny, mostly blank) is weak evidence, so it can
    hold for review but never block by itself. Classifier heads act at their thresholds.
    Reasons about the uploader (e.g. a repeat offender) hold what would otherwise be allowed.
    """
    allow = [m for m in matches if m.bank_kind == "allow" and not m.detail.get(EXCHANGE_HOLD)]
    if allow:
        return Verdict(Outcome.allow, [_reason(m, "allow_list", Outcome.allow) for m in allow])
    reasons, outcome = [], Outcome.allow
    for match in matches:
        action = Outcome(match.bank_kind)
        kind = "bank_match"
        quality = match.detail.get("quality", pdq_quality)  # of the variant that matched
        low_quality = quality is not None and quality < min_pdq_quality
        if match.signal_type == "pdq" and low_quality and action is Outcome.block:
            action, kind = Outcome.hold, "bank_match_low_quality"
        if match.detail.get(EXCHANGE_HOLD) and action is not Outcome.allow:
            # a review-trusted peer's entry, or a quarantined one: a person decides
            action, kind = Outcome.hold, "bank_match_held"
        reasons.append(_reason(match, kind, action))
        if SEVERITY[action] > SEVERITY[outcome]:
            outcome = action
    for reason in classifier_reasons or []:
        reasons.append(reason)
        action = Outcome(reason["action"])
        if SEVERITY[action] > SEVERITY[outcome]:
            outcome = action
    for reason in uploader_reasons or []:
        reasons.append({**reason, "action": Outcome.hold.value})
        if outcome is Outcome.allow:
            outcome = Outcome.hold
    return Verdict(outcome, reasons or [{"kind": "no_match"}])


def _reason(match: Match, kind: str, action: Outcome) -> dict[str, Any]:
    return {
        "kind": kind,
        "action": action.value,
        "bank": match.bank,
        "entry": match.entry,
        "label": match.label,
        "labels": match.labels,
        "signal_type": match.signal_type,
        "distance": match.distance,
        "threshold": match.threshold,
        **match.detail,
    }
