"""`POST /v1/lookup`: which bank entries match these signals (no decision is stored)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from prescreen.core.auth import Actor, Role
from prescreen.core.db import Database
from prescreen.core.deps import get_db, get_matcher, require
from prescreen.core.validation import BANK_NAME_PATTERN
from prescreen.matching.service import Match, Matcher
from prescreen.signals.registry import normalize_signals

router = APIRouter(prefix="/v1", tags=["matching"])


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signals: dict[str, str] = Field(
        ..., description='Signals by type, e.g. {"pdq": "<64 hex>", "md5": "<32 hex>"}'
    )
    banks: list[Annotated[str, Field(pattern=BANK_NAME_PATTERN)]] | None = Field(
        None, description="Only these banks (default: all enabled)", max_length=100
    )


@router.post("/lookup", summary="Bank entries matching the given signals, at each bank's threshold")
async def lookup(
    body: LookupRequest,
    _actor: Actor = Depends(require(Role.integrator, Role.moderator, Role.lead)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
) -> dict:
    matches = await matches_for(db, matcher, normalize_signals(body.signals), body.banks)
    return {"matches": [m.to_dict() for m in matches]}


async def matches_for(
    db: Database, matcher: Matcher, signals: dict[str, str], banks: list[str] | None = None
) -> list[Match]:
    """`Matcher.lookup`, answered on the event loop where that cannot stall it (a hand-over
    to the thread pool and back was a quarter of a lookup's time, docs/benchmarks.md) and in
    the pool otherwise."""

    def run(at_once: bool) -> list[Match] | None:
        with db.session(readonly=True) as session:
            if at_once:
                return matcher.lookup_now(session, signals, banks=banks)
            return matcher.lookup(session, signals, banks=banks)

    found = run(at_once=True) if db.reads_at_once() else None
    return found if found is not None else await run_in_threadpool(run, False)
