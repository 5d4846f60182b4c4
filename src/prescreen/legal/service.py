"""Legal requests from intake to production, preservation, notice and removal.

Rules that hold by construction:
- A production needs a valid, unexpired request approved by two different actors with the
  `legal` (or `admin`) role (one for an emergency disclosure, which then needs a second review
  by someone else within 72 hours), and covers at most the approved scope.
- Every step, and every refused attempt, is an entry in the audit log (refusals are recorded in
  a transaction of their own, after the refused one rolled back).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from prescreen.audit import service as audit
from prescreen.audit.keys import signing_key
from prescreen.audit.logformat import canonical_json
from prescreen.audit.periodic import job_settings, periodic, rearm
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Base, Database, utcnow
from prescreen.core.errors import Forbidden, InvalidInput, NotFound, PrescreenError
from prescreen.jobs.service import JobContext, job_handler
from prescreen.legal import production
from prescreen.legal.models import (
    LegalApproval,
    LegalProduction,
    LegalRequest,
    PreservationHold,
    RemovalOrder,
    UserNotice,
)
from prescreen.screening.models import Content, Decision
from prescreen.webhooks.service import get_endpoint, notify

log = logging.getLogger(__name__)
T = TypeVar("T")
TICK_JOB = "legal_tick"
RETENTION_JOB = "retention_sweep"
LEGAL_ROLES = frozenset({Role.legal, Role.admin})
TCO_PRESERVATION_DAYS = 183  # Regulation (EU) 2021/784 Art. 6: six months


class RequestType(StrEnum):
    subpoena = "subpoena"
    court_order = "court_order"
    search_warrant = "search_warrant"
    emergency_disclosure = "emergency_disclosure"
    preservation_request = "preservation_request"
    removal_order = "removal_order"


class Category(StrEnum):
    account = "account"  # subscriber-type records: what the platform told us about the account
    decisions = "decisions"  # non-content records: screening decisions
    review_cases = "review_cases"  # non-content records: review cases, decisions, appeals
    content = "content"  # published content, held media, reported end-to-end messages


class Status(StrEnum):
    invalid = "invalid"
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    closed = "closed"


ALL = frozenset(Category)
COMPELS: dict[str, frozenset[Category]] = {
    RequestType.subpoena: frozenset({Category.account}),
    RequestType.court_order: frozenset(
        {Category.account, Category.decisions, Category.review_cases}
    ),
    RequestType.search_warrant: ALL,
    RequestType.emergency_disclosure: ALL,
    RequestType.preservation_request: frozenset(),
    RequestType.removal_order: frozenset(),
}
LEAST_PROCESS = {
    Category.account: "a subpoena",
    Category.decisions: "a court order",
    Category.review_cases: "a court order",
    Category.content: "a search warrant",
}
PRODUCING = frozenset(t for t, cats in COMPELS.items() if cats)
EU_MEMBER_STATES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()  # noqa: SIM905
)
WILDCARDS = frozenset("*%?")


class Refused(PrescreenError):
    """A legal step that may not happen; audited as `<action>.refused` with its code."""

    def __init__(self, code: str, message: str, status_code: int = 403, **detail: Any) -> None:
        super().__init__(message, **detail)
        self.code, self.status_code = code, status_code


def target(request_id: str) -> str:
    return f"legal_request:{request_id}"


def actor_id(actor: Actor) -> str:
    """The identity two-person approval counts: one per API key (or UI user) today."""
    return actor.key_id if ":" in actor.key_id else f"apikey:{actor.key_id}"


def require_legal(actor: Actor) -> None:
    if actor.role not in LEGAL_ROLES:
        raise Refused(
            "forbidden",
            f"role {actor.role.value!r} may not do this",
            required=sorted(r.value for r in LEGAL_ROLES),
        )


def audited(db: Database, actor: Actor, action: str, target_: str, fn: Callable[[Session], T]) -> T:
    """Run a legal step in its own transaction; a refusal is recorded in the audit log in a
    second transaction (the first rolled back), then raised."""
    try:
        with db.session() as session:
            return fn(session)
    except PrescreenError as exc:
        with db.session() as session:
            audit.record(
                session,
                actor.label,
                f"{action}.refused",
                target_,
                {"code": exc.code, "status": exc.status_code, "reason": exc.message[:500]},
            )
        raise


def record_refusal(
    db: Database, actor: Actor, action: str, target_: str, code: str, why: str
) -> None:
    with db.session() as session:
        audit.record(
            session, actor.label, f"{action}.refused", target_, {"code": code, "reason": why}
        )


# --- intake and validation --------------------------------------------------------------------


def _jurisdiction_country(jurisdiction: str) -> str:
    return jurisdiction.strip().upper().split("-")[0]


def check(request: LegalRequest, settings: Settings, now: datetime) -> list[dict[str, str]]:
    """Why a request cannot be acted on (empty when it can), as codes with reasons."""
    problems: list[dict[str, str]] = []

    def problem(code: str, message: str) -> None:
        problems.append({"code": code, "message": message})

    kind = RequestType(request.type)
    if request.expires_at is not None and request.expires_at <= now:
        problem("expired", f"the legal process expired at {request.expires_at.isoformat()}")
    if request.issued_at is not None and request.issued_at > now + timedelta(minutes=5):
        problem("issued_in_future", "the legal process is dated in the future")
    country = _jurisdiction_country(request.jurisdiction)
    accepted = {j.strip().upper() for j in settings.legal_jurisdictions}
    if kind is RequestType.removal_order:
        if country not in EU_MEMBER_STATES:
            problem(
                "out_of_jurisdiction",
                "a removal order under Regulation (EU) 2021/784 comes from a competent "
                f"authority of an EU member state, not {request.jurisdiction!r}",
            )
    elif country not in accepted and request.jurisdiction.strip().upper() not in accepted:
        problem(
            "out_of_jurisdiction",
            f"legal process from {request.jurisdiction!r} is not accepted directly (accepted: "
            f"{', '.join(sorted(accepted))}); it must come through a channel valid here, "
            "e.g. a mutual legal assistance request",
        )
    if kind in PRODUCING:
        compelled = COMPELS[kind]
        for category in sorted(set(request.data_categories) - compelled):
            problem(
                "scope_too_broad",
                f"a {kind.value.replace('_', ' ')} cannot compel {category} records; that "
                f"needs {LEAST_PROCESS[Category(category)]}",
            )
        if not request.data_categories:
            problem("no_categories", "name the data categories sought")
        if request.range_start is None or request.range_end is None:
            problem("no_time_range", "a production needs a time range (start and end)")
    if kind is not RequestType.removal_order:
        if not request.accounts:
            problem("no_accounts", "name the accounts concerned (at least one)")
        if len(request.accounts) > settings.legal_max_accounts:
            problem(
                "scope_too_broad",
                f"{len(request.accounts)} accounts in one request; at most "
                f"{settings.legal_max_accounts} are accepted as particular",
            )
        if any(WILDCARDS & set(account) for account in request.accounts):
            problem("scope_too_broad", "account identifiers must be exact, not patterns")
    if (
        request.range_start is not None
        and request.range_end is not None
        and request.range_start >= request.range_end
    ):
        problem("bad_time_range", "the time range ends before it starts")
    if kind is RequestType.emergency_disclosure:
        if not str(request.emergency.get("threat") or "").strip():
            problem(
                "emergency_details",
                "describe the imminent danger of death or serious physical injury",
            )
        if not str(request.emergency.get("supervisor") or "").strip():
            problem("emergency_details", "name the supervisor who confirms the request")
    return problems


def request_digest(request: LegalRequest) -> str:
    """What approvals are bound to: every field that says what may be disclosed, and to whom."""
    body = {
        "type": request.type,
        "authority": request.authority,
        "jurisdiction": request.jurisdiction,
        "legal_basis": request.legal_basis,
        "reference": request.reference,
        "issued_at": request.issued_at,
        "expires_at": request.expires_at,
        "accounts": sorted(request.accounts),
        "data_categories": sorted(request.data_categories),
        "range_start": request.range_start,
        "range_end": request.range_end,
        "non_disclosure": request.non_disclosure,
        "non_disclosure_until": request.non_disclosure_until,
        "emergency": request.emergency,
        "document_sha256": request.document_sha256,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def receive(session: Session, settings: Settings, actor: Actor, **fields: Any) -> LegalRequest:
    """Record a legal request as received, validated; an invalid one is kept with its reasons."""
    require_legal(actor)
    now = utcnow()
    kind = RequestType(fields["type"])
    request = LegalRequest(
        id=str(uuid.uuid4()),
        type=kind.value,
        authority=fields["authority"],
        contact=fields.get("contact") or {},
        jurisdiction=fields["jurisdiction"].strip().upper(),
        legal_basis=fields["legal_basis"],
        reference=fields["reference"],
        issued_at=fields.get("issued_at"),
        received_at=fields.get("received_at") or now,
        expires_at=fields.get("expires_at"),
        accounts=sorted(dict.fromkeys(fields.get("accounts") or [])),
        data_categories=sorted({Category(c).value for c in fields.get("data_categories") or []}),
        range_start=fields.get("range_start"),
        range_end=fields.get("range_end"),
        non_disclosure=bool(fields.get("non_disclosure") or fields.get("non_disclosure_until")),
        non_disclosure_until=fields.get("non_disclosure_until"),
        emergency=fields.get("emergency") or {},
        document_sha256=fields.get("document_sha256"),
        notes=fields.get("notes") or "",
        created_by=actor.label,
        created_at=now,
        decision_note="",
    )
    if request.received_at > now + timedelta(minutes=5):
        raise InvalidInput("received_at is in the future")
    request.digest = request_digest(request)
    request.problems = check(request, settings, now)
    request.status = (Status.invalid if request.problems else Status.pending).value
    session.add(request)
    session.flush()
    audit.record(
        session,
        actor.label,
        "legal.request.receive",
        target(request.id),
        {
            "type": request.type,
            "jurisdiction": request.jurisdiction,
            "status": request.status,
            "problems": [p["code"] for p in request.problems],
            "digest": request.digest,
            "accounts": len(request.accounts),
            "categories": request.data_categories,
            "non_disclosure": request.non_disclosure,
        },
    )
    if kind is RequestType.preservation_request and request.status == Status.pending:
        create_hold(session, settings, actor, request.id)
        request.status = Status.approved.value  # preservation discloses nothing: executable now
        request.approved_at = now
    return request


def get_request(session: Session, request_id: str, lock: bool = False) -> LegalRequest:
    query = select(LegalRequest).where(LegalRequest.id == request_id)
    if lock:
        query = query.with_for_update()
    request = session.scalar(query)
    if request is None:
        raise NotFound(f"no legal request {request_id!r}")
    return request


def list_requests(
    session: Session, status: str | None = None, kind: str | None = None, limit: int = 100
) -> list[LegalRequest]:
    query = select(LegalRequest)
    if status:
        query = query.where(LegalRequest.status == status)
    if kind:
        query = query.where(LegalRequest.type == kind)
    return list(session.scalars(query.order_by(LegalRequest.received_at.desc()).limit(limit)))


def _needed(request: LegalRequest) -> int:
    return 1 if request.type == RequestType.emergency_disclosure else 2


def _approvers(request: LegalRequest) -> set[str]:
    return {a.actor_id for a in request.approvals if a.digest == request.digest}


# --- approval, rejection, emergency review ------------------------------------------------------


def approve(
    session: Session, settings: Settings, actor: Actor, request_id: str, note: str = ""
) -> LegalRequest:
    require_legal(actor)
    request = get_request(session, request_id, lock=True)
    now = utcnow()
    if request.status == Status.invalid:
        raise Refused(
            "invalid",
            "the request failed validation and cannot be approved",
            409,
            problems=request.problems,
        )
    if request.status in (Status.rejected, Status.closed):
        raise Refused("closed", f"the request is {request.status}", 409)
    if request.type not in PRODUCING:
        raise Refused("nothing_to_approve", f"a {request.type} discloses nothing to approve", 409)
    if request.status == Status.approved:
        raise Refused("already_approved", "the request is already approved", 409)
    problems = check(request, settings, now)
    if problems:
        raise Refused(
            problems[0]["code"], "; ".join(p["message"] for p in problems), 409, problems=problems
        )
    me = actor_id(actor)
    if me in _approvers(request):
        raise Refused(
            "same_approver",
            "you have already approved this request; a second, different person with the "
            "legal role must approve it",
            409,
        )
    session.add(
        LegalApproval(
            request_id=request.id,
            actor_id=me,
            actor=actor.label,
            role=actor.role.value,
            digest=request.digest,
            note=note,
            created_at=now,
        )
    )
    session.flush()
    session.refresh(request, ["approvals"])
    approvers = _approvers(request)
    audit.record(
        session,
        actor.label,
        "legal.request.approve",
        target(request.id),
        {"digest": request.digest, "approvals": len(approvers), "needed": _needed(request)},
    )
    if len(approvers) >= _needed(request):
        request.status, request.approved_at = Status.approved.value, now
        emergency = request.type == RequestType.emergency_disclosure
        if emergency:
            request.review_due_at = now + timedelta(hours=settings.legal_emergency_review_hours)
        audit.record(
            session,
            actor.label,
            "legal.request.executable",
            target(request.id),
            {
                "approvers": sorted(approvers),
                "emergency": emergency,
                "review_due_at": request.review_due_at,
            },
        )
        schedule_notices(session, request, request.accounts, actor.label, now)
    return request


def reject(session: Session, actor: Actor, request_id: str, reason: str) -> LegalRequest:
    require_legal(actor)
    request = get_request(session, request_id, lock=True)
    if request.status in (Status.rejected, Status.closed):
        raise Refused("closed", f"the request is already {request.status}", 409)
    request.status, request.decided_by, request.decision_note = (
        Status.rejected.value,
        actor.label,
        reason,
    )
    audit.record(
        session, actor.label, "legal.request.reject", target(request.id), {"reason": reason}
    )
    return request


def close(session: Session, actor: Actor, request_id: str, note: str = "") -> LegalRequest:
    require_legal(actor)
    request = get_request(session, request_id, lock=True)
    if request.status == Status.closed:
        raise Refused("closed", "the request is already closed", 409)
    request.status, request.decided_by, request.decision_note = (
        Status.closed.value,
        actor.label,
        note,
    )
    audit.record(session, actor.label, "legal.request.close", target(request.id), {"note": note})
    return request


def review_emergency(
    session: Session,
    actor: Actor,
    request_id: str,
    outcome: str,
    note: str = "",
    notice_after: datetime | None = None,
) -> LegalRequest:
    """The second look at an emergency disclosure, by someone other than its approver."""
    require_legal(actor)
    request = get_request(session, request_id, lock=True)
    if request.type != RequestType.emergency_disclosure or request.status != Status.approved:
        raise Refused("not_reviewable", "only an approved emergency disclosure is reviewed", 409)
    if request.reviewed_at is not None:
        raise Refused("already_reviewed", "the emergency disclosure was already reviewed", 409)
    if actor_id(actor) in _approvers(request):
        raise Refused(
            "same_reviewer", "the second review must be by someone other than the approver", 409
        )
    if outcome not in ("confirmed", "disputed"):
        raise InvalidInput("outcome is confirmed or disputed")
    now = utcnow()
    late = request.review_due_at is not None and now > request.review_due_at
    request.reviewed_at, request.reviewed_by, request.review_outcome = now, actor.label, outcome
    for notice in session.scalars(
        select(UserNotice).where(
            UserNotice.request_id == request.id,
            UserNotice.status == "withheld",
            UserNotice.reason == "emergency",
        )
    ):
        notice.status, notice.reason, notice.send_after = "scheduled", "", notice_after or now
    audit.record(
        session,
        actor.label,
        "legal.emergency.review",
        target(request.id),
        {"outcome": outcome, "late": late, "due": request.review_due_at, "note": note},
    )
    return request


def overdue_emergencies(session: Session, now: datetime | None = None) -> list[LegalRequest]:
    now = now or utcnow()
    return list(
        session.scalars(
            select(LegalRequest)
            .where(
                LegalRequest.type == RequestType.emergency_disclosure.value,
                LegalRequest.status == Status.approved.value,
                LegalRequest.reviewed_at.is_(None),
                LegalRequest.review_due_at < now,
            )
            .order_by(LegalRequest.review_due_at)
        )
    )


# --- production ---------------------------------------------------------------------------------


def narrow(
    request: LegalRequest,
    accounts: Iterable[str] | None,
    categories: Iterable[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> production.Scope:
    """The scope asked for, which must lie within the approved one."""
    approved_categories = set(request.data_categories) & COMPELS[RequestType(request.type)]
    asked_accounts = sorted(set(accounts)) if accounts else list(request.accounts)
    asked_categories = sorted(set(categories)) if categories else sorted(approved_categories)
    outside_accounts = sorted(set(asked_accounts) - set(request.accounts))
    outside_categories = sorted(set(asked_categories) - approved_categories)
    start = start or request.range_start
    end = end or request.range_end
    assert request.range_start is not None and request.range_end is not None
    assert start is not None and end is not None
    if outside_accounts or outside_categories:
        raise Refused(
            "out_of_scope",
            "outside the approved scope: "
            + "; ".join(
                part
                for part in (
                    f"accounts {outside_accounts}" if outside_accounts else "",
                    f"categories {outside_categories}" if outside_categories else "",
                )
                if part
            ),
            accounts=len(outside_accounts),
            categories=outside_categories,
        )
    if start < request.range_start or end > request.range_end:
        raise Refused(
            "out_of_scope",
            f"outside the approved time range {request.range_start.isoformat()} to "
            f"{request.range_end.isoformat()}",
        )
    if start >= end:
        raise InvalidInput("the time range ends before it starts")
    return production.Scope(tuple(asked_accounts), tuple(asked_categories), start, end)


def produce(
    session: Session,
    settings: Settings,
    actor: Actor,
    request_id: str,
    accounts: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[LegalProduction, bytes]:
    """Export what the platform holds within the approved scope, as a signed zip."""
    require_legal(actor)
    request = get_request(session, request_id, lock=True)
    now = utcnow()
    if request.type not in PRODUCING:
        raise Refused("nothing_to_produce", f"a {request.type} compels no production", 409)
    if request.status == Status.invalid:
        raise Refused("invalid", "the request failed validation", 403, problems=request.problems)
    if request.status in (Status.rejected, Status.closed):
        raise Refused("closed", f"the request is {request.status}", 403)
    approvers, needed = _approvers(request), _needed(request)
    if request.status != Status.approved or len(approvers) < needed:
        raise Refused(
            "not_approved",
            f"a production needs the approval of {needed} different people with the legal "
            f"role; this request has {len(approvers)}",
            approvals=len(approvers),
            needed=needed,
        )
    if request.expires_at is not None and now >= request.expires_at:
        raise Refused("expired", f"the legal process expired at {request.expires_at.isoformat()}")
    problems = check(request, settings, now)
    if problems:
        raise Refused(problems[0]["code"], "; ".join(p["message"] for p in problems))
    if request.review_outcome == "disputed":
        raise Refused("disputed", "the second review disputed this emergency disclosure")
    scope = narrow(request, accounts, categories, start, end)
    files = production.collect(session, scope)
    production_id = str(uuid.uuid4())
    manifest = {
        "production_id": production_id,
        "produced_at": now.isoformat(),
        "produced_by": actor.label,
        "request": {
            "id": request.id,
            "type": request.type,
            "authority": request.authority,
            "jurisdiction": request.jurisdiction,
            "legal_basis": request.legal_basis,
            "reference": request.reference,
            "digest": request.digest,
            "emergency": request.type == RequestType.emergency_disclosure,
        },
        "scope": scope.to_dict(),
        "approvals": [
            {"actor": a.actor, "role": a.role, "at": a.created_at.isoformat(), "digest": a.digest}
            for a in request.approvals
        ],
    }
    data, manifest_bytes = production.build_bundle(files, manifest, signing_key(settings))
    row = LegalProduction(
        id=production_id,
        request_id=request.id,
        produced_by=actor.label,
        produced_at=now,
        scope=scope.to_dict(),
        files=[{"path": f.path, "records": f.records, "bytes": len(f.data)} for f in files],
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        zip_sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor.label,
        "legal.export",
        target(request.id),
        {
            "production": row.id,
            "manifest_sha256": row.manifest_sha256,
            "zip_sha256": row.zip_sha256,
            "categories": list(scope.categories),
            "accounts": len(scope.accounts),
            "start": scope.start,
            "end": scope.end,
            "records": {f.path: f.records for f in files if f.path.endswith(".ndjson")},
        },
    )
    return row, data


def list_productions(session: Session, request_id: str) -> list[LegalProduction]:
    return list(
        session.scalars(
            select(LegalProduction)
            .where(LegalProduction.request_id == request_id)
            .order_by(LegalProduction.produced_at)
        )
    )


# --- preservation -------------------------------------------------------------------------------


def create_hold(
    session: Session,
    settings: Settings,
    actor: Actor | str,
    request_id: str,
    content_ids: list[str] | None = None,
    days: float | None = None,
    reason: str = "",
    accounts: list[str] | None = None,
) -> PreservationHold:
    """Freeze the request's accounts (within its time range) and any given contents."""
    label = actor if isinstance(actor, str) else actor.label
    if not isinstance(actor, str):
        require_legal(actor)
    request = get_request(session, request_id)
    if request.status in (Status.invalid, Status.rejected):
        raise Refused("invalid", f"a {request.status} request preserves nothing", 409)
    now = utcnow()
    hold = PreservationHold(
        id=str(uuid.uuid4()),
        request_id=request.id,
        accounts=list(request.accounts if accounts is None else accounts),
        content_ids=list(content_ids or []),
        range_start=request.range_start,
        range_end=request.range_end,
        reason=reason or f"{request.type} {request.reference}",
        created_by=label,
        created_at=now,
        expires_at=now + timedelta(days=days or settings.legal_hold_days),
        renewals=0,
    )
    session.add(hold)
    session.flush()
    audit.record(
        session,
        label,
        "legal.hold.create",
        target(request.id),
        {
            "hold": hold.id,
            "accounts": len(hold.accounts),
            "contents": len(hold.content_ids),
            "expires_at": hold.expires_at,
        },
    )
    return hold


