"""`/v1/exchange`: this instance's identity and signed feeds, its peers, opinions, quarantine,
and imports/exports in the formats other platforms use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.banks import service as banks
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import SESSION, get_db, get_settings, require
from prescreen.core.validation import BANK_NAME_PATTERN, MAX_ROW_ID, CleanStr
from prescreen.exchange import adapters, feed, keys, service
from prescreen.exchange.models import OpinionKind, OpinionPolicy, Trust
from prescreen.exchange.pull import PULL_JOB, pull_and_record
from prescreen.jobs.service import enqueue
from prescreen.signals.detect import decode_text

router = APIRouter(prefix="/v1/exchange", tags=["exchange"])
FEED_READERS = (Role.integrator, Role.lead)  # give a peer an integrator key to follow you
READERS = (Role.lead, Role.auditor)
WRITERS = (Role.lead,)
BankName = Annotated[str, Path(pattern=BANK_NAME_PATTERN, description="Bank name")]
PeerName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Peer name")]
EntryId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
PublicKey = Annotated[str, Field(min_length=40, max_length=60, description="base64, 32 bytes")]


class Follow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remote: str = Field(..., pattern=BANK_NAME_PATTERN, description="The peer's shared bank")
    local: str | None = Field(
        None, pattern=BANK_NAME_PATTERN, description="Local bank to fill (default: same name)"
    )


class PeerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    base_url: str = Field(..., max_length=2000)
    public_keys: list[PublicKey] = Field(..., min_length=1, max_length=16)
    api_key: str = Field("", max_length=500, description="Key the peer issued to you")
    follows: list[Follow] = Field(default_factory=list, max_length=100)
    trust: Trust = Trust.review
    label_map: dict[CleanStr, CleanStr] = Field(default_factory=dict, max_length=200)
    opinion_policy: OpinionPolicy = OpinionPolicy.disable
    enabled: bool = True


class PeerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, max_length=2000)
    public_keys: list[PublicKey] | None = Field(None, min_length=1, max_length=16)
    api_key: str | None = Field(None, max_length=500)
    follows: list[Follow] | None = Field(None, max_length=100)
    trust: Trust | None = None
    label_map: dict[CleanStr, CleanStr] | None = Field(None, max_length=200)
    opinion_policy: OpinionPolicy | None = None
    enabled: bool | None = None


class OpinionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bank: str = Field(..., pattern=BANK_NAME_PATTERN)
    entry: int = Field(..., ge=1, le=MAX_ROW_ID)
    opinion: OpinionKind
    note: CleanStr = Field("", max_length=2000)


def _follows(follows: list[Follow] | None) -> list[dict[str, str]] | None:
    if follows is None:
        return None
    return [{"remote": f.remote, "local": f.local or f.remote} for f in follows]


def _pull_soon(session: Session, actor: Actor) -> None:
    enqueue(session, PULL_JOB, {}, submitted_by=actor.key_id, max_attempts=1)


@router.get("/identity", summary="This instance's id and Ed25519 public keys (pin them at peers)")
def identity(
    _actor: Actor = Depends(require(*Role)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    return service.identity(session, settings)


@router.post("/identity/rotate", summary="Rotate the signing key (old keys keep verifying)")
def rotate(
    actor: Actor = Depends(require(Role.admin)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    keys.rotate(session, settings, actor.label)
    return service.identity(session, settings)


@router.get("/feeds/{bank}", summary="A shared bank's signed feed, after a sequence number")
def read_feed(
    bank: BankName,
    after: int = Query(0, ge=0, le=MAX_ROW_ID, description="Items after this sequence number"),
    limit: int = Query(500, ge=1, le=1000),
    _actor: Actor = Depends(require(*FEED_READERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    return feed.feed_page(session, settings, bank, after, limit)


@router.get("/peers", summary="Peers this instance follows")
def list_peers(
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> list[dict]:
    return [service.peer_to_dict(session, p) for p in service.list_peers(session)]


@router.post("/peers", status_code=201, summary="Follow a peer's shared banks")
def create_peer(
    body: PeerCreate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    fields = body.model_dump(exclude={"name", "public_keys", "follows"})
    peer = service.create_peer(
        session,
        body.name,
        body.public_keys,
        actor.label,
        follows=_follows(body.follows),
        **fields,
    )
    _pull_soon(session, actor)
    return service.peer_to_dict(session, peer)


@router.get("/peers/{name}", summary="One peer, with its cursors and last error")
def read_peer(
    name: PeerName,
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return service.peer_to_dict(session, service.get_peer(session, name))


@router.patch("/peers/{name}", summary="Change a peer (keys, banks, trust...); pulls soon")
def update_peer(
    name: PeerName,
    body: PeerUpdate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    fields: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"follows"})
    if body.follows is not None:
        fields["follows"] = _follows(body.follows)
    peer = service.update_peer(session, name, actor.label, **fields)
    _pull_soon(session, actor)
    return service.peer_to_dict(session, peer)


@router.delete("/peers/{name}", status_code=204, summary="Stop following a peer")
def delete_peer(
    name: PeerName,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> Response:
    service.delete_peer(session, name, actor.label)
    return Response(status_code=204)


@router.post("/peers/{name}/pull", summary="Pull a peer now and say what was applied")
async def pull_now(
    name: PeerName,
    _actor: Actor = Depends(require(*WRITERS)),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    with db.session(readonly=True) as session:
        service.get_peer(session, name)
    return await run_in_threadpool(pull_and_record, db, settings, name)


@router.get("/peers/{name}/rejections", summary="Feed pages from this peer that were refused")
def list_rejections(
    name: PeerName,
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    peer = service.get_peer(session, name)
    return {"rejections": service.rejections(session, peer, limit)}


@router.post("/opinions", status_code=201, summary="Say an entry is a true or false positive")
def give_opinion(
    body: OpinionCreate,
    actor: Actor = Depends(require(Role.lead, Role.moderator)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    return service.give_opinion(
        session, settings, body.bank, body.entry, body.opinion.value, actor.label, body.note
    )


@router.post("/quarantine/{bank}/{entry_id}/release", summary="Let a quarantined entry act again")
def release(
    bank: BankName,
    entry_id: EntryId,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    return service.release(session, bank, entry_id, actor.label)


@router.post(
    "/import/{bank}",
    summary="Import a list: ndjson, hma-csv, hma-json, te-json or te-signals",
    openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {}}}},
)
async def import_list(
    bank: BankName,
    request: Request,
    format: str = Query(..., pattern="^(ndjson|hma-csv|hma-json|te-json|te-signals)$"),
    skip_invalid: bool = Query(False),
    actor: Actor = Depends(require(*WRITERS)),
    db: Database = Depends(get_db),
) -> dict:
    text = decode_text(await request.body(), "the import body")

    def run() -> dict:
        with db.session() as session:
            target = banks.get_bank(session, bank)
            return adapters.import_text(session, target, text, format, actor.label, skip_invalid)

    return await run_in_threadpool(run)


@router.get("/export/{bank}", summary="Export a bank: ndjson, hma-csv or te-signals")
def export_list(
    bank: BankName,
    format: str = Query("ndjson", pattern="^(ndjson|hma-csv|te-signals)$"),
    _actor: Actor = Depends(require(Role.integrator, Role.moderator, Role.lead, Role.auditor)),
    db: Database = Depends(get_db),
) -> StreamingResponse:
    with db.session(readonly=True) as session:
        banks.get_bank(session, bank)

    def lines():
        with db.session(readonly=True) as session:
            yield from adapters.export_lines(session, banks.get_bank(session, bank), format)

    media = {"ndjson": "application/x-ndjson", "hma-csv": "text/csv"}.get(format, "text/plain")
    return StreamingResponse(lines(), media_type=media)
