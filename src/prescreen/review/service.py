"""Review: the queue of held and reported content, claims, human decisions that feed the banks,
appeals decided by a different reviewer, strikes, and statements of reasons.

A held upload opens (or joins) a case through a screening decision listener, in the screening
transaction. Its bytes are kept in `review_media` only when it is not CSAM-labelled, and only
until the case is decided. A decision:

- `violating` adds the content's signals to the chosen bank (blocked from then on), records a
  strike against the uploader, stores a statement of reasons and tells the platform to remove it;
- `not_violating` adds the signals to the allow-list bank (never held again) and tells the
  platform to publish it;
- `escalate` hands the case to leads.

An appeal opens a case that the first reviewer may not work; reversing a violation removes the
bank entries it created, revokes the strike and tells the platform to publish.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter as PromCounter
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from prescreen.audit.service import record as audit_record
from prescreen.banks.models import Bank, BankEntry, BankKind
from prescreen.banks.service import LABEL, NewEntry, add_entries, create_bank, delete_entry
from prescreen.banks.service import validate_labels as _validate_labels
from prescreen.core.auth import Role
from prescreen.core.config import Settings, get_settings
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from prescreen.franking.models import E2EReport
from prescreen.franking.service import verified_report_listener
from prescreen.review.models import (
    Appeal,
    ReviewCase,
    ReviewDecision,
    ReviewItem,
    ReviewMedia,
    StatementOfReasons,
    Strike,
)
from prescreen.screening.hooks import Screened, decision_listener, uploader_check
from prescreen.screening.models import Content, Decision
from prescreen.screening.policy import POLICY_VERSION
from prescreen.webhooks.service import notify

log = logging.getLogger(__name__)
REVIEW_DECISIONS = PromCounter(
    "prescreen_review_decisions_total", "Human review decisions", ["verdict"]
)

REVIEWERS = (Role.moderator, Role.lead, Role.admin)
LEADS = (Role.lead, Role.admin)
PENDING = ("open", "escalated")
PRIORITY_NAMES = ("critical", "high", "normal", "low")
CRITICAL, HIGH, NORMAL, LOW = range(4)
CASE_VERDICTS = ("violating", "not_violating", "escalate")
APPEAL_OUTCOMES = ("upheld", "reversed")
ALLOW_BANK_PDQ_THRESHOLD = 10  # tight: an allow-list entry must not cover nearby banked items
HIGH_LABELS = ("terrorism", "terror", "violent_extremism", "extremism", "ncii", "gifct")
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "text/plain")


@dataclass(frozen=True)
class Reviewer:
    """Who acts in review: a UI user (`user:NAME`) or an API key (`apikey:ID`), with a role."""

    id: str
    role: Role

    @property
    def is_lead(self) -> bool:
        return self.role in LEADS


# ---------------------------------------------------------------------------------------------
# Labels, priority, SLA


def is_csam_label(label: str) -> bool:
    label = label.lower()
    return (
        label == "csam"
        or label.startswith(("csam:", "csam_", "csam-", "csea"))
        or ("child_sexual_abuse" in label)
    )


def priority_for(labels: list[str], reasons: list[dict[str, Any]] | None = None) -> int:
    """CSAM and imminent threats first, then terrorism and similar, then the rest."""
    for label in labels:
        if is_csam_label(label) or "imminent" in label or label.split(":")[0] == "threat":
            return CRITICAL
    for label in labels:
        if label.split(":")[0].startswith(HIGH_LABELS):
            return HIGH
    if labels or any(r.get("kind") != "no_match" for r in reasons or []):
        return NORMAL
    return LOW


def sla_hours(settings: Settings, priority: int) -> float:
    return (
        settings.review_sla_critical_hours,
        settings.review_sla_high_hours,
        settings.review_sla_normal_hours,
        settings.review_sla_low_hours,
    )[priority]


def labels_of(decision: Decision | None) -> list[str]:
    """Every label named by a decision's reasons and matches, strongest first, no repeats."""
    if decision is None:
        return []
    found: list[str] = []
    for item in [*(decision.reasons or []), *(decision.matches or [])]:
        for label in [item.get("label"), *(item.get("labels") or [])]:
            if isinstance(label, str) and label and label not in found:
                found.append(label)
    return found