def get_hold(session: Session, hold_id: str) -> PreservationHold:
    hold = session.get(PreservationHold, hold_id)
    if hold is None:
        raise NotFound(f"no preservation hold {hold_id!r}")
    return hold


def renew_hold(
    session: Session, settings: Settings, actor: Actor, hold_id: str, days: float | None = None
) -> PreservationHold:
    require_legal(actor)
    hold = get_hold(session, hold_id)
    now = utcnow()
    if hold.released_at is not None:
        raise Refused("released", "the hold was released", 409)
    hold.expires_at = max(hold.expires_at, now) + timedelta(days=days or settings.legal_hold_days)
    hold.renewals += 1
    audit.record(
        session,
        actor.label,
        "legal.hold.renew",
        target(hold.request_id or ""),
        {"hold": hold.id, "expires_at": hold.expires_at, "renewals": hold.renewals},
    )
    return hold


def release_hold(session: Session, actor: Actor, hold_id: str) -> PreservationHold:
    require_legal(actor)
    hold = get_hold(session, hold_id)
    if hold.released_at is not None:
        raise Refused("released", "the hold was already released", 409)
    hold.released_at, hold.released_by = utcnow(), actor.label
    audit.record(
        session, actor.label, "legal.hold.release", target(hold.request_id or ""), {"hold": hold.id}
    )
    return hold


