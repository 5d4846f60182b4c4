"""Statements of reasons for every restrictive decision, and their DSA Transparency Database form.

Review writes the statement of a human decision (`prescreen.review.service.statement_for`). This
module writes the others with the same table and the same label-to-category mapping: automatic
screening decisions (`hold`, `block`) through a screening decision listener, in the screening
transaction, and decisions made elsewhere (removal orders) by `ensure_statements`, which every
reader of statements runs first. A decision carries its statement's id from the moment it is
made, so the id the platform was given always resolves.

The DSA form holds no personal data: no user id, no notifier identity; `puid` is built from the
platform's content id and the statement id.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prescreen.core.db import utcnow
from prescreen.core.errors import InvalidInput, NotFound
from prescreen.review.models import StatementOfReasons
from prescreen.review.service import CATEGORY, CONTENT_TYPES, ILLEGAL, is_csam_label, labels_of
from prescreen.screening.hooks import Screened, decision_listener
from prescreen.screening.models import Content, Decision
from prescreen.transparency.jsonschema import Checker

SCHEMA_PATH = Path(__file__).resolve().parent / "templates" / "dsa_statements.schema.json"
BATCH_SIZE = 100  # POST /api/v1/statements takes at most 100 statements per call
RESTRICTIVE = ("hold", "block")
EEA = [
    *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE"),
    *("IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO"),
]
LEGAL_GROUNDS = {
    "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL": (
        "Directive 2011/93/EU, Article 5 (offences concerning child sexual abuse material), "
        "as transposed in national criminal law"
    ),
    "KEYWORD_TERRORIST_CONTENT": (
        "Regulation (EU) 2021/784, Article 2(7) (terrorist content); Directive (EU) 2017/541, "
        "Articles 5 and 21"
    ),
    "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING": (
        "Directive (EU) 2024/1385, Article 5 (non-consensual sharing of intimate material)"
    ),
}
REDRESS = {
    "internal_complaint": (
        "You may appeal this decision through the platform; a different reviewer decides it "
        "(DSA Art. 20)."
    ),
    "out_of_court_settlement": "You may refer the dispute to a certified out-of-court "
    "dispute settlement body (DSA Art. 21).",
    "judicial_redress": "You may challenge the decision before the courts.",
}
PUID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------------------------
# Writing statements


def decision_labels(decision: Decision) -> list[str]:
    """Labels from bank matches, plus the heads of classifiers that acted."""
    labels = labels_of(decision)
    for reason in decision.reasons or []:
        head = reason.get("head")
        if reason.get("kind") == "classifier" and isinstance(head, str) and head not in labels:
            labels.append(head)
    return labels


def classify(labels: list[str]) -> tuple[str, str | None, bool]:
    """(DSA category, category keyword, illegal?) for the strongest label that maps."""
    for label in labels:
        for test, category, keyword in CATEGORY:
            if test(label):
                return category, keyword, label.startswith(ILLEGAL) or is_csam_label(label)
    return "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", None, False


def _removal_reason(decision: Decision) -> dict[str, Any] | None:
    return next((r for r in decision.reasons or [] if r.get("kind") == "removal_order"), None)


def _automatic_facts(decision: Decision) -> list[str]:
    facts = []
    for reason in decision.reasons or []:
        kind = reason.get("kind")
        if kind in ("bank_match", "bank_match_low_quality"):
            facts.append(
                f"The {reason.get('signal_type')} hash of the content matched an entry of the "
                f"{reason.get('bank')!r} list of known {reason.get('label') or 'violating'} "
                f"content (distance {reason.get('distance')}, threshold {reason.get('threshold')})."
            )
        elif kind == "classifier":
            facts.append(
                f"The {reason.get('head')} text classifier scored it {reason.get('score')} "
                f"(model {reason.get('model_version')}), at or above the {reason.get('action')} "
                "threshold."
            )
        elif kind == "repeat_offender":
            facts.append(
                "The account had repeated confirmed violations in the recent past, so its "
                "uploads are checked by a person first."
            )
    if decision.outcome == "hold":
        facts.append("The content is withheld from publication until a reviewer decides.")
    else:
        facts.append("The content was not published.")
    return facts


def _statement_fields(decision: Decision, content: Content) -> dict[str, Any]:
    order = _removal_reason(decision)
    if order is not None:
        return {
            "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
            "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
            "ground_explanation": (
                f"Removal order {order.get('reference')} issued by {order.get('authority')} "
                f"({order.get('jurisdiction')}) under {order.get('legal_basis')}."
            ),
            "category": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
            "category_specification": ["KEYWORD_TERRORIST_CONTENT"],
            "decision_facts": (
                f"A competent authority ({order.get('authority')}, {order.get('jurisdiction')}) "
                "ordered the removal of this content as terrorist content; it was removed in "
                "all Member States."
            ),
            "source_type": "SOURCE_TYPE_OTHER_NOTIFICATION",
            "automated_detection": False,
            "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        }
    labels = decision_labels(decision)
    category, keyword, illegal = classify(labels)
    named = ", ".join(labels) if labels else "the platform's content policy"
    return {
        "decision_visibility": [
            "DECISION_VISIBILITY_CONTENT_REMOVED"
            if decision.outcome == "block"
            else "DECISION_VISIBILITY_CONTENT_DISABLED"
        ],
        "decision_ground": (
            "DECISION_GROUND_ILLEGAL_CONTENT" if illegal else "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        ),
        "ground_explanation": f"Detected automatically as {named}.",
        "category": category,
        "category_specification": [keyword] if keyword else [],
        "decision_facts": " ".join(_automatic_facts(decision))[:5000],
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": bool(decision.automated),
        "automated_decision": (
            "AUTOMATED_DECISION_FULLY" if decision.automated else "AUTOMATED_DECISION_NOT_AUTOMATED"
        ),
    }


def write_statement(session: Session, decision: Decision, content: Content) -> StatementOfReasons:
    """The statement of reasons of a restrictive decision that review did not make."""
    if decision.statement_of_reasons_id is None:
        decision.statement_of_reasons_id = str(uuid.uuid4())
    sor = StatementOfReasons(
        id=decision.statement_of_reasons_id,
        content_pk=content.id,
        decision_id=decision.id,
        user_id=content.user_id,
        content_type=[CONTENT_TYPES.get(content.kind, "CONTENT_TYPE_OTHER")],
        content_date=content.created_at.date(),
        application_date=decision.created_at.date(),
        created_at=utcnow(),
        **_statement_fields(decision, content),
    )
    session.add(sor)
    session.flush()
    return sor


@decision_listener
def state_reasons_for_screening(session: Session, screened: Screened) -> None:
    """Every automatic hold or block gets its statement in the screening transaction."""
    if screened.decision.outcome in RESTRICTIVE:
        write_statement(session, screened.decision, screened.content)


def ensure_statements(session: Session) -> int:
    """Write the statements still missing (decisions made outside screening and review, such
    as removal orders); returns how many were written."""
    missing = session.execute(
        select(Decision, Content)
        .join(Content, Content.id == Decision.content_pk)
        .outerjoin(StatementOfReasons, StatementOfReasons.id == Decision.statement_of_reasons_id)
        .where(Decision.outcome.in_(RESTRICTIVE), StatementOfReasons.id.is_(None))
        .order_by(Decision.created_at)
    ).all()
    written = 0
    for decision, content in missing:
        try:
            with session.begin_nested():  # another reader may be writing the same one
                write_statement(session, decision, content)
            written += 1
        except IntegrityError:
            continue
    return written


# ---------------------------------------------------------------------------------------------
# Reading statements


def statements_between(
    session: Session, start: datetime | None = None, end: datetime | None = None
) -> list[StatementOfReasons]:
    """Statements of the decisions made in [start, end), oldest first."""
    ensure_statements(session)
    decided = func.coalesce(Decision.created_at, StatementOfReasons.created_at)
    query = (
        select(StatementOfReasons)
        .outerjoin(Decision, Decision.id == StatementOfReasons.decision_id)
        .order_by(decided, StatementOfReasons.id)
    )
    if start is not None:
        query = query.where(decided >= start)
    if end is not None:
        query = query.where(decided < end)
    return list(session.scalars(query))


def get_statement(
    session: Session, statement_id: str, owner_key_id: str | None = None, everyone: bool = True
) -> StatementOfReasons:
    """One statement; another key's content is as unknown as a missing statement."""
    sor = session.get(StatementOfReasons, statement_id)
    if sor is None:
        ensure_statements(session)
        sor = session.get(StatementOfReasons, statement_id)
    if sor is not None and not everyone:
        content = session.get(Content, sor.content_pk)
        if content is not None and content.owner_key_id not in (None, owner_key_id):
            sor = None
    if sor is None:
        raise NotFound(f"no statement of reasons {statement_id!r}")
    return sor