def sniff_media_type(data: bytes, kind: str) -> str | None:
    """The media type from the bytes themselves (never the uploader's claim)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if kind == "text":
        return "text/plain"
    return None


# ---------------------------------------------------------------------------------------------
# Opening cases


def _find_open_case(
    session: Session, kind: str, content: Content, match_key: str | None
) -> ReviewCase | None:
    """An undecided case with the same content (fingerprint or PDQ), or the same uploader held
    for the same reason."""
    conditions = [ReviewCase.group_key == content.fingerprint]
    pdq = (content.signals or {}).get("pdq")
    if pdq:
        conditions.append(ReviewCase.pdq == pdq)
    if content.user_id and match_key:
        conditions.append(
            (ReviewCase.user_id == content.user_id) & (ReviewCase.match_key == match_key)
        )
    return session.scalars(
        select(ReviewCase)
        .where(ReviewCase.status.in_(PENDING), ReviewCase.kind == kind, or_(*conditions))
        .order_by(ReviewCase.created_at)
        .limit(1)
    ).first()


def _match_key(decision: Decision) -> str | None:
    for reason in decision.reasons or []:
        if reason.get("bank") is not None and reason.get("entry") is not None:
            return f"entry:{reason['bank']}:{reason['entry']}"
    kinds = sorted({str(r.get("kind")) for r in decision.reasons or []} - {"no_match"})
    return f"reason:{','.join(kinds)}"[:200] if kinds else None


def open_case(
    session: Session,
    settings: Settings,
    kind: str,
    content: Content,
    decision: Decision | None,
    labels: list[str],
    source: str,
    **item_fields: Any,
) -> ReviewCase:
    """Put a content in the queue: join a matching case or open a new one."""
    now = utcnow()
    csam = any(is_csam_label(label) for label in labels)
    priority = priority_for(labels, decision.reasons if decision is not None else None)
    match_key = _match_key(decision) if decision is not None else None
    case = _find_open_case(session, kind, content, match_key) if kind != "appeal" else None
    if case is None:
        case = ReviewCase(
            id=str(uuid.uuid4()),
            kind=kind,
            status="open",
            priority=priority,
            labels=labels,
            csam=csam,
            user_id=content.user_id,
            group_key=content.fingerprint,
            pdq=(content.signals or {}).get("pdq"),
            match_key=match_key,
            created_at=now,
            due_at=now + timedelta(hours=sla_hours(settings, priority)),
        )
        session.add(case)
    else:
        case.labels = list(dict.fromkeys([*case.labels, *labels]))
        if priority < case.priority:
            case.priority = priority
            case.due_at = min(
                case.due_at, case.created_at + timedelta(hours=sla_hours(settings, priority))
            )
        if csam and not case.csam:
            case.csam = True
            _drop_media(session, case)
    session.flush()
    case.items.append(
        ReviewItem(
            content_pk=content.id,
            decision_pk=decision.id if decision is not None else None,
            source=source,
            created_at=now,
            **item_fields,
        )
    )
    session.flush()
    return case


@decision_listener
def queue_held_content(session: Session, screened: Screened) -> None:
    """A held upload becomes (part of) a case; its bytes are kept for review unless CSAM."""
    if screened.decision.outcome != "hold":
        return
    settings = get_settings()
    labels = labels_of(screened.decision)
    case = open_case(session, settings, "held", screened.content, screened.decision, labels, "held")
    media = screened.media
    if case.csam or not media or len(media) > settings.max_upload_bytes:
        return
    media_type = sniff_media_type(media, screened.content.kind)
    if media_type is None or session.get(ReviewMedia, screened.content.id) is not None:
        return
    session.add(ReviewMedia(content_pk=screened.content.id, media_type=media_type, data=media))
    session.flush()


def _drop_media(session: Session, case: ReviewCase) -> None:
    pks = [item.content_pk for item in case.items]
    if pks:
        session.execute(delete(ReviewMedia).where(ReviewMedia.content_pk.in_(pks)))


def find_content(
    session: Session,
    decision_id: str | None,
    content_id: str | None,
    owner_key_id: str | None,
    admin: bool,
) -> tuple[Content, Decision]:
    """A content by its decision or its platform id, and its latest decision; another key's
    content is as unknown as missing content."""
    if (decision_id is None) == (content_id is None):
        raise InvalidInput("give exactly one of decision_id or content_id")
    content: Content | None
    if decision_id is not None:
        decision = session.get(Decision, decision_id)
        content = decision.content if decision is not None else None
    else:
        content = session.scalar(select(Content).where(Content.content_id == content_id))
    if content is None or (
        not admin and content.owner_key_id is not None and content.owner_key_id != owner_key_id
    ):
        raise NotFound("no such content", decision_id=decision_id, content_id=content_id)
    latest = session.scalars(
        select(Decision)
        .where(Decision.content_pk == content.id)
        .order_by(Decision.created_at.desc(), Decision.id)
        .limit(1)
    ).one()
    return content, latest


def report_content(
    session: Session,
    settings: Settings,
    content: Content,
    decision: Decision,
    reporter: str | None,
    category: str | None,
    reason: str,
) -> ReviewCase:
    """A user report: the content joins a pending case about it, or opens a report case."""
    labels = _validate_labels([category]) if category else []
    labels = list(dict.fromkeys([*labels, *labels_of(decision)]))
    fields = {"reporter": reporter, "report_category": category, "report_reason": reason}
    for kind in ("held", "report"):
        existing = _find_open_case(session, kind, content, None)
        if existing is not None:
            return open_case(session, settings, kind, content, decision, labels, "report", **fields)
    return open_case(session, settings, "report", content, decision, labels, "report", **fields)


# ---------------------------------------------------------------------------------------------
# Reading the queue


def _visible(query, reviewer: Reviewer):
    if not reviewer.is_lead:
        query = query.where(ReviewCase.status != "escalated")
    return query.where(
        or_(ReviewCase.excluded_reviewer.is_(None), ReviewCase.excluded_reviewer != reviewer.id)
    )


def list_cases(
    session: Session,
    reviewer: Reviewer,
    status: str = "pending",
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ReviewCase]:
    """Cases this reviewer may work, most urgent first: priority, then age."""
    query = select(ReviewCase)
    if status == "pending":
        query = query.where(ReviewCase.status.in_(PENDING))
    elif status != "all":
        query = query.where(ReviewCase.status == status)
    if kind:
        query = query.where(ReviewCase.kind == kind)
    query = _visible(query, reviewer)
    if status == "decided":
        query = query.order_by(ReviewCase.decided_at.desc())
    else:
        query = query.order_by(ReviewCase.priority, ReviewCase.created_at, ReviewCase.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_case(session: Session, case_id: str, reviewer: Reviewer) -> ReviewCase:
    """A case this reviewer may see: escalated cases are for leads, appeals not for the first
    reviewer."""
    case = session.get(ReviewCase, case_id)
    if case is None:
        raise NotFound(f"no case {case_id!r}", case=case_id)
    if case.status == "escalated" and not reviewer.is_lead:
        raise Forbidden("this case is escalated: only leads and admins may work it")
    if case.excluded_reviewer is not None and case.excluded_reviewer == reviewer.id:
        raise Forbidden("an appeal goes to a different reviewer than the first decision's")
    return case


def is_breached(case: ReviewCase, now: datetime) -> bool:
    if case.status in PENDING:
        return now > case.due_at
    return case.sla_breached


def case_summary(case: ReviewCase, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    claimed = case.claimed_by if _claim_live(case, now) else None
    return {
        "id": case.id,
        "kind": case.kind,
        "status": case.status,
        "priority": PRIORITY_NAMES[case.priority],
        "priority_rank": case.priority,
        "labels": case.labels,
        "csam": case.csam,
        "user_id": case.user_id,
        "items": len(case.items),
        "created_at": case.created_at.isoformat(),
        "due_at": case.due_at.isoformat(),
        "sla_breached": is_breached(case, now),
        "claimed_by": claimed,
        "claim_expires_at": case.claim_expires_at.isoformat() if claimed else None,
        "escalated_by": case.escalated_by,
        "outcome": case.outcome,
        "decided_at": case.decided_at.isoformat() if case.decided_at else None,
    }


def explain_matches(session: Session, decision: Decision | None) -> list[dict[str, Any]]:
    """Each match with its bank and entry as they stand now (kind, note, provenance)."""
    if decision is None:
        return []
    explained = []
    for match in decision.matches or []:
        row = dict(match)
        entry = session.get(BankEntry, match.get("entry")) if match.get("entry") else None
        bank = session.scalar(select(Bank).where(Bank.name == match.get("bank")))
        row["bank_kind"] = bank.kind if bank is not None else match.get("bank_kind")
        row["entry_exists"] = entry is not None
        if entry is not None:
            row["entry_note"] = entry.note
            row["entry_added_by"] = entry.added_by
            row["entry_source"] = entry.source
            row["entry_created_at"] = entry.created_at.isoformat()
        explained.append(row)
    return explained


def scores_of(decision: Decision | None) -> list[dict[str, Any]]:
    """Classifier scores found in a decision's reasons."""
    if decision is None:
        return []
    return [
        {
            k: r.get(k)
            for k in ("kind", "model", "model_version", "label", "score", "threshold", "action")
            if k in r
        }
        for r in decision.reasons or []
        if "score" in r
    ]


