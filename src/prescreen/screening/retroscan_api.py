"""`/v1/retroscans`: scan a bank's entries against stored content on demand; list runs and
what they held or took down. Scans of new entries also run by themselves (the change feed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role
from prescreen.core.deps import SESSION, require
from prescreen.core.validation import BANK_NAME_PATTERN, MAX_ROW_ID
from prescreen.screening import retroscan

router = APIRouter(prefix="/v1/retroscans", tags=["retro-scans"])
READERS = (Role.lead, Role.moderator, Role.auditor)


class ScanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bank: str = Field(..., pattern=BANK_NAME_PATTERN, description="The bank whose entries")
    after_entry: int = Field(0, ge=0, le=MAX_ROW_ID, description="Only entries after this id")


@router.post(
    "",
    status_code=202,
    summary="Queue a retro-scan of a bank's entries against stored content",
    description="Previously allowed content that matches is held or taken down by policy and "
    "its platform notified; poll the job at `status_url`, then read the run's hits.",
)
def request_scan(
    body: ScanRequest,
    actor: Actor = Depends(require(Role.lead)),
    session: Session = SESSION,
) -> JSONResponse:
    job = retroscan.request_bank_scan(session, body.bank, body.after_entry, actor.label)
    return JSONResponse(
        {"job_id": job.id, "status": job.status, "status_url": f"/v1/jobs/{job.id}"},
        status_code=202,
    )


@router.get("", summary="The latest retro-scans, newest first")
def list_runs(
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return {"runs": [retroscan.run_to_dict(run) for run in retroscan.list_runs(session, limit)]}


@router.get("/{run_id}/hits", summary="The contents a retro-scan held or took down")
def list_hits(
    run_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return {"hits": [retroscan.hit_to_dict(hit) for hit in retroscan.list_hits(session, run_id)]}