def statements_for_content(
    session: Session, content_id: str, owner_key_id: str | None = None, everyone: bool = True
) -> list[StatementOfReasons]:
    content = session.scalar(select(Content).where(Content.content_id == content_id))
    if content is None or (not everyone and content.owner_key_id not in (None, owner_key_id)):
        raise NotFound(f"no content {content_id!r}")
    ensure_statements(session)
    return list(
        session.scalars(
            select(StatementOfReasons)
            .where(StatementOfReasons.content_pk == content.id)
            .order_by(StatementOfReasons.created_at)
        )
    )


def puid(content: Content, sor: StatementOfReasons) -> str:
    """The platform's content id made safe for the database, made unique per statement."""
    base = PUID_UNSAFE.sub("_", content.content_id or content.id).strip("_") or "content"
    return f"{base[:400]}-{sor.id}"


def _language(content: Content) -> str | None:
    locale = str((content.meta or {}).get("locale") or "")
    code = re.split(r"[-_]", locale, maxsplit=1)[0]
    return code.upper() if re.fullmatch(r"[A-Za-z]{2}", code) else None


def _legal_ground(sor: StatementOfReasons, decision: Decision | None) -> str:
    order = _removal_reason(decision) if decision is not None else None
    if order is not None and order.get("legal_basis"):
        return str(order["legal_basis"])[:500]
    for keyword in sor.category_specification or []:
        if keyword in LEGAL_GROUNDS:
            return LEGAL_GROUNDS[keyword]
    return "The criminal law of the Member States where the content would be available"