def uploader_history(
    session: Session, user_id: str | None, exclude_case: str | None, settings: Settings
) -> dict[str, Any]:
    """What reviewers decided before on this uploader's content, and their strikes."""
    if not user_id:
        return {"user_id": None, "decisions": [], "strikes": 0, "screened": {}}
    rows = session.execute(
        select(ReviewDecision, ReviewCase)
        .join(ReviewCase, ReviewDecision.case_id == ReviewCase.id)
        .where(ReviewCase.user_id == user_id, ReviewCase.id != (exclude_case or ""))
        .order_by(ReviewDecision.created_at.desc())
        .limit(20)
    ).all()
    since = utcnow() - timedelta(days=settings.strike_window_days)
    screened = dict(
        session.execute(
            select(Decision.outcome, func.count())
            .join(Content, Decision.content_pk == Content.id)
            .where(Content.user_id == user_id, Decision.automated.is_(True))
            .group_by(Decision.outcome)
        ).all()
    )
    return {
        "user_id": user_id,
        "decisions": [
            {
                "case_id": case.id,
                "verdict": d.verdict,
                "label": d.label,
                "reviewer": d.reviewer,
                "reversed": d.reversed_at is not None,
                "created_at": d.created_at.isoformat(),
            }
            for d, case in rows
        ],
        "strikes": count_strikes(session, user_id, since),
        "strike_threshold": settings.strike_count,
        "screened": screened,
    }