def active_holds(session: Session, now: datetime | None = None) -> list[PreservationHold]:
    now = now or utcnow()
    return list(
        session.scalars(
            select(PreservationHold).where(
                PreservationHold.released_at.is_(None), PreservationHold.expires_at > now
            )
        )
    )


def _held(holds: list[PreservationHold], content: Content) -> bool:
    for hold in holds:
        if content.content_id is not None and content.content_id in hold.content_ids:
            return True
        if content.user_id is not None and content.user_id in hold.accounts:
            if hold.range_start is not None and content.created_at < hold.range_start:
                continue
            if hold.range_end is not None and content.created_at > hold.range_end:
                continue
            return True
    return False


def is_preserved(session: Session, content: Content, now: datetime | None = None) -> bool:
    """Whether a preservation hold covers this content; call before deleting anything of it."""
    return _held(active_holds(session, now), content)


def _referencing_columns() -> tuple[list, list]:
    """Columns of other tables that point at contents or decisions (found from the schema)."""
    to_contents, to_decisions = [], []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "contents" and table.name != "decisions":
                to_contents.append(fk.parent)
            elif fk.column.table.name == "decisions":
                to_decisions.append(fk.parent)
    return to_contents, to_decisions


def retention_sweep(
    session: Session, settings: Settings, now: datetime | None = None, batch: int = 500
) -> dict[str, Any]:
    """Delete screened contents (and their decisions) older than PRESCREEN_RETENTION_DAYS,
    except those a preservation hold covers and those other records still refer to."""
    if settings.retention_days is None:
        return {"enabled": False}
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    holds = active_holds(session, now)
    to_contents, to_decisions = _referencing_columns()
    deleted = held = referenced = 0
    after = ""
    while True:
        contents = list(
            session.scalars(
                select(Content)
                .where(Content.created_at < cutoff, Content.id > after)
                .order_by(Content.id)
                .limit(batch)
            )
        )
        if not contents:
            break
        after = contents[-1].id
        ids = [c.id for c in contents]
        decisions = dict(
            session.execute(
                select(Decision.id, Decision.content_pk).where(Decision.content_pk.in_(ids))
            ).all()
        )
        kept: set[str] = set()
        for column in to_contents:
            kept.update(session.scalars(select(column).where(column.in_(ids))))
        for column in to_decisions:
            kept.update(
                decisions[d]
                for d in session.scalars(select(column).where(column.in_(list(decisions))))
                if d in decisions
            )
        doomed = []
        for content in contents:
            if _held(holds, content):
                held += 1
            elif content.id in kept:
                referenced += 1
            else:
                doomed.append(content.id)
        if doomed:
            session.execute(delete(Decision).where(Decision.content_pk.in_(doomed)))
            session.execute(delete(Content).where(Content.id.in_(doomed)))
            deleted += len(doomed)
        session.expunge_all()
    result = {
        "enabled": True,
        "cutoff": cutoff.isoformat(),
        "deleted": deleted,
        "kept_for_holds": held,
        "kept_referenced": referenced,
    }
    if deleted or held:
        audit.record(session, audit.SYSTEM_ACTOR, "retention.sweep", "contents", result)
    return result


