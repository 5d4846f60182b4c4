"""`POST /v1/screen`, `POST /v1/hash` and `GET /v1/decisions/{id}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import SESSION, get_db, get_matcher, get_settings, require, run_hashing
from prescreen.core.errors import InvalidInput, UnsupportedMedia
from prescreen.core.validation import CleanStr, Identifier, Metadata
from prescreen.matching.service import Matcher
from prescreen.screening.service import (
    Hashed,
    ScreenRequest,
    get_decision,
    hash_bytes,
    hash_given,
    hash_text,
    hash_url,
    screen,
    submit_video,
    upload_kind,
)
from prescreen.signals.base import ContentKind

router = APIRouter(prefix="/v1", tags=["screening"])
M = TypeVar("M", bound=BaseModel)
SCREENERS = (Role.integrator, Role.lead)
DECISION_READERS = (Role.integrator, Role.moderator, Role.lead, Role.auditor)


class ScreenJSON(BaseModel):
    """Screen text, a URL or precomputed hashes. Exactly one of `text`, `url`, `hashes`."""

    model_config = ConfigDict(extra="forbid")

    content_id: Identifier | None = Field(None, description="Your id; repeats are idempotent.")
    user_id: Identifier | None = None
    text: str | None = None
    url: str | None = None
    hashes: dict[str, str | int] | None = Field(
        None, description='Signals you computed, e.g. {"pdq": "<64 hex>", "pdq_quality": 90}'
    )
    metadata: Metadata = Field(default_factory=dict)
    surface: CleanStr | None = Field(None, max_length=64)
    locale: CleanStr | None = Field(None, max_length=35)

    @model_validator(mode="after")
    def one_content(self) -> ScreenJSON:
        given = [name for name in ("text", "url", "hashes") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, url or hashes")
        return self


class UploadFields(BaseModel):
    """The form fields that may accompany an uploaded `file`."""

    model_config = ConfigDict(extra="forbid")

    content_id: Identifier | None = None
    user_id: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)
    surface: CleanStr | None = Field(None, max_length=64)
    locale: CleanStr | None = Field(None, max_length=35)

    @model_validator(mode="before")
    @classmethod
    def parse_metadata(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metadata"), str):
            try:
                data = {**data, "metadata": json.loads(data["metadata"])}
            except json.JSONDecodeError as exc:
                raise ValueError(f"metadata is not valid JSON: {exc.msg}") from exc
        return data


def _body_schema(json_model: type[BaseModel]) -> dict:
    upload = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "content_id": {"type": "string", "maxLength": 256},
            "user_id": {"type": "string", "maxLength": 256},
            "metadata": {"type": "string", "description": "a JSON object"},
            "surface": {"type": "string", "maxLength": 64},
            "locale": {"type": "string", "maxLength": 35},
        },
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}
                },
                "multipart/form-data": {"schema": upload},
            },
        }
    }


def _validated(model: type[M], data: Any, raw_json: bytes | None = None) -> M:
    try:
        if raw_json is not None:
            return model.model_validate_json(raw_json)
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        ) from exc


@dataclass
class Submission:
    """What a screening request carried: validated fields, and either the JSON body's text,
    URL or hashes, or the uploaded bytes."""

    fields: Any
    media: bytes | None = None
    media_type: str | None = None
    filename: str = ""

    def hashed(self, settings: Settings, hash_video: bool) -> Hashed | None:
        """The signals (CPU-bound: call it off the event loop); None for a video when
        `hash_video` is False, since hashing one takes too long for a request."""
        if self.media is None:
            body = self.fields
            if body.text is not None:
                return hash_text(body.text, settings)
            if body.url is not None:
                return hash_url(body.url, settings)
            return hash_given(body.hashes or {})
        kind = upload_kind(self.media, settings, self.filename, self.media_type)
        if kind is ContentKind.video and not hash_video:
            return None
        return hash_bytes(self.media, settings, self.filename, self.media_type, kind=kind)


async def _read_request(request: Request) -> Submission:
    """The validated fields and content of a JSON or multipart request (nothing hashed yet)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return Submission(_validated(ScreenJSON, None, raw_json=await request.body()))
    if media_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput('send the content as a multipart file field named "file"')
        fields = _validated(UploadFields, {k: v for k, v in form.items() if k != "file"})
        data = await upload.read()
        return Submission(fields, data, upload.content_type, upload.filename or "")
    raise UnsupportedMedia(
        "send application/json (text, url or hashes) or multipart/form-data (a file)",
        content_type=media_type,
    )


@router.post(
    "/screen",
    summary="Screen an upload, text, URL or hashes: allow, hold or block, with reasons",
    description=(
        "Images, text, URLs and hashes are decided synchronously (200). A video is screened "
        "asynchronously: 202 with `job_id`; poll `GET /v1/jobs/{job_id}` or receive the "
        "decision on your webhook."
    ),
    responses={202: {"description": "Video accepted; the decision follows asynchronously"}},
    response_model=None,
    openapi_extra=_body_schema(ScreenJSON),
)
async def screen_content(
    request: Request,
    actor: Actor = Depends(require(*SCREENERS)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
    settings: Settings = Depends(get_settings),
) -> JSONResponse:
    submission = await _read_request(request)
    fields = submission.fields
    metadata = dict(fields.metadata)
    metadata.update({k: getattr(fields, k) for k in ("surface", "locale") if getattr(fields, k)})

    def decide() -> JSONResponse:  # hashing, matching and encoding in one trip to the pool
        screen_request = ScreenRequest(
            hashed=submission.hashed(settings, hash_video=False),
            content_id=fields.content_id,
            user_id=fields.user_id,
            metadata=metadata,
            submitted_by=actor.label,
            owner_key_id=actor.key_id,
            media=submission.media,
            media_type=submission.media_type,
        )
        # A decision is plain JSON already (it was stored as such): encoded here, it skips
        # FastAPI's generic encoder, which walked it again on the event loop (0.2 ms).
        if screen_request.hashed is not None:
            return JSONResponse(screen(db, matcher, settings, screen_request))
        queued = submit_video(db, screen_request, submission.media or b"", submission.filename)
        if "decision" in queued:
            return JSONResponse(queued["decision"])
        job = queued["job"]
        return JSONResponse(
            {"job_id": job["id"], "status": job["status"], "status_url": f"/v1/jobs/{job['id']}"},
            status_code=202,
        )

    return await run_hashing(request, decide)


@router.post(
    "/hash",
    summary="Compute the signals of an upload, text or URL without screening or storing it",
    openapi_extra=_body_schema(ScreenJSON),
)
async def hash_content(
    request: Request,
    _actor: Actor = Depends(require(*SCREENERS)),
    settings: Settings = Depends(get_settings),
) -> dict:
    submission = await _read_request(request)
    hashed = await run_hashing(request, submission.hashed, settings, True)
    assert hashed is not None
    return {"content_type": hashed.kind.value, "signals": hashed.signals}


@router.get("/decisions/{decision_id}", summary="A stored decision")
def read_decision(
    decision_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    _actor: Actor = Depends(require(*DECISION_READERS)),
    session: Session = SESSION,
) -> dict:
    return get_decision(session, decision_id)
