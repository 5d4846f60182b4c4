"""The annual transparency report of Regulation (EU) 2021/784 (TCO), Art. 7(3), computed from
what prescreen recorded: decisions, review cases, appeals, removal orders and the review
proceedings brought against them.

Terrorist content is what a decision names with a terrorism label (`terror…`, `gifct…`,
`violent_extremism…`, `extremism…`, the same families review maps to DSA
`KEYWORD_TERRORIST_CONTENT`) or what a removal order removed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.audit.service import record as audit_record
from prescreen.banks.models import Bank, BankEntry
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import InvalidInput, NotFound
from prescreen.legal.models import RemovalOrder
from prescreen.review.models import Appeal, ReviewDecision
from prescreen.screening.models import Decision
from prescreen.transparency.models import TcoProceeding
from prescreen.transparency.statements import decision_labels

TERROR_PREFIXES = ("terror", "gifct", "violent_extremism", "extremism")
MATCH_KINDS = ("bank_match", "bank_match_low_quality")


def is_terror_label(label: str) -> bool:
    return label.lower().startswith(TERROR_PREFIXES)


def is_terrorist(decision: Decision) -> bool:
    if any(r.get("kind") == "removal_order" for r in decision.reasons or []):
        return True
    return any(is_terror_label(label) for label in decision_labels(decision))


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _decisions(session: Session, start: datetime, end: datetime) -> list[Decision]:
    return list(
        session.scalars(
            select(Decision)
            .where(
                Decision.created_at >= start,
                Decision.created_at < end,
                Decision.outcome.in_(("hold", "block")),
            )
            .order_by(Decision.created_at)
        )
    )


def _terror_entries(session: Session, bank: Bank) -> int:
    """Entries labelled as terrorist content (entry labels, not the bank's: the bank that
    reviewers' decisions feed mixes labels)."""
    return sum(
        1
        for entry_labels in session.scalars(
            select(BankEntry.labels).where(BankEntry.bank_id == bank.id)
        )
        if any(is_terror_label(label) for label in entry_labels or [])
    )


def measures(session: Session, settings: Settings) -> dict[str, Any]:
    """Art. 7(3)(a): the measures in place to identify and remove terrorist content."""
    banks = session.scalars(
        select(Bank).where(Bank.enabled.is_(True), Bank.kind != "allow").order_by(Bank.name)
    )
    lists = [
        {"name": bank.name, "action": bank.kind, "source": bank.source, "entries": entries}
        for bank in banks
        if (entries := _terror_entries(session, bank))
    ]
    heads = (
        []
        if settings.classifier_policy == "off"
        else [f"terrorism text classifier (policy: {settings.classifier_policy})"]
    )
    return {
        "hash_lists": lists,
        "classifiers": heads,
        "human_review": (
            f"held content is reviewed by a person; terrorism cases have a "
            f"{settings.review_sla_high_hours:g}-hour target"
        ),
        "removal_orders": (
            f"removal orders are executed on a {settings.legal_removal_deadline_minutes:g}-minute "
            "clock; removed content is preserved for six months (Art. 6)"
        ),
    }


def _reappearance(session: Session, automatic: list[Decision]) -> dict[str, Any]:
    """Art. 7(3)(b): uploads stopped because they matched material identified before."""
    matched = [d for d in automatic if any(r.get("kind") in MATCH_KINDS for r in d.reasons or [])]
    entry_ids = {
        int(r["entry"])
        for d in matched
        for r in d.reasons or []
        if r.get("kind") in MATCH_KINDS and isinstance(r.get("entry"), int)
    }
    removed_here = set(
        session.scalars(
            select(BankEntry.id).where(BankEntry.id.in_(entry_ids), BankEntry.source == "review")
        )
    )
    return {
        "uploads_matched_known_material": len(matched),
        "blocked": sum(1 for d in matched if d.outcome == "block"),
        "held_for_review": sum(1 for d in matched if d.outcome == "hold"),
        "matched_material_removed_here_before": sum(
            1
            for d in matched
            if any(
                r.get("entry") in removed_here
                for r in d.reasons or []
                if r.get("kind") in MATCH_KINDS
            )
        ),
        "automated_tools": "perceptual and cryptographic hash matching (PDQ, vPDQ, MD5, "
        "SHA-256), rotated, mirrored and cropped variants, near-duplicate text",
    }


def _orders(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    orders = list(
        session.scalars(
            select(RemovalOrder).where(
                RemovalOrder.received_at >= start, RemovalOrder.received_at < end
            )
        )
    )
    not_executed = [o for o in orders if o.status in ("unable", "invalid", "received")]
    return {
        "received": len(orders),
        "items_removed": sum(
            1 for o in orders for item in o.items or [] if item.get("status") == "removed"
        ),
        "executed_within_one_hour": sum(
            1 for o in orders if o.executed_at is not None and o.executed_at <= o.deadline_at
        ),
        "not_executed": len(not_executed),
        "not_executed_reasons": [
            {
                "order": o.id,
                "status": o.status,
                "reason": o.unable_reason
                or ("the order failed validation" if o.status == "invalid" else "pending"),
            }
            for o in not_executed
        ],
    }


def _complaints(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Art. 7(3)(d) and (g): content providers' complaints (appeals) and reinstatements."""
    appeals = session.execute(
        select(Appeal, Decision)
        .join(Decision, Decision.id == Appeal.screening_decision_id)
        .where(Appeal.created_at >= start, Appeal.created_at < end)
    ).all()
    terror: list[Appeal] = []
    for appeal, decision in appeals:
        review = (
            session.get(ReviewDecision, appeal.review_decision_id)
            if appeal.review_decision_id
            else None
        )
        if is_terrorist(decision) or (review is not None and is_terror_label(review.label or "")):
            terror.append(appeal)
    outcomes = Counter(a.outcome or "pending" for a in terror)
    return {
        "complaints": len(terror),
        "outcomes": {k: outcomes.get(k, 0) for k in ("upheld", "reversed", "pending")},
        "reinstated_after_complaint": outcomes.get("reversed", 0),
    }


def _proceedings(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Art. 7(3)(e) and (f): administrative or judicial review the provider brought."""
    rows = list(
        session.scalars(
            select(TcoProceeding).where(
                TcoProceeding.brought_at >= start, TcoProceeding.brought_at < end
            )
        )
    )
    return {
        "brought": len(rows),
        "by_kind": dict(Counter(r.kind for r in rows)),
        "outcomes": dict(Counter(r.outcome for r in rows)),
        "reinstated_after_proceedings": sum(1 for r in rows if r.reinstated),
    }


def tco_report(
    session: Session, settings: Settings, start: datetime, end: datetime
) -> dict[str, Any]:
    """Every Art. 7(3) item for decisions, appeals and orders in [start, end)."""
    terror = [d for d in _decisions(session, start, end) if is_terrorist(d)]
    automatic = [d for d in terror if d.automated and d.outcome in ("hold", "block")]
    by_order = {d.content_pk for d in terror if d.policy_version == "removal-order"}
    removed_otherwise = {
        d.content_pk for d in terror if d.outcome == "block" and d.policy_version != "removal-order"
    } - by_order
    orders = _orders(session, start, end)
    complaints = _complaints(session, start, end)
    proceedings = _proceedings(session, start, end)
    return {
        "regulation": "Regulation (EU) 2021/784, Article 7(3)",
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "a_measures": measures(session, settings),
        "b_reappearance": _reappearance(session, automatic),
        "c_removed_or_disabled": {
            "following_removal_orders": len(by_order),
            "following_specific_measures": len(removed_otherwise),
            "held_for_review": len({d.content_pk for d in automatic if d.outcome == "hold"}),
            "removal_orders": orders,
        },
        "d_complaints": {
            "complaints": complaints["complaints"],
            "outcomes": complaints["outcomes"],
        },
        "e_review_proceedings": {
            "brought": proceedings["brought"],
            "by_kind": proceedings["by_kind"],
            "outcomes": proceedings["outcomes"],
        },
        "f_reinstatements_after_proceedings": proceedings["reinstated_after_proceedings"],
        "g_reinstatements_after_complaints": complaints["reinstated_after_complaint"],
    }


# ---------------------------------------------------------------------------------------------
# Review proceedings against removal orders (Art. 9), for items (e) and (f)

PROCEEDING_KINDS = ("administrative", "judicial")
PROCEEDING_OUTCOMES = ("pending", "upheld", "annulled", "withdrawn")


def record_proceeding(
    session: Session,
    actor: str,
    order_id: str,
    kind: str,
    brought_at: datetime | None = None,
    note: str = "",
) -> TcoProceeding:
    """The provider brought a review of a removal order before an authority or a court."""
    if session.get(RemovalOrder, order_id) is None:
        raise NotFound(f"no removal order {order_id!r}")
    if kind not in PROCEEDING_KINDS:
        raise InvalidInput(f"kind must be one of {list(PROCEEDING_KINDS)}")
    row = TcoProceeding(
        id=str(uuid.uuid4()),
        order_id=order_id,
        kind=kind,
        brought_at=brought_at or utcnow(),
        outcome="pending",
        reinstated=False,
        note=note,
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit_record(
        session, actor, "transparency.proceeding.record", f"removal_order:{order_id}",
        {"proceeding": row.id, "kind": kind},
    )  # fmt: skip
    return row


def decide_proceeding(
    session: Session, actor: str, proceeding_id: str, outcome: str, reinstated: bool
) -> TcoProceeding:
    """Its outcome, and whether the removed content had to be reinstated."""
    row = session.get(TcoProceeding, proceeding_id)
    if row is None:
        raise NotFound(f"no proceeding {proceeding_id!r}")
    if outcome not in PROCEEDING_OUTCOMES:
        raise InvalidInput(f"outcome must be one of {list(PROCEEDING_OUTCOMES)}")
    if reinstated and outcome != "annulled":
        raise InvalidInput("content is reinstated only when the order is annulled")
    row.outcome, row.reinstated = outcome, reinstated
    row.decided_at = None if outcome == "pending" else utcnow()
    audit_record(
        session, actor, "transparency.proceeding.decide", f"removal_order:{row.order_id}",
        {"proceeding": row.id, "outcome": outcome, "reinstated": reinstated},
    )  # fmt: skip
    session.flush()
    return row


def proceeding_to_dict(row: TcoProceeding) -> dict[str, Any]:
    return {
        "id": row.id,
        "order_id": row.order_id,
        "kind": row.kind,
        "brought_at": row.brought_at.isoformat(),
        "outcome": row.outcome,
        "reinstated": row.reinstated,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "note": row.note,
    }
