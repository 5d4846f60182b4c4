"""`POST /v1/franking/stamp`, the platform keys, and `POST /v1/reports/e2e`."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import SESSION, get_db, get_matcher, get_settings, require
from prescreen.core.errors import InvalidInput, NotFound
from prescreen.core.validation import CleanStr, Identifier
from prescreen.franking import service
from prescreen.matching.service import Matcher

router = APIRouter(prefix="/v1", tags=["franking"])
PLATFORM = (Role.integrator, Role.lead)
READERS = (Role.integrator, Role.moderator, Role.lead, Role.auditor)
B64_PATTERN = r"^[A-Za-z0-9+/]*={0,2}$"

B64 = Annotated[str, Field(pattern=B64_PATTERN, description="standard base64")]


def _bytes(value: str | None, name: str, position: int | None = None) -> bytes:
    where = name if position is None else f"messages[{position}].{name}"
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where} is not valid base64", field=where) from exc


class StampIn(BaseModel):
    """A franking tag to stamp, with what the platform itself knows about the message."""

    model_config = ConfigDict(extra="forbid")

    tag: B64 = Field(..., max_length=64, description="the 32-byte franking tag, base64")
    sender_id: Identifier = Field(..., description="the sender's account, as authenticated")
    conversation_id: Identifier
    sign: bool = Field(False, description="also sign the stamp with the key's Ed25519 key")


class StampOut(BaseModel):
    key_id: int
    context: str = Field(..., description="ctx, base64: deliver with the message")
    stamp: str = Field(..., description="HMAC-SHA256 under the platform key, base64")
    signature: str | None = Field(None, description="Ed25519 over the stamp and ctx, base64")
    server_ts_ms: int
    server_ts: str
    sender_id: str
    conversation_id: str


class KeyOut(BaseModel):
    key_id: int
    public_key: str = Field(..., description="Ed25519 public key for stamp signatures, base64")
    created_at: str
    rotated_at: str | None
    retired_at: str | None
    stamping: bool
    verifying: bool


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retire_after_days: float | None = Field(
        None, ge=0, le=36500, description="How long the old key keeps verifying reports"
    )


class ReportMessageIn(BaseModel):
    """One reported message: what the recipient kept, base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    body: B64 = Field(..., description="the franked message body B")
    franking_key: B64 = Field(..., max_length=64, description="kf, 32 bytes")
    tag: B64 | None = Field(
        None, max_length=64, description="the franking tag as received (optional)"
    )
    context: B64 = Field(..., max_length=4096, description="ctx as delivered by the platform")
    stamp: B64 = Field(..., max_length=64, description="the platform stamp")
    attachments: list[B64] = Field(
        default_factory=list,
        max_length=64,
        description="each committed attachment's plaintext, in order",
    )


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reporter_id: Identifier = Field(..., description="the reporting account, as authenticated")
    reason: CleanStr | None = Field(None, max_length=64, description="category, e.g. terrorism")
    note: CleanStr = Field("", max_length=4000, description="the reporter's free text")
    messages: list[ReportMessageIn] = Field(..., min_length=1, max_length=50)


@router.post(
    "/franking/stamp",
    summary="Stamp a franking tag: HMAC under the platform key over tag, sender, conversation "
    "and server time; nothing is stored",
    response_model=StampOut,
)
def stamp_tag(
    body: StampIn,
    _actor: Actor = Depends(require(*PLATFORM)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    tag = _bytes(body.tag, "tag")
    return service.stamp(session, settings, tag, body.sender_id, body.conversation_id, body.sign)


@router.get(
    "/franking/keys",
    summary="Platform franking keys: ids, public keys, rotation and retirement (no secrets)",
    response_model=list[KeyOut],
)
def list_franking_keys(
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> list[dict]:
    return [service.key_to_dict(row) for row in service.list_keys(session)]


@router.post(
    "/franking/keys/rotate",
    summary="Start stamping with a new key; the old one keeps verifying until it retires",
    response_model=KeyOut,
    status_code=201,
)
def rotate_franking_key(
    body: Annotated[RotateIn | None, Body()] = None,
    _actor: Actor = Depends(require(Role.lead)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    days = body.retire_after_days if body is not None else None
    return service.key_to_dict(service.rotate_key(session, settings, days))


@router.post(
    "/reports/e2e",
    summary="Report end-to-end-encrypted messages verifiably: openings and stamps are checked, "
    "the revealed content is screened, the report recorded",
    description=(
        "201 with the new report; 200 with the stored one when the same reporter reports the "
        "same messages again. 422 with a specific `code` when a check fails (`body_mismatch`, "
        "`stamp_mismatch`, `context_mismatch`, `unknown_key`, `key_retired`, "
        "`attachment_mismatch`, `malformed_*`); 403 `not_a_member` when the reporter was not "
        "in the conversation; 503 `membership_check_unavailable` when the platform's "
        "membership check does not answer."
    ),
    responses={201: {"description": "Verified and recorded"}},
    response_model=None,
)
def report_e2e(
    body: ReportIn,
    actor: Actor = Depends(require(*PLATFORM)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
    settings: Settings = Depends(get_settings),
) -> JSONResponse:
    items = [
        service.ReportItem(
            body=_bytes(m.body, "body", i),
            franking_key=_bytes(m.franking_key, "franking_key", i),
            context=_bytes(m.context, "context", i),
            stamp=_bytes(m.stamp, "stamp", i),
            tag=_bytes(m.tag, "tag", i) if m.tag is not None else None,
            attachments=[_bytes(a, f"attachments[{j}]", i) for j, a in enumerate(m.attachments)],
        )
        for i, m in enumerate(body.messages)
    ]
    submission = service.ReportSubmission(body.reporter_id, items, body.reason, body.note)
    report, created = service.submit_report(
        db, matcher, settings, submission, submitted_by=actor.label, owner_key_id=actor.key_id
    )
    return JSONResponse(report, status_code=201 if created else 200)


@router.get("/reports/e2e/{report_id}", summary="A recorded end-to-end report")
def read_report(
    report_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    report = service.get_report(session, report_id)
    if actor.role is Role.integrator and report.owner_key_id not in (None, actor.key_id):
        raise NotFound(f"no report {report_id!r}")  # another integrator's report
    return service.report_to_dict(session, report)
