"""`GET /v1/jobs/{id}`: the state of asynchronous work, with its result once done."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role
from prescreen.core.deps import SESSION, require
from prescreen.jobs.service import get_job, job_to_dict

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", summary="A job's status, attempts, error or result")
def read_job(
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    _actor: Actor = Depends(require(Role.integrator, Role.lead, Role.moderator, Role.auditor)),
    session: Session = SESSION,
) -> dict:
    return job_to_dict(get_job(session, job_id))