def dsa_statement(session: Session, sor: StatementOfReasons) -> dict[str, Any]:
    """The statement in the Transparency Database's submission format (API schema v2)."""
    content = session.get(Content, sor.content_pk)
    assert content is not None
    decision = session.get(Decision, sor.decision_id) if sor.decision_id else None
    explanation = (sor.ground_explanation or sor.decision_facts or "See the facts.")[:2000]
    record: dict[str, Any] = {
        "decision_visibility": list(sor.decision_visibility),
        "decision_ground": sor.decision_ground,
    }
    if sor.decision_ground == "DECISION_GROUND_ILLEGAL_CONTENT":
        record["illegal_content_legal_ground"] = _legal_ground(sor, decision)
        record["illegal_content_explanation"] = explanation
    else:
        record["incompatible_content_ground"] = "The platform's terms of service"
        record["incompatible_content_explanation"] = explanation
    record["content_type"] = list(sor.content_type)
    if "CONTENT_TYPE_OTHER" in sor.content_type:
        record["content_type_other"] = {"url": "link"}.get(content.kind, content.kind or "other")
    record["category"] = sor.category
    if sor.category_specification:
        record["category_specification"] = list(sor.category_specification)
    record["territorial_scope"] = list(EEA)
    if language := _language(content):
        record["content_language"] = language
    record |= {
        "content_date": sor.content_date.isoformat(),
        "application_date": sor.application_date.isoformat(),
        "decision_facts": sor.decision_facts or explanation,
        "source_type": sor.source_type,
        "automated_detection": "Yes" if sor.automated_detection else "No",
        "automated_decision": sor.automated_decision,
        "puid": puid(content, sor),
    }
    return record


def lifted_at(session: Session, sor: StatementOfReasons) -> datetime | None:
    """When the restriction stopped applying: reversed on appeal, or the content published by a
    later decision (a hold found not violating, an automatic block reversed on appeal)."""
    if sor.reversed_at is not None:
        return sor.reversed_at
    decision = session.get(Decision, sor.decision_id) if sor.decision_id else None
    since = decision.created_at if decision is not None else sor.created_at
    return session.scalar(
        select(Decision.created_at)
        .where(
            Decision.content_pk == sor.content_pk,
            Decision.outcome == "allow",
            Decision.created_at > since,
        )
        .order_by(Decision.created_at)
        .limit(1)
    )


def user_statement(session: Session, sor: StatementOfReasons) -> dict[str, Any]:
    """What the uploader is shown: the DSA fields, whether it still applies, and redress."""
    content = session.get(Content, sor.content_pk)
    lifted = lifted_at(session, sor)
    return {
        "id": sor.id,
        "decision_id": sor.decision_id,
        "review_decision_id": sor.review_decision_id,
        "content_id": content.content_id if content is not None else None,
        "in_force": lifted is None,
        "lifted_at": lifted.isoformat() if lifted else None,
        "created_at": sor.created_at.isoformat(),
        "statement": dsa_statement(session, sor),
        "redress": REDRESS,
    }


# ---------------------------------------------------------------------------------------------
# Export


@cache
def dsa_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _checker() -> Checker:
    return Checker(dsa_schema())


def batch_errors(batch: dict[str, Any]) -> list[str]:
    """Every way a batch departs from the schema (empty when it is valid)."""
    return _checker().errors(batch)


def dsa_batches(session: Session, statements: list[StatementOfReasons]) -> Iterator[dict]:
    """Submission batches of at most 100 statements, each checked against the schema."""
    for first in range(0, len(statements), BATCH_SIZE):
        batch = {
            "statements": [
                dsa_statement(session, s) for s in statements[first : first + BATCH_SIZE]
            ]
        }
        if problems := batch_errors(batch):
            raise InvalidInput("a statement does not satisfy the DSA schema", errors=problems[:20])
        yield batch