# --- user notice --------------------------------------------------------------------------------


def _notice_plan(request: LegalRequest, now: datetime) -> tuple[str, str, datetime | None]:
    if request.non_disclosure:
        if request.non_disclosure_until is not None:
            return "scheduled", "non_disclosure_order", request.non_disclosure_until
        return "withheld", "non_disclosure_order", None
    if request.type == RequestType.emergency_disclosure and request.reviewed_at is None:
        return "withheld", "emergency", None
    return "scheduled", "", now


def schedule_notices(
    session: Session, request: LegalRequest, users: Iterable[str], actor: str, now: datetime
) -> list[UserNotice]:
    status, reason, send_after = _notice_plan(request, now)
    notices = [
        UserNotice(
            id=str(uuid.uuid4()),
            request_id=request.id,
            user_id=user,
            status=status,
            reason=reason,
            send_after=send_after,
            created_at=now,
        )
        for user in sorted(set(users))
    ]
    session.add_all(notices)
    session.flush()
    if notices:
        audit.record(
            session,
            actor,
            "legal.notice.schedule",
            target(request.id),
            {"notices": len(notices), "status": status, "reason": reason, "send_after": send_after},
        )
    return notices


def list_notices(session: Session, status: str | None = None, limit: int = 100) -> list[UserNotice]:
    query = select(UserNotice)
    if status:
        query = query.where(UserNotice.status == status)
    return list(session.scalars(query.order_by(UserNotice.created_at).limit(limit)))