def case_detail(
    session: Session,
    case: ReviewCase,
    settings: Settings,
    media_url: str = "/v1/review/cases/{case}/media/{content}",
) -> dict[str, Any]:
    now = utcnow()
    body = case_summary(case, now)
    media = set(
        session.scalars(
            select(ReviewMedia.content_pk).where(
                ReviewMedia.content_pk.in_([i.content_pk for i in case.items])
            )
        )
    )
    items = []
    for item in case.items:
        content = session.get(Content, item.content_pk)
        decision = session.get(Decision, item.decision_pk) if item.decision_pk else None
        assert content is not None
        has_media = not case.csam and item.content_pk in media
        items.append(
            {
                "content_pk": content.id,
                "content_id": content.content_id,
                "user_id": content.user_id,
                "content_type": content.kind,
                "signals": content.signals,
                "metadata": content.meta,
                "submitted_at": content.created_at.isoformat(),
                "source": item.source,
                "reporter": item.reporter,
                "report_category": item.report_category,
                "report_reason": item.report_reason,
                "decision": (
                    {
                        "id": decision.id,
                        "outcome": decision.outcome,
                        "automated": decision.automated,
                        "reasons": decision.reasons,
                        "created_at": decision.created_at.isoformat(),
                    }
                    if decision is not None
                    else None
                ),
                "matches": explain_matches(session, decision),
                "scores": scores_of(decision),
                "media_type": None if case.csam else _media_type(session, content.id, has_media),
                "media_url": (
                    media_url.format(case=case.id, content=content.id) if has_media else None
                ),
            }
        )
    body["items"] = items
    body["decisions"] = [
        review_decision_to_dict(d)
        for d in session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.case_id == case.id)
            .order_by(ReviewDecision.created_at)
        )
    ]
    appeal = session.scalar(select(Appeal).where(Appeal.case_id == case.id))
    body["appeal"] = appeal_to_dict(session, appeal) if appeal is not None else None
    body["uploader_history"] = uploader_history(session, case.user_id, case.id, settings)
    return body


def _media_type(session: Session, content_pk: str, has_media: bool) -> str | None:
    if not has_media:
        return None
    return session.scalar(
        select(ReviewMedia.media_type).where(ReviewMedia.content_pk == content_pk)
    )


def get_media(
    session: Session, case_id: str, content_pk: str, reviewer: Reviewer
) -> tuple[bytes, str]:
    """A held item's bytes for a reviewer who may see the case; never for a CSAM case (404)."""
    case = get_case(session, case_id, reviewer)
    if case.csam or all(item.content_pk != content_pk for item in case.items):
        raise NotFound("no media")
    media = session.get(ReviewMedia, content_pk)
    if media is None or media.media_type not in MEDIA_TYPES:
        raise NotFound("no media")
    return media.data, media.media_type


# ---------------------------------------------------------------------------------------------
# Claims


def _claim_live(case: ReviewCase, now: datetime) -> bool:
    return (
        case.claimed_by is not None
        and case.claim_expires_at is not None
        and case.claim_expires_at > now
    )


