"""`/v1/review/...`: the review queue and its actions for platforms that build their own UI;
`/v1/appeals` and `/v1/reports` for integrators; `/v1/review/users` for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.deps import SESSION, get_settings, require
from prescreen.core.errors import NotFound
from prescreen.core.validation import MAX_ROW_ID, CleanStr, Identifier
from prescreen.review import service, users
from prescreen.review.models import StatementOfReasons
from prescreen.review.service import LEADS, REVIEWERS, Reviewer

router = APIRouter(prefix="/v1/review", tags=["review"])
integrations = APIRouter(prefix="/v1", tags=["review"])
UUID = r"^[0-9a-f-]{36}$"
CaseId = Annotated[str, Path(pattern=UUID, description="Case id")]
STATEMENT_READERS = (Role.integrator, Role.moderator, Role.lead, Role.legal, Role.auditor)
Reason = Annotated[CleanStr, Field(max_length=2000)]


def reviewer_of(actor: Actor) -> Reviewer:
    return Reviewer(f"apikey:{actor.key_id}", actor.role)


class CaseDecision(BaseModel):
    """`violating` (with a label; the signals go into `bank`, default the review bank),
    `not_violating` (the signals go into the allow-list) or `escalate` (to a lead)."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["violating", "not_violating", "escalate"]
    label: CleanStr | None = Field(None, max_length=64, description="Required for violating")
    bank: CleanStr | None = Field(None, max_length=128, description="Block or hold bank")
    share: bool = Field(False, description="Mark the bank entry for sharing with peers")
    reason: Reason = ""


class AppealDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["upheld", "reversed"]
    reason: Reason = ""


class AppealCreate(BaseModel):
    """The uploader appeals the decision on their content: give the decision or the content."""

    model_config = ConfigDict(extra="forbid")

    decision_id: Annotated[str, Field(pattern=UUID)] | None = None
    content_id: Identifier | None = None
    user_id: Identifier
    reason: Reason = ""


class ReportCreate(BaseModel):
    """A user reports content the platform screened earlier."""

    model_config = ConfigDict(extra="forbid")

    decision_id: Annotated[str, Field(pattern=UUID)] | None = None
    content_id: Identifier | None = None
    reporter_id: Identifier | None = None
    category: CleanStr | None = Field(None, max_length=64, description="e.g. terrorism, csam")
    reason: Reason = ""


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: CleanStr = Field(..., max_length=64)
    password: CleanStr = Field(..., max_length=1024)
    role: Literal["moderator", "lead", "admin", "legal", "auditor"]


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool


@router.get("/cases", summary="The queue: cases you may work, most urgent first")
def list_cases(
    status: Literal["pending", "open", "escalated", "decided", "all"] = "pending",
    kind: Literal["held", "report", "appeal"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
) -> dict:
    cases = service.list_cases(session, reviewer_of(actor), status, kind, limit, offset)
    return {"cases": [service.case_summary(case) for case in cases]}


@router.get("/cases/{case_id}", summary="A case with its contents, matches and history")
def read_case(
    case_id: CaseId,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    case = service.get_case(session, case_id, reviewer_of(actor))
    return service.case_detail(session, case, settings)


@router.post("/cases/{case_id}/claim", summary="Claim a case so nobody else works it")
def claim_case(
    case_id: CaseId,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    reviewer = reviewer_of(actor)
    case = service.claim(session, settings, service.get_case(session, case_id, reviewer), reviewer)
    return service.case_summary(case)


@router.post("/cases/{case_id}/release", summary="Release your claim (leads: anyone's)")
def release_case(
    case_id: CaseId,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
) -> dict:
    reviewer = reviewer_of(actor)
    case = service.release(session, service.get_case(session, case_id, reviewer), reviewer)
    return service.case_summary(case)


@router.post(
    "/cases/{case_id}/decision",
    summary="Decide a held or reported case: violating, not_violating or escalate",
    status_code=201,
)
def decide_case(
    case_id: CaseId,
    body: CaseDecision,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    reviewer = reviewer_of(actor)
    case = service.get_case(session, case_id, reviewer)
    review = service.decide_case(
        session,
        settings,
        case,
        reviewer,
        body.verdict,
        reason=body.reason,
        label=body.label,
        bank_name=body.bank,
        share=body.share,
    )
    return {"decision": service.review_decision_to_dict(review), "case": service.case_summary(case)}


@router.post(
    "/cases/{case_id}/appeal-decision",
    summary="Decide an appeal: upheld or reversed (not by the first reviewer)",
    status_code=201,
)
def decide_appeal(
    case_id: CaseId,
    body: AppealDecision,
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    reviewer = reviewer_of(actor)
    case = service.get_case(session, case_id, reviewer)
    review = service.decide_appeal(session, settings, case, reviewer, body.outcome, body.reason)
    return {"decision": service.review_decision_to_dict(review), "case": service.case_summary(case)}


@router.get(
    "/cases/{case_id}/media/{content_pk}",
    summary="A held item's bytes (never for CSAM-labelled cases)",
    response_class=Response,
)
def read_media(
    case_id: CaseId,
    content_pk: Annotated[str, Path(pattern=UUID)],
    actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
) -> Response:
    data, media_type = service.get_media(session, case_id, content_pk, reviewer_of(actor))
    return media_response(data, media_type)


def media_response(data: bytes, media_type: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline",
        },
    )


@router.get("/stats", summary="Queue size, SLA breaches and decisions per hour")
def read_stats(
    _actor: Actor = Depends(require(*REVIEWERS)),
    session: Session = SESSION,
) -> dict:
    return service.stats(session)


@router.get("/statements/{statement_id}", summary="A statement of reasons")
def read_statement(
    statement_id: Annotated[str, Path(pattern=UUID)],
    _actor: Actor = Depends(require(*STATEMENT_READERS)),
    session: Session = SESSION,
) -> dict:
    sor = session.get(StatementOfReasons, statement_id)
    if sor is None:
        raise NotFound(f"no statement of reasons {statement_id!r}")
    return service.statement_to_dict(sor)


@router.get("/users", summary="Web UI users (admins)")
def list_ui_users(
    _actor: Actor = Depends(require(Role.admin)),
    session: Session = SESSION,
) -> dict:
    return {"users": [users.user_to_dict(u) for u in users.list_users(session)]}


@router.post("/users", summary="Create a web UI user (admins)", status_code=201)
def create_ui_user(
    body: UserCreate,
    actor: Actor = Depends(require(Role.admin)),
    session: Session = SESSION,
) -> dict:
    user = users.create_user(session, body.username, body.password, body.role, actor.label)
    return users.user_to_dict(user)


@router.patch("/users/{user_id}", summary="Disable or enable a web UI user (admins)")
def update_ui_user(
    user_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    body: UserUpdate,
    actor: Actor = Depends(require(Role.admin)),
    session: Session = SESSION,
) -> dict:
    return users.user_to_dict(users.set_disabled(session, user_id, body.disabled, actor.label))


@integrations.post(
    "/appeals", summary="The uploader appeals a decision on their content", status_code=201
)
def create_appeal(
    body: AppealCreate,
    actor: Actor = Depends(require(Role.integrator)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    content, latest = service.find_content(
        session, body.decision_id, body.content_id, actor.key_id, actor.role is Role.admin
    )
    appeal = service.create_appeal(
        session, settings, content, latest, body.user_id, body.reason, actor.label[:160]
    )
    return service.appeal_to_dict(session, appeal)


@integrations.get("/appeals/{appeal_id}", summary="An appeal and its outcome")
def read_appeal(
    appeal_id: Annotated[str, Path(pattern=UUID)],
    actor: Actor = Depends(require(Role.integrator, *LEADS)),
    session: Session = SESSION,
) -> dict:
    appeal = service.get_appeal(
        session, appeal_id, actor.key_id, actor.role in (Role.admin, Role.lead)
    )
    return service.appeal_to_dict(session, appeal)


@integrations.post(
    "/reports", summary="A user reports content; it enters the review queue", status_code=201
)
def create_report(
    body: ReportCreate,
    actor: Actor = Depends(require(Role.integrator)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    content, latest = service.find_content(
        session, body.decision_id, body.content_id, actor.key_id, actor.role is Role.admin
    )
    case = service.report_content(
        session, settings, content, latest, body.reporter_id, body.category, body.reason
    )
    return {
        "case_id": case.id,
        "status": case.status,
        "priority": service.PRIORITY_NAMES[case.priority],
    }