def _get_notice(session: Session, notice_id: str) -> UserNotice:
    notice = session.get(UserNotice, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id!r}")
    return notice


def mark_notice_sent(session: Session, actor: Actor, notice_id: str) -> UserNotice:
    require_legal(actor)
    notice = _get_notice(session, notice_id)
    if notice.status == "withheld":
        raise Refused("withheld", f"the notice is withheld ({notice.reason})", 409)
    notice.status, notice.sent_at, notice.channel = "sent", utcnow(), "manual"
    audit.record(
        session, actor.label, "legal.notice.sent", target(notice.request_id), {"notice": notice.id}
    )
    return notice


def reschedule_notice(
    session: Session, actor: Actor, notice_id: str, send_after: datetime
) -> UserNotice:
    """Set when a notice may go (e.g. when a non-disclosure order is lifted)."""
    require_legal(actor)
    notice = _get_notice(session, notice_id)
    if notice.status == "sent":
        raise Refused("sent", "the notice was already sent", 409)
    notice.status, notice.reason, notice.send_after = "scheduled", "rescheduled", send_after
    audit.record(
        session,
        actor.label,
        "legal.notice.schedule",
        target(notice.request_id),
        {"notice": notice.id, "send_after": send_after},
    )
    return notice


def send_due_notices(session: Session, now: datetime | None = None) -> int:
    """Hand notices whose date has come to the platform (webhook event `user_notice` to every
    integrator key that submitted the user's content); without a webhook they become `due`."""
    now = now or utcnow()
    notices = list(
        session.scalars(
            select(UserNotice)
            .where(UserNotice.status == "scheduled", UserNotice.send_after <= now)
            .limit(200)
        )
    )
    for notice in notices:
        request = session.get(LegalRequest, notice.request_id)
        assert request is not None
        keys = sorted(
            k
            for k in session.scalars(
                select(Content.owner_key_id)
                .where(Content.user_id == notice.user_id, Content.owner_key_id.is_not(None))
                .distinct()
            )
            if k and get_endpoint(session, k) is not None
        )
        payload = {
            "notice_id": notice.id,
            "user_id": notice.user_id,
            "request_type": request.type,
            "authority": request.authority,
            "jurisdiction": request.jurisdiction,
            "reference": request.reference,
            "data_categories": request.data_categories,
            "received_at": request.received_at.isoformat(),
        }
        for key in keys:
            notify(session, key, "user_notice", payload)
        if keys:
            notice.status, notice.sent_at, notice.channel = "sent", now, "webhook"
        else:
            notice.status = "due"
        audit.record(
            session,
            audit.SYSTEM_ACTOR,
            f"legal.notice.{notice.status}",
            target(request.id),
            {"notice": notice.id, "platform_keys": len(keys)},
        )
    return len(notices)


