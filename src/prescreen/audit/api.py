"""`/v1/audit`: the public key, signed tree heads, entries, inclusion and consistency proofs, and
the export an auditor verifies offline with `prescreen audit verify`."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from prescreen.audit import service
from prescreen.audit.periodic import arm_all
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import SESSION, get_db, get_settings, require
from prescreen.core.errors import NotFound
from prescreen.core.validation import Identifier

MAX_INDEX = 2**53
READERS = (Role.auditor, Role.legal)
EVERYONE = tuple(Role)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Arm the periodic jobs (tree head signing, legal clocks, retention) at server start."""
    await run_in_threadpool(arm_all, app.state.db, app.state.settings)
    yield


router = APIRouter(prefix="/v1/audit", tags=["audit"], lifespan=lifespan)


@router.get("/public-key", summary="The log's Ed25519 public key, to pin for verification")
def public_key(
    _actor: Actor = Depends(require(*EVERYONE)), settings: Settings = Depends(get_settings)
) -> dict:
    return service.public_key_info(settings)


@router.get("/tree-heads/latest", summary="The latest signed tree head")
def latest_tree_head(
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    head = service.latest_head(session)
    if head is None:
        raise NotFound("no tree head has been signed yet; POST /v1/audit/tree-heads signs one")
    return service.head_to_dict(head)


@router.get("/tree-heads", summary="Signed tree heads, by size")
def tree_heads(
    after_size: int = Query(-1, ge=-1, le=MAX_INDEX),
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    heads = service.list_heads(session, after_size, limit)
    return {"tree_heads": [service.head_to_dict(h) for h in heads]}


@router.post("/tree-heads", status_code=201, summary="Sign a tree head of the log now")
def sign_tree_head(
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> dict:
    head = service.sign_tree_head(session, settings, force=True)
    assert head is not None
    return service.head_to_dict(head)


@router.get("/entries", summary="Entries in log order, paged by index")
def entries(
    after: int = Query(-1, ge=-1, le=MAX_INDEX, description="Entries with a greater index"),
    limit: int = Query(100, ge=1, le=1000),
    action: str | None = Query(None, max_length=64, pattern=r"^[a-z0-9_.]+\*?$"),
    target: Identifier | None = Query(None),
    actor_filter: Identifier | None = Query(None, alias="actor"),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    rows = service.list_entries(session, after, limit, action, target, actor_filter)
    return {
        "entries": [service.entry_to_dict(e) for e in rows],
        "next_after": rows[-1].idx if len(rows) == limit else None,
    }


@router.get("/entries/{index}", summary="One entry with its inclusion proof")
def entry(
    index: int = Path(..., ge=0, le=MAX_INDEX),
    tree_size: int | None = Query(None, ge=1, le=MAX_INDEX),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    row = service.get_entry(session, index)
    body = service.entry_to_dict(row)
    size = tree_size or service._default_size(session)
    if index < size:
        body["inclusion"] = service.inclusion(session, index, size)
    return body


@router.get("/proofs/inclusion", summary="Audit path of an entry in a tree of a given size")
def inclusion_proof(
    index: int = Query(..., ge=0, le=MAX_INDEX),
    tree_size: int | None = Query(None, ge=1, le=MAX_INDEX, description="Default: latest head"),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return service.inclusion(session, index, tree_size)


@router.get("/proofs/consistency", summary="Proof that one tree head extends another")
def consistency_proof(
    first: int = Query(..., ge=0, le=MAX_INDEX),
    second: int | None = Query(None, ge=0, le=MAX_INDEX, description="Default: latest head"),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return service.consistency(session, first, second)


@router.get("/export", summary="Every entry and signed tree head as NDJSON, for offline checks")
def export(
    actor: Actor = Depends(require(*READERS)),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> StreamingResponse:
    with db.session() as session:
        service.record(session, actor.label, "audit.export", "audit_log", {})

    def lines():
        with db.session() as session:
            yield from service.export_lines(session, settings)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
