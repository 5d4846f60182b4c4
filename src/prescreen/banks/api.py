"""`/v1/banks`: banks, their entries, import and export."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from prescreen.banks import service
from prescreen.banks.jobs import submit_import
from prescreen.banks.models import BankKind
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import SESSION, get_db, get_matcher, get_settings, require, run_hashing
from prescreen.core.errors import InvalidInput, PrescreenError
from prescreen.core.validation import BANK_NAME_PATTERN, MAX_ROW_ID, CleanStr, clean_text
from prescreen.jobs.service import job_to_dict
from prescreen.matching.service import Matcher
from prescreen.screening.service import hash_bytes
from prescreen.signals.detect import decode_text
from prescreen.signals.logo import logo_value

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/banks", tags=["banks"])
READERS = (Role.integrator, Role.moderator, Role.lead, Role.auditor)
WRITERS = (Role.lead,)
Label = CleanStr
BankName = Annotated[str, Path(pattern=BANK_NAME_PATTERN, description="Bank name")]
EntryId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="Entry id")]


class BankCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=BANK_NAME_PATTERN)
    description: CleanStr = Field("", max_length=2000)
    kind: BankKind = BankKind.block
    labels: list[Label] = Field(default_factory=list, max_length=32)
    pdq_threshold: int = Field(31, ge=0, le=256)
    vpdq_query_match_pct: float = Field(80.0, ge=0, le=100, description="Share of upload frames")
    vpdq_bank_match_pct: float = Field(0.0, ge=0, le=100, description="Share of bank frames")
    match_dihedral: bool = Field(True, description="Also match rotated and mirrored copies")
    match_trimmed: bool = Field(True, description="Also match copies with borders added")
    match_crops: bool = Field(True, description="Also match moderately cropped copies")
    match_overlays: bool = Field(
        True, description="Also match copies with a badge or logo stamped in a corner"
    )
    text_near_threshold: float = Field(0.8, ge=0.5, le=1, description="Near-duplicate text")
    logo_threshold: float | None = Field(
        None, ge=0.05, le=1, description="Makes a logo bank: files added are reference logos"
    )
    enabled: bool = True
    shared: bool = False


class BankUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: CleanStr | None = Field(None, max_length=2000)
    kind: BankKind | None = None
    labels: list[Label] | None = Field(None, max_length=32)
    pdq_threshold: int | None = Field(None, ge=0, le=256)
    vpdq_query_match_pct: float | None = Field(None, ge=0, le=100)
    vpdq_bank_match_pct: float | None = Field(None, ge=0, le=100)
    match_dihedral: bool | None = None
    match_trimmed: bool | None = None
    match_crops: bool | None = None
    match_overlays: bool | None = None
    text_near_threshold: float | None = Field(None, ge=0.5, le=1)
    logo_threshold: float | None = Field(None, ge=0.05, le=1)
    enabled: bool | None = None
    shared: bool | None = None


class EntryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signals: dict[str, str] = Field(..., description='e.g. {"pdq": "<64 hex>"}')
    labels: list[Label] = Field(default_factory=list, max_length=32)
    note: CleanStr = Field("", max_length=2000)


class EntryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    disabled_until: datetime | None = Field(None, description="Disable until this time (with zone)")
    labels: list[Label] | None = Field(None, max_length=32)
    note: CleanStr | None = Field(None, max_length=2000)


@router.get("", summary="All banks with their entry counts")
def list_banks(
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> list[dict]:
    return [service.bank_to_dict(bank, count) for bank, count in service.list_banks(session)]


@router.post("", status_code=201, summary="Create a bank")
def create_bank(
    body: BankCreate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    fields = body.model_dump(exclude={"name"})
    return service.bank_to_dict(
        service.create_bank(session, body.name, actor=actor.label, **fields), 0
    )


@router.get("/{name}", summary="One bank")
def read_bank(
    name: BankName,
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return service.bank_to_dict(service.get_bank(session, name))


@router.patch("/{name}", summary="Change a bank's settings")
def update_bank(
    name: BankName,
    body: BankUpdate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    bank = service.update_bank(
        session, name, actor=actor.label, **body.model_dump(exclude_unset=True)
    )
    return service.bank_to_dict(bank)


@router.delete("/{name}", status_code=204, summary="Delete a bank and all its entries")
def delete_bank(
    name: BankName,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> Response:
    service.delete_bank(session, name, actor=actor.label)
    return Response(status_code=204)


@router.get("/{name}/entries", summary="Entries, oldest first, paged by id")
def list_entries(
    name: BankName,
    after: int = Query(
        0, ge=0, le=MAX_ROW_ID, description="Return entries with id greater than this"
    ),
    limit: int = Query(100, ge=1, le=1000),
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    bank = service.get_bank(session, name)
    entries = service.list_entries(session, bank, after=after, limit=limit)
    return {
        "entries": [service.entry_to_dict(e, bank.name) for e in entries],
        "next_after": entries[-1].id if len(entries) == limit else None,
    }


@router.post("/{name}/entries", status_code=201, summary="Add an entry from raw signals")
def add_entry(
    name: BankName,
    body: EntryCreate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    bank = service.get_bank(session, name)
    new = service.NewEntry.validated(body.signals, labels=body.labels, note=body.note)
    (entry,) = service.add_entries(session, bank, [new], added_by=actor.label)
    return service.entry_to_dict(entry, bank.name)


@router.post(
    "/{name}/content",
    status_code=201,
    summary="Add an entry by uploading the content itself (multipart field `file`)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "labels": {"type": "string", "description": "comma-separated"},
                            "note": {"type": "string", "maxLength": 2000},
                        },
                    }
                }
            },
        }
    },
)
async def add_content(
    name: BankName,
    request: Request,
    actor: Actor = Depends(require(*WRITERS)),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("send the content as multipart/form-data with a field named file")
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput('send the content as a multipart file field named "file"')
    unknown = set(form) - {"file", "labels", "note"}
    if unknown:
        raise InvalidInput("unknown form fields", unknown=sorted(unknown))
    labels = [s for s in str(form.get("labels") or "").split(",") if s.strip()]
    note = str(form.get("note") or "")
    if len(note) > 2000:
        raise InvalidInput("note is longer than 2000 characters")
    try:
        clean_text(note)
    except ValueError as exc:
        raise InvalidInput(f"note {exc}") from exc
    data = await upload.read()
    hashed = await run_hashing(
        request, hash_bytes, data, settings, upload.filename, upload.content_type, True
    )

    def store() -> dict:
        with db.session() as session:
            bank = service.get_bank(session, name)
            signals = hashed.signals
            if bank.logo_threshold is not None:  # a logo bank keeps the reference logo's features
                signals = {"logo": logo_value(data, settings.max_image_pixels)}
            new = service.NewEntry.validated(
                signals, labels=labels, note=note, content_type=hashed.kind.value
            )
            (entry,) = service.add_entries(session, bank, [new], added_by=actor.label)
            return service.entry_to_dict(entry, bank.name)

    return await run_in_threadpool(store)


@router.get("/{name}/entries/{entry_id}", summary="One entry")
def read_entry(
    name: BankName,
    entry_id: EntryId,
    _actor: Actor = Depends(require(*READERS)),
    session: Session = SESSION,
) -> dict:
    bank = service.get_bank(session, name)
    return service.entry_to_dict(service.get_entry(session, bank, entry_id), bank.name)


@router.patch("/{name}/entries/{entry_id}", summary="Enable, disable (until a time), relabel")
def update_entry(
    name: BankName,
    entry_id: EntryId,
    body: EntryUpdate,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    bank = service.get_bank(session, name)
    entry = service.set_entry_state(
        session,
        service.get_entry(session, bank, entry_id),
        actor=actor.label,
        **body.model_dump(exclude_unset=True),
    )
    return service.entry_to_dict(entry, bank.name)


@router.delete("/{name}/entries/{entry_id}", status_code=204, summary="Remove an entry")
def delete_entry(
    name: BankName,
    entry_id: EntryId,
    actor: Actor = Depends(require(*WRITERS)),
    session: Session = SESSION,
) -> Response:
    bank = service.get_bank(session, name)
    service.delete_entry(session, service.get_entry(session, bank, entry_id), actor.label)
    return Response(status_code=204)


@router.post(
    "/{name}/import",
    summary="Import entries (NDJSON or HMA CSV body); all-or-nothing unless skip_invalid",
    response_model=None,
    responses={202: {"description": "Import queued (`background=true`); poll the job"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_entries(
    name: BankName,
    request: Request,
    skip_invalid: bool = Query(False),
    background: bool = Query(
        False,
        description="Answer 202 with a job id at once; `GET /v1/jobs/{id}` shows the progress "
        "and, when done, the report (large files)",
    ),
    actor: Actor = Depends(require(*WRITERS)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
) -> dict | JSONResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = "hma-csv" if media_type == "text/csv" else "ndjson"
    body = await request.body()

    def queue() -> JSONResponse:
        with db.session() as session:
            bank = service.get_bank(session, name)
            job = job_to_dict(submit_import(session, bank, body, fmt, skip_invalid, actor.label))
        return JSONResponse(
            {"job_id": job["id"], "status": job["status"], "status_url": f"/v1/jobs/{job['id']}"},
            status_code=202,
        )

    def run() -> dict:
        lines = decode_text(body, "the import body").splitlines()
        source = f"import:{fmt}"
        with db.session(readonly=True) as session:
            service.get_bank(session, name)  # a missing bank is named before the lines are read
        # Validated before the write transaction: on SQLite it holds the one writer's lock,
        # and every other write (screening decisions) waits while it is open.
        valid, report = service.validate_lines(lines, service.PARSERS[fmt], source, skip_invalid)
        del lines
        with db.session() as session:
            bank = service.get_bank(session, name)
            service.write_import(session, bank, valid, report, actor.label, source)
        del valid
        try:  # index included: once answered, this worker's lookups find the entries
            with db.session(readonly=True) as session:
                matcher.sync(session)
        except PrescreenError as exc:  # stored all the same: the next lookup catches up
            log.warning("imported entries not indexed yet", extra={"error": exc.message})
        return report.to_dict()

    return await run_in_threadpool(queue if background else run)


@router.get("/{name}/export", summary="Export a bank as NDJSON (header line, then entries)")
def export_entries(
    name: BankName,
    _actor: Actor = Depends(require(*READERS)),
    db: Database = Depends(get_db),
) -> StreamingResponse:
    with db.session() as session:
        service.get_bank(session, name)

    def lines():
        with db.session() as session:
            yield from service.export_ndjson(session, service.get_bank(session, name))

    return StreamingResponse(lines(), media_type="application/x-ndjson")