# --- removal orders (EU TCO Regulation) -----------------------------------------------------------


def receive_removal_order(
    session: Session,
    settings: Settings,
    actor: Actor,
    items: list[dict[str, str | None]],
    statement: str = "",
    withhold_from_provider: bool = False,
    **fields: Any,
) -> RemovalOrder:
    """Record a removal order; its one-hour clock runs from `received_at` (default: now)."""
    fields.setdefault("legal_basis", "Regulation (EU) 2021/784, Article 3")
    request = receive(
        session,
        settings,
        actor,
        type=RequestType.removal_order.value,
        non_disclosure=withhold_from_provider,
        **fields,
    )
    if not items or any(not (i.get("url") or i.get("content_id")) for i in items):
        raise InvalidInput("each item of a removal order names a url or a content_id")
    order = RemovalOrder(
        id=str(uuid.uuid4()),
        request_id=request.id,
        status="invalid" if request.status == Status.invalid else "received",
        received_at=request.received_at,
        deadline_at=request.received_at
        + timedelta(minutes=settings.legal_removal_deadline_minutes),
        statement=statement,
        withhold_from_provider=withhold_from_provider,
        items=[
            {"url": i.get("url"), "content_id": i.get("content_id"), "status": "pending"}
            for i in items
        ],
    )
    session.add(order)
    session.flush()
    audit.record(
        session,
        actor.label,
        "legal.removal.receive",
        target(request.id),
        {"order": order.id, "items": len(order.items), "deadline_at": order.deadline_at},
    )
    return order


def get_order(session: Session, order_id: str, lock: bool = False) -> RemovalOrder:
    query = select(RemovalOrder).where(RemovalOrder.id == order_id)
    if lock:
        query = query.with_for_update()
    order = session.scalar(query)
    if order is None:
        raise NotFound(f"no removal order {order_id!r}")
    return order


def _resolve(session: Session, settings: Settings, item: dict[str, Any]) -> list[Content]:
    if item.get("content_id"):
        return list(
            session.scalars(select(Content).where(Content.content_id == item["content_id"]))
        )
    from prescreen.screening.service import fingerprint, hash_url

    try:
        print_ = fingerprint(hash_url(item["url"], settings))
    except (PrescreenError, ValueError):
        return []
    return list(session.scalars(select(Content).where(Content.fingerprint == print_)))


