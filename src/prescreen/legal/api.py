"""`/v1/legal`: legal requests, approvals, productions, preservation holds, user notices and
removal orders. Only the `legal` role (and `admin`) acts; auditors may read. Every step, and
every refused attempt (wrong role included), is written to the audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role, authenticate_cached, check_role
from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.deps import SESSION, api_key_header, bearer, get_db, get_settings
from prescreen.core.validation import CleanStr, Identifier
from prescreen.legal import service
from prescreen.legal.service import Category, RequestType

router = APIRouter(prefix="/v1/legal", tags=["legal"])
ACTORS = frozenset({Role.legal})
READERS = frozenset({Role.legal, Role.auditor})
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
Id = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$")]


def _sane(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-12-01T00:00:00Z")
    if not EARLIEST <= value <= LATEST:
        raise ValueError("is out of range")
    return value


Time = Annotated[datetime | None, AfterValidator(_sane)]


def legal_actor(action: str, roles: frozenset[Role] = ACTORS) -> Callable[..., Actor]:
    """Authenticate; a caller without the role is refused, and the refusal is audited."""

    def dependency(
        request: Request,
        db: Database = Depends(get_db),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        header_key: str | None = Depends(api_key_header),
    ) -> Actor:
        presented = credentials.credentials if credentials else header_key
        actor = authenticate_cached(db, presented, request.app.state.settings.auth_cache_seconds)
        if actor.role is not Role.admin and actor.role not in roles:
            request_id = request.path_params.get("request_id")
            where = service.target(request_id) if request_id else request.url.path
            service.record_refusal(
                db,
                actor,
                action,
                where,
                "forbidden",
                f"role {actor.role.value} on {request.method} {request.url.path}",
            )
        check_role(actor, roles)
        return actor

    return dependency


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    officer: CleanStr = Field("", max_length=256)
    email: CleanStr = Field("", max_length=256)
    phone: CleanStr = Field("", max_length=64)
    callback_verified: bool = False


class Emergency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threat: CleanStr = Field("", max_length=4000, description="The imminent danger")
    supervisor: CleanStr = Field("", max_length=256, description="Who confirms the request")


class RequestCommon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authority: Identifier
    contact: Contact = Field(default_factory=Contact)
    jurisdiction: str = Field(..., pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")
    reference: Identifier
    issued_at: Time = None
    received_at: Time = Field(None, description="Default: now")
    expires_at: Time = None
    document_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    notes: CleanStr = Field("", max_length=4000)


class RequestCreate(RequestCommon):
    type: Literal[
        "subpoena", "court_order", "search_warrant", "emergency_disclosure", "preservation_request"
    ]
    legal_basis: CleanStr = Field(..., min_length=1, max_length=2000)
    accounts: list[Identifier] = Field(default_factory=list, max_length=1000)
    data_categories: list[Category] = Field(default_factory=list, max_length=8)
    start: Time = None
    end: Time = None
    non_disclosure: bool = False
    non_disclosure_until: Time = None
    emergency: Emergency = Field(default_factory=Emergency)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: CleanStr = Field("", max_length=4000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: CleanStr = Field(..., min_length=1, max_length=4000)


class EmergencyReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["confirmed", "disputed"]
    note: CleanStr = Field("", max_length=4000)
    notice_after: Time = Field(None, description="When the user may be told (default: now)")


class ProductionAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[Identifier] | None = Field(None, max_length=1000)
    categories: list[Category] | None = Field(None, max_length=8)
    start: Time = None
    end: Time = None


class HoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: float | None = Field(None, gt=0, le=3650)
    content_ids: list[Identifier] = Field(default_factory=list, max_length=1000)


class HoldRenew(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: float | None = Field(None, gt=0, le=3650)


class NoticeSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_after: Annotated[datetime, AfterValidator(_sane)]


class RemovalItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: CleanStr | None = Field(None, min_length=1, max_length=8192)
    content_id: Identifier | None = None


class RemovalCreate(RequestCommon):
    legal_basis: CleanStr = Field("Regulation (EU) 2021/784, Article 3", max_length=2000)
    statement: CleanStr = Field("", max_length=10000, description="Statement of reasons")
    items: list[RemovalItem] = Field(..., min_length=1, max_length=1000)
    withhold_from_provider: bool = Field(False, description="Art. 11(3): do not tell the uploader")
    execute: bool = Field(False, description="Remove at once if valid")


def _now_dict(session: Session, request_id: str) -> dict[str, Any]:
    return service.request_to_dict(service.get_request(session, request_id))


# --- requests -----------------------------------------------------------------------------------


@router.post("/requests", status_code=201, summary="Record a legal request (validated on intake)")
def create_request(
    body: RequestCreate,
    actor: Actor = Depends(legal_actor("legal.request.receive")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    fields = body.model_dump(exclude={"start", "end", "contact", "emergency"})
    fields.update(
        range_start=body.start,
        range_end=body.end,
        contact=body.contact.model_dump(),
        emergency=body.emergency.model_dump(exclude_defaults=True),
    )

    def run(session: Session) -> dict:
        return service.request_to_dict(service.receive(session, settings, actor, **fields))

    return service.audited(db, actor, "legal.request.receive", "legal_request:new", run)


@router.get("/requests", summary="Legal requests, newest first")
def list_requests(
    status: Literal["invalid", "pending", "approved", "rejected", "closed"] | None = None,
    type: RequestType | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(legal_actor("legal.request.list", READERS)),
    session: Session = SESSION,
) -> dict:
    rows = service.list_requests(session, status, type.value if type else None, limit)
    return {"requests": [service.request_to_dict(r) for r in rows]}


@router.get("/requests/{request_id}", summary="One legal request")
def read_request(
    request_id: Id,
    _actor: Actor = Depends(legal_actor("legal.request.read", READERS)),
    session: Session = SESSION,
) -> dict:
    return _now_dict(session, request_id)


def _step(action: str, fn: Callable[[Session, Settings, Actor, str], Any]):
    def run(request_id: str, actor: Actor, db: Database, settings: Settings) -> dict:
        def inner(session: Session) -> dict:
            fn(session, settings, actor, request_id)
            return _now_dict(session, request_id)

        return service.audited(db, actor, action, service.target(request_id), inner)

    return run


@router.post("/requests/{request_id}/approve", summary="Approve (two different people needed)")
def approve(
    request_id: Id,
    body: Note | None = None,
    actor: Actor = Depends(legal_actor("legal.request.approve")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    note = body.note if body else ""
    return _step(
        "legal.request.approve",
        lambda s, cfg, a, rid: service.approve(s, cfg, a, rid, note),
    )(request_id, actor, db, settings)


@router.post("/requests/{request_id}/reject", summary="Reject, with the reason")
def reject(
    request_id: Id,
    body: Reason,
    actor: Actor = Depends(legal_actor("legal.request.reject")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    return _step(
        "legal.request.reject", lambda s, cfg, a, rid: service.reject(s, a, rid, body.reason)
    )(request_id, actor, db, settings)


@router.post("/requests/{request_id}/close", summary="Close a request (nothing more follows)")
def close(
    request_id: Id,
    body: Note | None = None,
    actor: Actor = Depends(legal_actor("legal.request.close")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    note = body.note if body else ""
    return _step("legal.request.close", lambda s, cfg, a, rid: service.close(s, a, rid, note))(
        request_id, actor, db, settings
    )


@router.post(
    "/requests/{request_id}/emergency-review",
    summary="Second review of an emergency disclosure (by someone other than its approver)",
)
def emergency_review(
    request_id: Id,
    body: EmergencyReview,
    actor: Actor = Depends(legal_actor("legal.emergency.review")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    return _step(
        "legal.emergency.review",
        lambda s, cfg, a, rid: service.review_emergency(
            s, a, rid, body.outcome, body.note, body.notice_after
        ),
    )(request_id, actor, db, settings)


@router.post(
    "/requests/{request_id}/productions",
    summary="Produce the approved scope (or less) as a signed zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def produce(
    request_id: Id,
    body: ProductionAsk | None = None,
    actor: Actor = Depends(legal_actor("legal.export")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    ask = body or ProductionAsk()

    def run(session: Session) -> tuple[dict, bytes]:
        row, data = service.produce(
            session, settings, actor, request_id, ask.accounts, ask.categories, ask.start, ask.end
        )
        return service.production_to_dict(row), data

    info, data = service.audited(db, actor, "legal.export", service.target(request_id), run)
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="production-{info["id"]}.zip"',
            "X-Prescreen-Production-Id": info["id"],
            "X-Prescreen-Manifest-SHA256": info["manifest_sha256"],
        },
    )


@router.get("/requests/{request_id}/productions", summary="Productions made for a request")
def list_productions(
    request_id: Id,
    _actor: Actor = Depends(legal_actor("legal.export.list", READERS)),
    session: Session = SESSION,
) -> dict:
    service.get_request(session, request_id)
    rows = service.list_productions(session, request_id)
    return {"productions": [service.production_to_dict(r) for r in rows]}


@router.post(
    "/requests/{request_id}/holds", status_code=201, summary="Preserve the request's records"
)
def create_hold(
    request_id: Id,
    body: HoldCreate | None = None,
    actor: Actor = Depends(legal_actor("legal.hold.create")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    ask = body or HoldCreate()

    def run(session: Session) -> dict:
        hold = service.create_hold(
            session, settings, actor, request_id, content_ids=ask.content_ids, days=ask.days
        )
        return service.hold_to_dict(hold)

    return service.audited(db, actor, "legal.hold.create", service.target(request_id), run)


# --- holds, notices, emergencies ----------------------------------------------------------------


@router.get("/holds", summary="Preservation holds")
def list_holds(
    active: bool = True,
    _actor: Actor = Depends(legal_actor("legal.hold.list", READERS)),
    session: Session = SESSION,
) -> dict:
    from sqlalchemy import select

    from prescreen.legal.models import PreservationHold

    holds = (
        service.active_holds(session)
        if active
        else list(session.scalars(select(PreservationHold).order_by(PreservationHold.created_at)))
    )
    return {"holds": [service.hold_to_dict(h) for h in holds]}


@router.post("/holds/{hold_id}/renew", summary="Extend a hold (90 days by default)")
def renew_hold(
    hold_id: Id,
    body: HoldRenew | None = None,
    actor: Actor = Depends(legal_actor("legal.hold.renew")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    days = body.days if body else None
    return service.audited(
        db,
        actor,
        "legal.hold.renew",
        f"legal_hold:{hold_id}",
        lambda s: service.hold_to_dict(service.renew_hold(s, settings, actor, hold_id, days)),
    )


@router.post("/holds/{hold_id}/release", summary="End a hold before it expires")
def release_hold(
    hold_id: Id,
    actor: Actor = Depends(legal_actor("legal.hold.release")),
    db: Database = Depends(get_db),
) -> dict:
    return service.audited(
        db,
        actor,
        "legal.hold.release",
        f"legal_hold:{hold_id}",
        lambda s: service.hold_to_dict(service.release_hold(s, actor, hold_id)),
    )


@router.get("/notices", summary="User notices and when each may be sent")
def list_notices(
    status: Literal["scheduled", "withheld", "due", "sent"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(legal_actor("legal.notice.list", READERS)),
    session: Session = SESSION,
) -> dict:
    return {
        "notices": [service.notice_to_dict(n) for n in service.list_notices(session, status, limit)]
    }


@router.post("/notices/{notice_id}/sent", summary="Record that a notice was sent by hand")
def notice_sent(
    notice_id: Id,
    actor: Actor = Depends(legal_actor("legal.notice.sent")),
    db: Database = Depends(get_db),
) -> dict:
    return service.audited(
        db,
        actor,
        "legal.notice.sent",
        f"legal_notice:{notice_id}",
        lambda s: service.notice_to_dict(service.mark_notice_sent(s, actor, notice_id)),
    )


@router.post("/notices/{notice_id}/schedule", summary="Set when a notice may be sent")
def notice_schedule(
    notice_id: Id,
    body: NoticeSchedule,
    actor: Actor = Depends(legal_actor("legal.notice.schedule")),
    db: Database = Depends(get_db),
) -> dict:
    return service.audited(
        db,
        actor,
        "legal.notice.schedule",
        f"legal_notice:{notice_id}",
        lambda s: service.notice_to_dict(
            service.reschedule_notice(s, actor, notice_id, body.send_after)
        ),
    )


@router.get("/emergency/overdue", summary="Emergency disclosures past their second-review date")
def overdue(
    _actor: Actor = Depends(legal_actor("legal.emergency.list", READERS)),
    session: Session = SESSION,
) -> dict:
    return {"overdue": [service.request_to_dict(r) for r in service.overdue_emergencies(session)]}


# --- removal orders -----------------------------------------------------------------------------


@router.post("/removal-orders", status_code=201, summary="Record a removal order (1-hour clock)")
def create_removal_order(
    body: RemovalCreate,
    actor: Actor = Depends(legal_actor("legal.removal.receive")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    fields = body.model_dump(exclude={"items", "statement", "withhold_from_provider", "execute"})
    fields["contact"] = body.contact.model_dump()

    def run(session: Session) -> dict:
        order = service.receive_removal_order(
            session,
            settings,
            actor,
            items=[i.model_dump() for i in body.items],
            statement=body.statement,
            withhold_from_provider=body.withhold_from_provider,
            **fields,
        )
        if body.execute and order.status == "received":
            order = service.execute_removal(session, settings, actor, order.id)
        return service.order_to_dict(session, order)

    return service.audited(db, actor, "legal.removal.receive", "legal_request:new", run)


@router.get("/removal-orders", summary="Removal orders, newest first")
def list_removal_orders(
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(legal_actor("legal.removal.list", READERS)),
    session: Session = SESSION,
) -> dict:
    from sqlalchemy import select

    from prescreen.legal.models import RemovalOrder

    orders = session.scalars(
        select(RemovalOrder).order_by(RemovalOrder.received_at.desc()).limit(limit)
    )
    return {"removal_orders": [service.order_to_dict(session, o) for o in orders]}


@router.get("/removal-orders/report", summary="Time to removal (TCO transparency figures)")
def removal_report(
    start: Time = Query(None, description="Default: 1 January of this year"),
    end: Time = Query(None, description="Default: now"),
    _actor: Actor = Depends(legal_actor("legal.removal.report", READERS)),
    session: Session = SESSION,
) -> dict:
    now = utcnow()
    start = start or datetime(now.year, 1, 1, tzinfo=UTC)
    end = end or now + timedelta(seconds=1)
    return service.removal_report(session, start, end, now)


@router.get("/removal-orders/{order_id}", summary="One removal order and its clock")
def read_removal_order(
    order_id: Id,
    _actor: Actor = Depends(legal_actor("legal.removal.read", READERS)),
    session: Session = SESSION,
) -> dict:
    return service.order_to_dict(session, service.get_order(session, order_id))


@router.post("/removal-orders/{order_id}/execute", summary="Remove the ordered content now")
def execute_removal(
    order_id: Id,
    actor: Actor = Depends(legal_actor("legal.removal.execute")),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    def run(session: Session) -> dict:
        order = service.execute_removal(session, settings, actor, order_id)
        return service.order_to_dict(session, order)

    return service.audited(db, actor, "legal.removal.execute", f"removal_order:{order_id}", run)


@router.post("/removal-orders/{order_id}/unable", summary="Record inability to comply (Annex III)")
def removal_unable(
    order_id: Id,
    body: Reason,
    actor: Actor = Depends(legal_actor("legal.removal.unable")),
    db: Database = Depends(get_db),
) -> dict:
    def run(session: Session) -> dict:
        order = service.removal_unable(session, actor, order_id, body.reason)
        return service.order_to_dict(session, order)

    return service.audited(db, actor, "legal.removal.unable", f"removal_order:{order_id}", run)


@router.get(
    "/removal-orders/{order_id}/confirmation",
    summary="The confirmation of execution for the issuing authority (Annex II information)",
)
def removal_confirmation(
    order_id: Id,
    actor: Actor = Depends(legal_actor("legal.removal.confirm")),
    db: Database = Depends(get_db),
) -> dict:
    def run(session: Session) -> dict:
        order = service.get_order(session, order_id)
        body = service.removal_confirmation(session, order)
        from prescreen.audit.service import record

        record(
            session,
            actor.label,
            "legal.removal.confirm",
            service.target(order.request_id),
            {"order": order.id, "status": order.status},
        )
        return body

    return service.audited(db, actor, "legal.removal.confirm", f"removal_order:{order_id}", run)