def claim(session: Session, settings: Settings, case: ReviewCase, reviewer: Reviewer) -> ReviewCase:
    """Take a case, atomically: one reviewer at a time (a claim lapses when idle too long)."""
    if case.status not in PENDING:
        raise Conflict("the case is already decided", case=case.id)
    now = utcnow()
    result = session.execute(
        update(ReviewCase)
        .where(
            ReviewCase.id == case.id,
            ReviewCase.status.in_(PENDING),
            or_(
                ReviewCase.claimed_by.is_(None),
                ReviewCase.claimed_by == reviewer.id,
                ReviewCase.claim_expires_at <= now,
            ),
        )
        .values(
            claimed_by=reviewer.id,
            claimed_at=now,
            claim_expires_at=now + timedelta(minutes=settings.review_claim_minutes),
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(case)
    if result.rowcount != 1:
        raise Conflict(
            f"the case is being worked by {case.claimed_by}",
            case=case.id,
            claimed_by=case.claimed_by,
        )
    return case


def release(session: Session, case: ReviewCase, reviewer: Reviewer) -> ReviewCase:
    """Give a case back; leads may release anyone's claim."""
    now = utcnow()
    if _claim_live(case, now) and case.claimed_by != reviewer.id and not reviewer.is_lead:
        raise Forbidden(f"the case is claimed by {case.claimed_by}; only they or a lead release it")
    case.claimed_by = case.claimed_at = case.claim_expires_at = None
    session.flush()
    return case


# ---------------------------------------------------------------------------------------------
# Decisions


def _bank_for(
    session: Session, name: str, kind: BankKind, label: str | None, create: bool = True
) -> Bank:
    """A bank by name; the configured review banks are created on first use (reviewers may
    not create other banks: that is a lead's job)."""
    bank = session.scalar(select(Bank).where(Bank.name == name))
    if bank is not None:
        return bank
    if not create:
        raise NotFound(f"no bank named {name!r}", bank=name)
    fields: dict[str, Any] = {"kind": kind.value, "labels": [label] if label else []}
    if kind is BankKind.allow:
        fields["pdq_threshold"] = ALLOW_BANK_PDQ_THRESHOLD
    fields["description"] = (
        "Allow-list fed by reviewers' not-violating decisions"
        if kind is BankKind.allow
        else "Violations confirmed by reviewers"
    )
    return create_bank(session, name, **fields)


def _contents(session: Session, case: ReviewCase) -> list[Content]:
    seen: dict[str, Content] = {}
    for item in case.items:
        content = session.get(Content, item.content_pk)
        if content is not None and content.id not in seen:
            seen[content.id] = content
    return list(seen.values())


def _bank_signals(contents: list[Content], bank: Bank, label: str | None, note: str) -> list:
    """One entry per distinct content (by fingerprint)."""
    entries, seen = [], set()
    for content in contents:
        if content.fingerprint in seen:
            continue
        seen.add(content.fingerprint)
        try:
            entries.append(
                NewEntry.validated(
                    dict(content.signals or {}),
                    labels=[label] if label else list(bank.labels or []),
                    note=note,
                    source="review",
                    content_type=content.kind,
                )
            )
        except InvalidInput:
            log.warning("content has no bankable signals", extra={"content": content.id})
    return entries


def _human_decision(
    session: Session, content: Content, outcome: str, reasons: list[dict[str, Any]], sor: str | None
) -> Decision:
    decision = Decision(
        id=str(uuid.uuid4()),
        content_pk=content.id,
        outcome=outcome,
        reasons=reasons,
        matches=[],
        automated=False,
        policy_version=POLICY_VERSION,
        statement_of_reasons_id=sor,
        created_at=utcnow(),
    )
    session.add(decision)
    session.flush()
    return decision


CATEGORY = [
    (
        is_csam_label,
        "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
        "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
    ),
    (
        lambda label: label.startswith(("terror", "gifct", "violent_extremism", "extremism")),
        "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
        "KEYWORD_TERRORIST_CONTENT",
    ),
    (
        lambda label: label.startswith(("hate", "incitement")),
        "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
        "KEYWORD_HATE_SPEECH",
    ),
    (
        lambda label: label.startswith("ncii"),
        "STATEMENT_CATEGORY_CYBER_VIOLENCE",
        "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    ),
    (lambda label: "threat" in label, "STATEMENT_CATEGORY_VIOLENCE", None),
]
ILLEGAL = ("csam", "csea", "child_sexual_abuse", "terror", "gifct", "ncii")
CONTENT_TYPES = {
    "photo": "CONTENT_TYPE_IMAGE",
    "video": "CONTENT_TYPE_VIDEO",
    "text": "CONTENT_TYPE_TEXT",
}


def statement_for(
    session: Session,
    content: Content,
    held: Decision | None,
    review: ReviewDecision,
    source: str,
) -> StatementOfReasons:
    """The statement of reasons for a removal decided by a person."""
    label = review.label or ""
    category, keyword = "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", None
    for test, cat, key in CATEGORY:
        if label and test(label):
            category, keyword = cat, key
            break
    illegal = label.startswith(ILLEGAL) or is_csam_label(label)
    automated = held is not None and held.automated and held.outcome in ("hold", "block")
    facts = [f"A reviewer found the content violates the policy on {label or 'this platform'}."]
    if automated and held is not None:
        banks = sorted({str(m.get("bank")) for m in held.matches or [] if m.get("bank")})
        if banks:
            facts.append(f"It was detected automatically by matching: {', '.join(banks)}.")
        else:
            facts.append("It was detected automatically and held for review.")
    if source == "report":
        facts.append("It was reported by a user.")
    if review.reason:
        facts.append(f"Reviewer's note: {review.reason}")
    now = utcnow()
    sor = StatementOfReasons(
        id=str(uuid.uuid4()),
        content_pk=content.id,
        review_decision_id=review.id,
        user_id=content.user_id,
        decision_visibility=["DECISION_VISIBILITY_CONTENT_REMOVED"],
        decision_ground=(
            "DECISION_GROUND_ILLEGAL_CONTENT" if illegal else "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        ),
        ground_explanation=f"Content labelled {label!r} by a reviewer." if label else "",
        category=category,
        category_specification=[keyword] if keyword else [],
        content_type=[CONTENT_TYPES.get(content.kind, "CONTENT_TYPE_OTHER")],
        decision_facts=" ".join(facts)[:5000],
        source_type="SOURCE_ARTICLE_16" if source == "report" else "SOURCE_VOLUNTARY",
        automated_detection=automated,
        automated_decision="AUTOMATED_DECISION_NOT_AUTOMATED",
        content_date=content.created_at.date(),
        application_date=now.date(),
        created_at=now,
    )
    session.add(sor)
    session.flush()
    return sor


def statement_to_dict(sor: StatementOfReasons) -> dict[str, Any]:
    return {
        "id": sor.id,
        "decision_id": sor.decision_id,
        "review_decision_id": sor.review_decision_id,
        "user_id": sor.user_id,
        "decision_visibility": sor.decision_visibility,
        "decision_ground": sor.decision_ground,
        "ground_explanation": sor.ground_explanation,
        "category": sor.category,
        "category_specification": sor.category_specification,
        "content_type": sor.content_type,
        "decision_facts": sor.decision_facts,
        "source_type": sor.source_type,
        "automated_detection": sor.automated_detection,
        "automated_decision": sor.automated_decision,
        "content_date": sor.content_date.isoformat(),
        "application_date": sor.application_date.isoformat(),
        "reversed_at": sor.reversed_at.isoformat() if sor.reversed_at else None,
        "created_at": sor.created_at.isoformat(),
    }


def decide_case(
    session: Session,
    settings: Settings,
    case: ReviewCase,
    reviewer: Reviewer,
    verdict: str,
    reason: str = "",
    label: str | None = None,
    bank_name: str | None = None,
    share: bool = False,
) -> ReviewDecision:
    """Decide a held or reported case and apply the decision (banks, strikes, platform)."""
    if case.kind == "appeal":
        raise InvalidInput("this is an appeal: decide it as upheld or reversed")
    if verdict not in CASE_VERDICTS:
        raise InvalidInput(f"verdict must be one of {list(CASE_VERDICTS)}")
    claim(session, settings, case, reviewer)
    if verdict == "escalate":
        if case.status == "escalated":
            raise Conflict("the case is already escalated")
        return _escalate(session, case, reviewer, reason)
    now = utcnow()
    if verdict == "violating":
        if not label:
            raise InvalidInput("a violating decision needs a label")
        label = _validate_labels([label])[0]
        name = bank_name or settings.review_bank
        bank = _bank_for(session, name, BankKind.block, label, create=name == settings.review_bank)
        if bank.kind == BankKind.allow.value:
            raise InvalidInput(f"bank {bank.name!r} is an allow-list; choose a block or hold bank")
    else:
        label = None
        bank = _bank_for(session, settings.review_allow_bank, BankKind.allow, None)
        if bank.kind != BankKind.allow.value:
            raise Conflict(f"the allow-list bank {bank.name!r} is not an allow bank")
    review = ReviewDecision(
        id=str(uuid.uuid4()),
        case_id=case.id,
        verdict=verdict,
        label=label,
        bank=bank.name,
        share=share and verdict == "violating",
        reason=reason,
        reviewer=reviewer.id,
        reviewer_role=reviewer.role.value,
        created_at=now,
    )
    session.add(review)
    session.flush()
    contents = _contents(session, case)
    note = f"review case {case.id} by {reviewer.id}" + (f": {reason[:300]}" if reason else "")
    entries = add_entries(
        session, bank, _bank_signals(contents, bank, label, note), added_by=reviewer.id
    )
    review.bank_entries = [{"bank": bank.name, "entry": e.id} for e in entries]
    held_by_content = {item.content_pk: item for item in case.items}
    if label is not None and is_csam_label(label):
        case.csam = True
    for content in contents:
        item = held_by_content[content.id]
        held = session.get(Decision, item.decision_pk) if item.decision_pk else None
        _apply(session, case, review, content, held, item.source)
    if verdict == "violating":
        for user_id in sorted({c.user_id for c in contents if c.user_id}):
            session.add(
                Strike(
                    user_id=user_id,
                    case_id=case.id,
                    review_decision_id=review.id,
                    label=label,
                    created_at=now,
                )
            )
    _close(session, case, verdict, now)
    audit_record(
        session,
        reviewer.id,
        "review.decision",
        f"review_case:{case.id}",
        {"verdict": verdict, "label": label, "bank": bank.name, "entries": len(entries)},
    )
    REVIEW_DECISIONS.labels(verdict).inc()
    log.info("case decided", extra={"case": case.id, "verdict": verdict, "bank": bank.name})
    return review


def _apply(
    session: Session,
    case: ReviewCase,
    review: ReviewDecision,
    content: Content,
    held: Decision | None,
    source: str,
) -> None:
    """Record the human decision on the content and tell the platform to publish or remove."""
    violating = review.verdict == "violating"
    sor = statement_for(session, content, held, review, source) if violating else None
    decision = _human_decision(
        session,
        content,
        "block" if violating else "allow",
        [
            {
                "kind": "review",
                "verdict": review.verdict,
                "label": review.label,
                "bank": review.bank,
                "case": case.id,
                "review_decision": review.id,
            }
        ],
        sor.id if sor else None,
    )
    if sor is not None:
        sor.decision_id = decision.id
    notify(
        session,
        content.owner_key_id,
        "review_decision",
        {
            "case_id": case.id,
            "review_decision_id": review.id,
            "decision_id": decision.id,
            "held_decision_id": held.id if held is not None else None,
            "content_id": content.content_id,
            "user_id": content.user_id,
            "verdict": review.verdict,
            "action": "remove" if violating else "publish",
            "label": review.label,
            "statement_of_reasons_id": sor.id if sor else None,
            "decided_at": review.created_at.isoformat(),
        },
    )


def _close(session: Session, case: ReviewCase, outcome: str, now: datetime) -> None:
    case.status, case.outcome, case.decided_at = "decided", outcome, now
    case.sla_breached = now > case.due_at
    case.claimed_by = case.claimed_at = case.claim_expires_at = None
    _drop_media(session, case)
    session.flush()


def _escalate(
    session: Session, case: ReviewCase, reviewer: Reviewer, reason: str
) -> ReviewDecision:
    now = utcnow()
    review = ReviewDecision(
        id=str(uuid.uuid4()),
        case_id=case.id,
        verdict="escalate",
        reason=reason,
        reviewer=reviewer.id,
        reviewer_role=reviewer.role.value,
        created_at=now,
    )
    session.add(review)
    case.status, case.escalated_by, case.escalated_at = "escalated", reviewer.id, now
    case.claimed_by = case.claimed_at = case.claim_expires_at = None
    session.flush()
    REVIEW_DECISIONS.labels("escalate").inc()
    audit_record(session, reviewer.id, "review.escalate", f"review_case:{case.id}", {})
    return review


def review_decision_to_dict(d: ReviewDecision) -> dict[str, Any]:
    return {
        "id": d.id,
        "case_id": d.case_id,
        "verdict": d.verdict,
        "label": d.label,
        "bank": d.bank,
        "bank_entries": d.bank_entries,
        "share": d.share,
        "reason": d.reason,
        "reviewer": d.reviewer,
        "reviewer_role": d.reviewer_role,
        "reversed_at": d.reversed_at.isoformat() if d.reversed_at else None,
        "reversed_by_appeal": d.reversed_by_appeal,
        "created_at": d.created_at.isoformat(),
    }


# ---------------------------------------------------------------------------------------------
# Appeals


def create_appeal(
    session: Session,
    settings: Settings,
    content: Content,
    latest: Decision,
    user_id: str,
    reason: str,
    submitted_by: str,
) -> Appeal:
    """The uploader appeals the restrictive decision in force on their content."""
    if not content.user_id or content.user_id != user_id:
        raise Forbidden("only the uploader of the content may appeal its decision")
    if latest.outcome == "allow":
        raise Conflict("the content is published: there is no decision to appeal")
    if latest.outcome == "hold":
        raise Conflict("the content is still under review: appeal once it is decided")
    existing = session.scalar(
        select(Appeal).where(Appeal.screening_decision_id == latest.id).limit(1)
    )
    if existing is not None:
        raise Conflict("this decision has already been appealed", appeal=existing.id)
    review = None
    review_id = next(
        (r.get("review_decision") for r in latest.reasons or [] if r.get("kind") == "review"), None
    )
    if review_id:
        review = session.get(ReviewDecision, review_id)
    first_reviewer = review.reviewer if review is not None else None
    labels = [review.label] if review is not None and review.label else labels_of(latest)
    case = open_case(session, settings, "appeal", content, latest, labels, "appeal")
    case.excluded_reviewer = first_reviewer
    appeal = Appeal(
        id=str(uuid.uuid4()),
        content_pk=content.id,
        screening_decision_id=latest.id,
        review_decision_id=review.id if review is not None else None,
        case_id=case.id,
        user_id=user_id,
        reason=reason,
        first_reviewer=first_reviewer,
        submitted_by=submitted_by,
        created_at=utcnow(),
    )
    session.add(appeal)
    session.flush()
    return appeal


def decide_appeal(
    session: Session,
    settings: Settings,
    case: ReviewCase,
    reviewer: Reviewer,
    outcome: str,
    reason: str = "",
) -> ReviewDecision:
    """Uphold or reverse; a reversal removes the bank entries of the first decision, revokes its
    strikes and statement, and publishes the content."""
    appeal = session.scalar(select(Appeal).where(Appeal.case_id == case.id))
    if appeal is None or case.kind != "appeal":
        raise InvalidInput("this case is not an appeal")
    if outcome not in APPEAL_OUTCOMES:
        raise InvalidInput(f"outcome must be one of {list(APPEAL_OUTCOMES)}")
    if appeal.first_reviewer is not None and appeal.first_reviewer == reviewer.id:
        raise Forbidden("an appeal goes to a different reviewer than the first decision's")
    claim(session, settings, case, reviewer)
    now = utcnow()
    content = session.get(Content, appeal.content_pk)
    assert content is not None
    review = ReviewDecision(
        id=str(uuid.uuid4()),
        case_id=case.id,
        verdict=outcome,
        reason=reason,
        reviewer=reviewer.id,
        reviewer_role=reviewer.role.value,
        created_at=now,
    )
    session.add(review)
    session.flush()
    decision_id = None
    if outcome == "reversed":
        original = (
            session.get(ReviewDecision, appeal.review_decision_id)
            if appeal.review_decision_id
            else None
        )
        if original is not None:
            _undo(session, original, appeal, now)
        else:  # an automated block: allow-list the content so it is not blocked again
            bank = _bank_for(session, settings.review_allow_bank, BankKind.allow, None)
            entries = add_entries(
                session,
                bank,
                _bank_signals([content], bank, None, f"appeal {appeal.id} reversed"),
                added_by=reviewer.id,
            )
            review.bank, review.bank_entries = (
                bank.name,
                [{"bank": bank.name, "entry": e.id} for e in entries],
            )
        decision_id = _human_decision(
            session,
            content,
            "allow",
            [
                {
                    "kind": "appeal",
                    "outcome": outcome,
                    "appeal": appeal.id,
                    "case": case.id,
                    "review_decision": review.id,
                }
            ],
            None,
        ).id
    appeal.status, appeal.outcome = "decided", outcome
    appeal.decided_by, appeal.decided_at = reviewer.id, now
    notify(
        session,
        content.owner_key_id,
        "appeal_decision",
        {
            "appeal_id": appeal.id,
            "case_id": case.id,
            "review_decision_id": review.id,
            "decision_id": decision_id,
            "content_id": content.content_id,
            "user_id": content.user_id,
            "outcome": outcome,
            "action": "publish" if outcome == "reversed" else "keep_removed",
            "decided_at": now.isoformat(),
        },
    )
    _close(session, case, outcome, now)
    audit_record(
        session,
        reviewer.id,
        "review.appeal.decision",
        f"review_case:{case.id}",
        {"outcome": outcome, "appeal": appeal.id},
    )
    REVIEW_DECISIONS.labels(outcome).inc()
    return review


def _undo(session: Session, original: ReviewDecision, appeal: Appeal, now: datetime) -> None:
    for ref in original.bank_entries or []:
        bank = session.scalar(select(Bank).where(Bank.name == ref.get("bank")))
        entry = session.get(BankEntry, ref.get("entry"))
        if bank is not None and entry is not None and entry.bank_id == bank.id:
            delete_entry(session, entry)
    original.reversed_at, original.reversed_by_appeal = now, appeal.id
    session.execute(
        update(Strike)
        .where(Strike.review_decision_id == original.id, Strike.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(StatementOfReasons)
        .where(StatementOfReasons.review_decision_id == original.id)
        .values(reversed_at=now)
        .execution_options(synchronize_session=False)
    )


def appeal_to_dict(session: Session, appeal: Appeal) -> dict[str, Any]:
    content = session.get(Content, appeal.content_pk)
    return {
        "id": appeal.id,
        "case_id": appeal.case_id,
        "content_id": content.content_id if content is not None else None,
        "decision_id": appeal.screening_decision_id,
        "review_decision_id": appeal.review_decision_id,
        "user_id": appeal.user_id,
        "reason": appeal.reason,
        "status": appeal.status,
        "outcome": appeal.outcome,
        "first_reviewer": appeal.first_reviewer,
        "decided_by": appeal.decided_by,
        "decided_at": appeal.decided_at.isoformat() if appeal.decided_at else None,
        "created_at": appeal.created_at.isoformat(),
    }


def get_appeal(session: Session, appeal_id: str, owner_key_id: str | None, admin: bool) -> Appeal:
    appeal = session.get(Appeal, appeal_id)
    if appeal is not None and not admin:
        content = session.get(Content, appeal.content_pk)
        if content is not None and content.owner_key_id not in (None, owner_key_id):
            appeal = None
    if appeal is None:
        raise NotFound(f"no appeal {appeal_id!r}")
    return appeal


# ---------------------------------------------------------------------------------------------
# Strikes


def count_strikes(session: Session, user_id: str, since: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Strike)
            .where(
                Strike.user_id == user_id,
                Strike.revoked_at.is_(None),
                Strike.created_at >= since,
            )
        )
        or 0
    )


@uploader_check
def repeat_offender(session: Session, user_id: str) -> dict[str, Any] | None:
    """Hold the uploads of an uploader with enough confirmed violations in the window."""
    settings = get_settings()
    since = utcnow() - timedelta(days=settings.strike_window_days)
    strikes = count_strikes(session, user_id, since)
    if strikes < settings.strike_count:
        return None
    return {
        "kind": "repeat_offender",
        "strikes": strikes,
        "strike_threshold": settings.strike_count,
        "window_days": settings.strike_window_days,
    }


# ---------------------------------------------------------------------------------------------
# Dashboard


def stats(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Queue size by priority, SLA breaches, decisions per hour over the last day."""
    now = now or utcnow()
    pending = session.execute(
        select(
            ReviewCase.priority, ReviewCase.status, ReviewCase.due_at, ReviewCase.created_at
        ).where(ReviewCase.status.in_(PENDING))
    ).all()
    by_priority = Counter(PRIORITY_NAMES[p] for p, *_ in pending)
    breaching = [row for row in pending if row.due_at < now]
    day_ago = now - timedelta(hours=24)
    recent = session.execute(
        select(ReviewDecision.created_at, ReviewDecision.verdict).where(
            ReviewDecision.created_at >= day_ago
        )
    ).all()
    hours = Counter(
        int((now - created).total_seconds() // 3600) for created, _ in recent if created <= now
    )
    late = session.scalar(
        select(func.count())
        .select_from(ReviewCase)
        .where(ReviewCase.decided_at >= day_ago, ReviewCase.sla_breached.is_(True))
    )
    oldest = min((row.created_at for row in pending), default=None)
    return {
        "queue": {
            "total": len(pending),
            "by_priority": {name: by_priority.get(name, 0) for name in PRIORITY_NAMES},
            "escalated": sum(1 for row in pending if row.status == "escalated"),
            "oldest_age_seconds": int((now - oldest).total_seconds()) if oldest else None,
        },
        "sla": {"breaching_now": len(breaching), "decided_late_24h": late or 0},
        "decisions_24h": {
            "total": len(recent),
            "by_verdict": dict(Counter(v for _, v in recent)),
            "per_hour": [{"hours_ago": h, "count": hours.get(h, 0)} for h in range(23, -1, -1)],
        },
        "appeals_open": session.scalar(
            select(func.count()).select_from(Appeal).where(Appeal.status == "open")
        )
        or 0,
    }


# ---------------------------------------------------------------------------------------------
# Verified end-to-end reports join the queue


@verified_report_listener
def queue_verified_e2e_report(session: Session, report: E2EReport) -> None:
    """Every screened part of a verified report goes to review, whatever its decision: a
    person reported it, and the report itself is evidence the sender sent it."""
    category = report.reason if report.reason and LABEL.match(report.reason) else None
    for link in report.links:
        decision = session.get(Decision, link.decision_id) if link.decision_id else None
        if decision is not None:
            report_content(
                session,
                get_settings(),
                decision.content,
                decision,
                reporter=report.reporter_id,
                category=category,
                reason=report.note or "verified report of an end-to-end-encrypted message",
            )