def execute_removal(
    session: Session, settings: Settings, actor: Actor, order_id: str
) -> RemovalOrder:
    """Remove the ordered content through the decision path review uses: a human `block`
    decision per content, the platform told (webhook event `removal`), the content preserved
    for six months (Art. 6), and the content provider's notice scheduled (Art. 11)."""
    require_legal(actor)
    order = get_order(session, order_id, lock=True)
    if order.status not in ("received", "partial"):
        raise Refused("not_executable", f"the removal order is {order.status}", 409)
    request = get_request(session, order.request_id)
    now = utcnow()
    items, removed, users = [], [], set()
    for item in order.items:
        item = dict(item)
        if item["status"] != "removed":
            contents = _resolve(session, settings, item)
            if not contents:
                item["status"] = "not_found"
            else:
                decisions = []
                for content in contents:
                    decision = Decision(
                        id=str(uuid.uuid4()),
                        content_pk=content.id,
                        outcome="block",
                        reasons=[
                            {
                                "kind": "removal_order",
                                "order": order.id,
                                "authority": request.authority,
                                "jurisdiction": request.jurisdiction,
                                "reference": request.reference,
                                "legal_basis": request.legal_basis,
                            }
                        ],
                        matches=[],
                        automated=False,
                        policy_version="removal-order",
                        statement_of_reasons_id=str(uuid.uuid4()),
                        created_at=now,
                    )
                    session.add(decision)
                    decisions.append(decision.id)
                    if content.content_id:
                        removed.append(content.content_id)
                    if content.user_id:
                        users.add(content.user_id)
                    notify(
                        session,
                        content.owner_key_id,
                        "removal",
                        {
                            "order_id": order.id,
                            "reference": request.reference,
                            "authority": request.authority,
                            "jurisdiction": request.jurisdiction,
                            "content_id": content.content_id,
                            "user_id": content.user_id,
                            "url": item.get("url"),
                            "decision_id": decision.id,
                            "action": "remove",
                            "received_at": order.received_at.isoformat(),
                            "deadline_at": order.deadline_at.isoformat(),
                            "removed_at": now.isoformat(),
                            "inform_provider": not order.withhold_from_provider,
                        },
                    )
                item.update(status="removed", removed_at=now.isoformat(), decisions=decisions)
        items.append(item)
    session.flush()
    order.items = items
    statuses = {i["status"] for i in items}
    if statuses == {"removed"}:
        order.status, order.executed_at, order.executed_by = "executed", now, actor.label
    elif "removed" in statuses:
        order.status, order.executed_at, order.executed_by = "partial", now, actor.label
    if removed:
        create_hold(
            session,
            settings,
            actor,
            request.id,
            content_ids=removed,
            accounts=[],
            days=TCO_PRESERVATION_DAYS,
            reason="removed under a TCO removal order (Art. 6)",
        )
    if users:
        schedule_notices(session, request, users, actor.label, now)
    seconds = (now - order.received_at).total_seconds()
    audit.record(
        session,
        actor.label,
        "legal.removal.execute",
        target(request.id),
        {
            "order": order.id,
            "status": order.status,
            "removed": sum(1 for i in items if i["status"] == "removed"),
            "not_found": sum(1 for i in items if i["status"] == "not_found"),
            "seconds_since_receipt": int(seconds),
            "within_deadline": now <= order.deadline_at,
        },
    )
    return order


def removal_unable(session: Session, actor: Actor, order_id: str, reason: str) -> RemovalOrder:
    """Inability to comply (Annex III): force majeure, technical reasons, manifest errors."""
    require_legal(actor)
    order = get_order(session, order_id, lock=True)
    if order.status in ("executed", "unable"):
        raise Refused("not_executable", f"the removal order is {order.status}", 409)
    order.status, order.unable_reason = "unable", reason
    audit.record(
        session,
        actor.label,
        "legal.removal.unable",
        target(order.request_id),
        {"order": order.id, "reason": reason},
    )
    return order


def removal_confirmation(session: Session, order: RemovalOrder) -> dict[str, Any]:
    """What goes back to the issuing authority (the Annex II information)."""
    request = get_request(session, order.request_id)
    seconds = (order.executed_at - order.received_at).total_seconds() if order.executed_at else None
    return {
        "order_id": order.id,
        "reference": request.reference,
        "authority": request.authority,
        "jurisdiction": request.jurisdiction,
        "legal_basis": request.legal_basis,
        "status": order.status,
        "received_at": order.received_at.isoformat(),
        "deadline_at": order.deadline_at.isoformat(),
        "executed_at": order.executed_at.isoformat() if order.executed_at else None,
        "seconds_to_removal": seconds,
        "within_deadline": order.executed_at is not None and order.executed_at <= order.deadline_at,
        "items": [
            {k: i.get(k) for k in ("url", "content_id", "status", "removed_at")}
            for i in order.items
        ],
        "unable_reason": order.unable_reason,
        "content_provider_informed": not order.withhold_from_provider,
    }


def removal_report(
    session: Session, start: datetime, end: datetime, now: datetime | None = None
) -> dict[str, Any]:
    """Time to removal for the orders received in [start, end) (TCO Art. 7(3)(c) figures)."""
    now = now or utcnow()
    orders = list(
        session.scalars(
            select(RemovalOrder)
            .where(RemovalOrder.received_at >= start, RemovalOrder.received_at < end)
            .order_by(RemovalOrder.received_at)
        )
    )
    rows, times = [], []
    for order in orders:
        confirmation = removal_confirmation(session, order)
        if confirmation["seconds_to_removal"] is not None:
            times.append(confirmation["seconds_to_removal"])
        confirmation["overdue"] = order.executed_at is None and now > order.deadline_at
        rows.append(confirmation)
    times.sort()

    def pct(q: float) -> float | None:
        return times[min(len(times) - 1, int(q * len(times)))] if times else None

    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "received": len(orders),
        "executed": sum(1 for r in rows if r["executed_at"]),
        "executed_within_deadline": sum(1 for r in rows if r["within_deadline"]),
        "not_executed": sum(1 for r in rows if not r["executed_at"]),
        "not_executed_reasons": [r["unable_reason"] for r in rows if r["unable_reason"]],
        "invalid": sum(1 for r in rows if r["status"] == "invalid"),
        "overdue": sum(1 for r in rows if r["overdue"]),
        "items_removed": sum(1 for r in rows for i in r["items"] if i["status"] == "removed"),
        "seconds_to_removal": {
            "median": pct(0.5),
            "p90": pct(0.9),
            "max": times[-1] if times else None,
        },
        "orders": rows,
    }


# --- clocks ------------------------------------------------------------------------------------


def tick(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Flag overdue emergency reviews and removal orders (once each), send due notices."""
    now = now or utcnow()
    flagged = 0
    for request in overdue_emergencies(session, now):
        if request.review_overdue_at is None:
            request.review_overdue_at = now
            audit.record(
                session,
                audit.SYSTEM_ACTOR,
                "legal.emergency.overdue",
                target(request.id),
                {"due": request.review_due_at},
            )
            flagged += 1
    for order in session.scalars(
        select(RemovalOrder).where(
            RemovalOrder.status.in_(["received", "partial"]),
            RemovalOrder.deadline_at < now,
            RemovalOrder.overdue_at.is_(None),
        )
    ):
        order.overdue_at = now
        audit.record(
            session,
            audit.SYSTEM_ACTOR,
            "legal.removal.overdue",
            target(order.request_id),
            {"order": order.id, "deadline_at": order.deadline_at},
        )
        flagged += 1
    return {"flagged": flagged, "notices": send_due_notices(session, now)}


periodic(TICK_JOB, lambda settings: 60.0)
periodic(
    RETENTION_JOB,
    lambda settings: settings.retention_sweep_minutes * 60 if settings.retention_days else None,
)


@job_handler(TICK_JOB)
def tick_job(ctx: JobContext) -> dict[str, Any]:
    result = tick(ctx.session)
    rearm(ctx)
    return result


@job_handler(RETENTION_JOB)
def retention_job(ctx: JobContext) -> dict[str, Any]:
    result = retention_sweep(ctx.session, job_settings(ctx))
    rearm(ctx)
    return result


# --- views --------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def request_to_dict(request: LegalRequest, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    approvers = _approvers(request)
    return {
        "id": request.id,
        "type": request.type,
        "status": request.status,
        "authority": request.authority,
        "contact": request.contact,
        "jurisdiction": request.jurisdiction,
        "legal_basis": request.legal_basis,
        "reference": request.reference,
        "issued_at": _iso(request.issued_at),
        "received_at": _iso(request.received_at),
        "expires_at": _iso(request.expires_at),
        "scope": {
            "accounts": request.accounts,
            "data_categories": request.data_categories,
            "start": _iso(request.range_start),
            "end": _iso(request.range_end),
        },
        "non_disclosure": request.non_disclosure,
        "non_disclosure_until": _iso(request.non_disclosure_until),
        "emergency": request.emergency,
        "document_sha256": request.document_sha256,
        "notes": request.notes,
        "digest": request.digest,
        "problems": request.problems,
        "created_by": request.created_by,
        "approvals": [
            {"actor": a.actor, "role": a.role, "at": _iso(a.created_at), "note": a.note}
            for a in request.approvals
        ],
        "approvals_needed": _needed(request) if request.type in PRODUCING else 0,
        "approved": len(approvers) >= _needed(request) and request.status == Status.approved,
        "approved_at": _iso(request.approved_at),
        "decision_note": request.decision_note,
        "second_review": (
            {
                "due_at": _iso(request.review_due_at),
                "reviewed_at": _iso(request.reviewed_at),
                "reviewed_by": request.reviewed_by,
                "outcome": request.review_outcome,
                "overdue": request.reviewed_at is None
                and request.review_due_at is not None
                and now > request.review_due_at,
            }
            if request.type == RequestType.emergency_disclosure
            else None
        ),
    }


def production_to_dict(row: LegalProduction) -> dict[str, Any]:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "produced_by": row.produced_by,
        "produced_at": _iso(row.produced_at),
        "scope": row.scope,
        "files": row.files,
        "manifest_sha256": row.manifest_sha256,
        "zip_sha256": row.zip_sha256,
        "bytes": row.size,
    }


def hold_to_dict(hold: PreservationHold, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "id": hold.id,
        "request_id": hold.request_id,
        "accounts": hold.accounts,
        "content_ids": hold.content_ids,
        "start": _iso(hold.range_start),
        "end": _iso(hold.range_end),
        "reason": hold.reason,
        "created_by": hold.created_by,
        "created_at": _iso(hold.created_at),
        "expires_at": _iso(hold.expires_at),
        "renewals": hold.renewals,
        "released_at": _iso(hold.released_at),
        "active": hold.released_at is None and hold.expires_at > now,
    }


def notice_to_dict(notice: UserNotice) -> dict[str, Any]:
    return {
        "id": notice.id,
        "request_id": notice.request_id,
        "user_id": notice.user_id,
        "status": notice.status,
        "reason": notice.reason,
        "send_after": _iso(notice.send_after),
        "sent_at": _iso(notice.sent_at),
        "channel": notice.channel,
    }


def order_to_dict(session: Session, order: RemovalOrder, now: datetime | None = None) -> dict:
    now = now or utcnow()
    body = removal_confirmation(session, order)
    body.update(
        request_id=order.request_id,
        statement=order.statement,
        overdue=order.executed_at is None and order.status != "unable" and now > order.deadline_at,
        seconds_left=max(0, int((order.deadline_at - now).total_seconds()))
        if order.executed_at is None
        else None,
    )
    return body


def forbidden_role(actor: Actor) -> Forbidden:
    return Forbidden(
        f"role {actor.role.value!r} may not do this",
        required=sorted(r.value for r in LEGAL_ROLES),
    )
