"""Routes with the paths, request and response shapes of Meta's Hasher-Matcher-Actioner (HMA)
2.x, so a platform can point an existing HMA client at prescreen.

Differences a client may notice: a key is needed (HMA has none). Send it as
`Authorization: Bearer <key>`, `X-API-Key: <key>`, or as the password of HTTP Basic auth, which
most clients take from the URL (`https://hma:<key>@prescreen.example/`). Errors keep HMA's
`{"message": ...}` shape. Signal types are HMA's names (`pdq`, `video_md5`); prescreen never
fetches a URL, so `?url=` forms are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from prescreen.banks import service as banks
from prescreen.banks.models import Bank, BankEntry, EntrySignal, SignalChange
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.deps import (
    SESSION,
    authorized,
    get_db,
    get_matcher,
    get_settings,
    run_hashing,
)
from prescreen.core.errors import Forbidden, InvalidInput, NotFound, PrescreenError
from prescreen.core.validation import MAX_ROW_ID
from prescreen.exchange.models import EntryProvenance
from prescreen.matching.api import matches_for
from prescreen.matching.service import Match, Matcher
from prescreen.screening.service import Hashed, hash_bytes
from prescreen.signals.base import ContentKind
from prescreen.signals.registry import all_types

HMA_BANK_NAME = r"^[A-Z0-9_]{1,128}$"
ContentId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="Bank content id")]
HMA_TYPES = {"pdq": "pdq", "video_md5": "md5"}  # HMA's default signal types
PDQ_COMPARE_THRESHOLD = 31
READERS = (Role.integrator, Role.moderator, Role.lead, Role.auditor)
MATCHERS = (Role.integrator, Role.moderator, Role.lead)
HASHERS = (Role.integrator, Role.lead)
WRITERS = (Role.lead,)


class HMARoute(APIRoute):
    """Every error as HMA writes it: `{"message": ...}`, with the status prescreen chose."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def hma_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except PrescreenError as exc:
                status = 403 if isinstance(exc, Forbidden) else exc.status_code
                status = 400 if status == 422 else status
                return JSONResponse({"message": exc.message}, status_code=status)
            except RequestValidationError as exc:
                message = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return JSONResponse({"message": message or "invalid request"}, status_code=400)
            except HTTPException as exc:
                return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)

        return hma_handler


router = APIRouter(tags=["hma-compatible"], route_class=HMARoute)


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user
    return request.headers.get("x-api-key")


def hma_require(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """HMA's clients present their key as basic auth, a bearer token or `X-API-Key`."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Actor:
        return await authorized(request, _presented_key(request), allowed)

    return dependency


def _bank_body(bank: Bank) -> dict[str, Any]:
    return {"matching_enabled_ratio": 1.0 if bank.enabled else 0.0, "name": bank.name}


def _hma_signal_type(name: str) -> str:
    if name not in HMA_TYPES:
        raise InvalidInput(f"unknown signal type {name!r}; known: {sorted(HMA_TYPES)}")
    return HMA_TYPES[name]


def _hma_signals(entry: BankEntry) -> dict[str, str]:
    out = {}
    for s in entry.signals:
        if s.variant != "original":
            continue
        if s.signal_type == "pdq":
            out["pdq"] = s.value
        elif s.signal_type == "md5" and entry.content_type == "video":
            out["video_md5"] = s.value
    return out


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body is a JSON object")
    return body


# --- /c: banks and their content ------------------------------------------------------------


@router.get("/c/banks", summary="HMA: list banks")
def hma_list_banks(
    _actor: Actor = Depends(hma_require(*READERS)),
    session: Session = SESSION,
) -> list[dict]:
    return [_bank_body(bank) for bank, _count in banks.list_banks(session)]


@router.post("/c/banks", status_code=201, summary="HMA: create a bank")
async def hma_create_bank(
    request: Request,
    actor: Actor = Depends(hma_require(*WRITERS)),
    db: Database = Depends(get_db),
) -> JSONResponse:
    body = await _json_body(request)
    unknown = set(body) - {"name", "enabled", "enabled_ratio"}
    if unknown:
        raise InvalidInput(f"unknown fields: {sorted(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not re.match(HMA_BANK_NAME, name):
        raise InvalidInput("Bank names must be UPPER_WITH_UNDERSCORE")
    enabled = body.get("enabled", True)
    ratio = body.get("enabled_ratio")
    if ratio is not None:
        if ratio not in (0, 1, 0.0, 1.0) or isinstance(ratio, bool):
            raise InvalidInput("enabled_ratio is 0 or 1 here (banks match fully or not at all)")
        enabled = bool(ratio)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled is true or false")
    with db.session() as session:
        if session.scalar(select(Bank.id).where(Bank.name == name)) is not None:
            return JSONResponse({"message": f"Bank {name} already exists"}, status_code=403)
        bank = banks.create_bank(session, name, actor=actor.label, enabled=enabled)
        return JSONResponse(_bank_body(bank), status_code=201)


@router.get("/c/bank/{bank_name}", summary="HMA: one bank")
def hma_get_bank(
    bank_name: str,
    _actor: Actor = Depends(hma_require(*READERS)),
    session: Session = SESSION,
) -> dict:
    return _bank_body(banks.get_bank(session, bank_name))


@router.post("/c/bank/{bank_name}/signal", summary="HMA: add a signal to a bank")
async def hma_add_signal(
    bank_name: str,
    request: Request,
    actor: Actor = Depends(hma_require(*WRITERS)),
    db: Database = Depends(get_db),
) -> dict:
    body = await _json_body(request)
    note = body.pop("note", "") or ""
    if len(body) != 1:
        raise InvalidInput('give exactly one signal, e.g. {"pdq": "<64 hex>"}')
    ((hma_type, value),) = body.items()
    signal_type = _hma_signal_type(str(hma_type))
    content_type = "video" if hma_type == "video_md5" else None
    with db.session() as session:
        bank = banks.get_bank(session, bank_name)
        new = banks.NewEntry.validated(
            {signal_type: str(value)}, note=str(note), content_type=content_type
        )
        (entry,) = banks.add_entries(session, bank, [new], added_by=actor.label)
        return {"id": entry.id, "signals": _hma_signals(entry)}


async def _upload(request: Request, fields: set[str]) -> tuple[str, UploadFile, Any]:
    """The one file field (`photo` or `video`) of an HMA multipart request, and the form."""
    if request.query_params.get("url"):
        raise InvalidInput("prescreen does not fetch URLs; upload the file as photo= or video=")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("send multipart/form-data with a photo or video field")
    form = await request.form(max_files=1, max_fields=8)
    unknown = set(form) - fields - {"photo", "video"}
    if unknown:
        raise InvalidInput(f"unknown form fields: {sorted(unknown)}")
    for kind in ("photo", "video"):
        upload = form.get(kind)
        if isinstance(upload, UploadFile):
            return kind, upload, form
    raise InvalidInput("send the content as a photo or video file field")


async def _hash_upload(
    request: Request, kind: str, upload: UploadFile, settings: Settings, for_bank: bool = False
) -> Hashed:
    data = await upload.read()
    hashed = await run_hashing(
        request, hash_bytes, data, settings, upload.filename, upload.content_type, for_bank
    )
    if hashed.kind.value != kind:
        raise InvalidInput(f"the {kind} field holds a {hashed.kind.value}")
    return hashed


def _hma_hashes(hashed: Hashed, min_quality: int) -> dict[str, str]:
    if hashed.kind is ContentKind.video:
        return {"video_md5": hashed.signals.get("md5", "")}
    quality = hashed.signals.get("pdq_quality", 0)
    return {"pdq": hashed.signals.get("pdq", "") if quality >= min_quality else ""}


@router.post("/c/bank/{bank_name}/content", summary="HMA: add content to a bank by upload")
async def hma_add_content(
    bank_name: str,
    request: Request,
    actor: Actor = Depends(hma_require(*WRITERS)),
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> dict:
    kind, upload, form = await _upload(request, {"metadata", "note"})
    metadata = _metadata(form.get("metadata"))
    note = str(form.get("note") or "")[:2000]
    hashed = await _hash_upload(request, kind, upload, settings, for_bank=True)

    def store() -> dict:
        with db.session() as session:
            bank = banks.get_bank(session, bank_name)
            new = banks.NewEntry.validated(hashed.signals, note=note, content_type=kind)
            (entry,) = banks.add_entries(session, bank, [new], added_by=actor.label)
            session.add(EntryProvenance(entry_id=entry.id, origin={}, hma_metadata=metadata))
            return {"id": entry.id, "signals": _hma_signals(entry)}

    return await run_in_threadpool(store)


def _metadata(raw: Any) -> dict[str, Any]:
    empty = {"collab": None, "content_id": None, "content_uri": None, "json": None}
    if raw is None or raw == "":
        return empty
    try:
        given = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise InvalidInput("metadata is a JSON object") from exc
    if not isinstance(given, dict) or set(given) - {"content_id", "content_uri", "json"}:
        raise InvalidInput("metadata has content_id, content_uri and json")
    return {**empty, **given}


def _entry(session: Session, bank_name: str, content_id: int) -> tuple[Bank, BankEntry]:
    bank = banks.get_bank(session, bank_name)
    return bank, banks.get_entry(session, bank, content_id)


def _disable_until_ts(entry: BankEntry) -> int:
    """HMA's encoding: 1 enabled, 0 disabled, otherwise disabled until this Unix time."""
    if entry.enabled:
        return 1
    return int(entry.disabled_until.timestamp()) if entry.disabled_until else 0


@router.get("/c/bank/{bank_name}/content/{content_id}", summary="HMA: one bank content")
def hma_get_content(
    bank_name: str,
    content_id: ContentId,
    include_signals: bool = Query(False),
    _actor: Actor = Depends(hma_require(*READERS)),
    session: Session = SESSION,
) -> dict:
    bank, entry = _entry(session, bank_name, content_id)
    provenance = session.get(EntryProvenance, entry.id)
    metadata = _metadata(None) | ((provenance.hma_metadata or {}) if provenance else {})
    body: dict[str, Any] = {
        "bank": _bank_body(bank),
        "disable_until_ts": _disable_until_ts(entry),
        "id": entry.id,
        "metadata": metadata,
        "note": entry.note,
        "original_media_uri": None,
    }
    if include_signals:
        body["signals"] = _hma_signals(entry)
    return body


@router.delete("/c/bank/{bank_name}/content/{content_id}", summary="HMA: remove bank content")
def hma_delete_content(
    bank_name: str,
    content_id: ContentId,
    actor: Actor = Depends(hma_require(*WRITERS)),
    session: Session = SESSION,
) -> dict:
    bank = banks.get_bank(session, bank_name)
    try:
        entry = banks.get_entry(session, bank, content_id)
    except NotFound:
        return {"deleted": 0}
    banks.delete_entry(session, entry, actor.label)
    return {"deleted": 1}


# --- /h and /m: hashing and matching -----------------------------------------------------------


@router.post("/h/hash", summary="HMA: hash an uploaded photo or video")
async def hma_hash(
    request: Request,
    _actor: Actor = Depends(hma_require(*HASHERS)),
    settings: Settings = Depends(get_settings),
) -> dict:
    kind, upload, _form = await _upload(request, set())
    hashed = await _hash_upload(request, kind, upload, settings)
    return _hma_hashes(hashed, settings.min_pdq_quality)


def _bank_filter(banks_param: str | None) -> set[str] | None:
    if not banks_param:
        return None
    return {name.strip() for name in banks_param.split(",") if name.strip()}


async def _search(
    db: Database, matcher: Matcher, signal_type: str, value: str, only: set[str] | None
) -> list[Match]:
    prescreen_type = _hma_signal_type(signal_type)
    try:
        normalized = all_types()[prescreen_type].normalize(value)
    except (ValueError, PrescreenError) as exc:
        raise InvalidInput(f"invalid {signal_type} signal") from exc
    matches = await matches_for(db, matcher, {prescreen_type: normalized})
    return [m for m in matches if only is None or m.bank in only]


def _hit(match: Match) -> dict[str, Any]:
    return {"bank_content_id": match.entry, "distance": str(match.distance)}


def _by_bank(matches: list[Match]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for match in matches:
        grouped.setdefault(match.bank, []).append(_hit(match))
    return grouped


@router.get("/m/raw_lookup", summary="HMA: bank content ids matching a signal")
async def hma_raw_lookup(
    signal_type: str = Query(...),
    signal: str = Query(..., max_length=10_000),
    include_distance: bool = Query(False),
    banks_param: str | None = Query(None, alias="banks"),
    _actor: Actor = Depends(hma_require(*MATCHERS)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
) -> dict:
    matches = await _search(db, matcher, signal_type, signal, _bank_filter(banks_param))
    if include_distance:
        return {"matches": [_hit(m) for m in matches]}
    return {"matches": [m.entry for m in matches]}


@router.get("/m/lookup", summary="HMA: matches for a signal, by bank")
async def hma_lookup_signal(
    signal_type: str = Query(...),
    signal: str = Query(..., max_length=10_000),
    banks_param: str | None = Query(None, alias="banks"),
    _actor: Actor = Depends(hma_require(*MATCHERS)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
) -> dict:
    return _by_bank(await _search(db, matcher, signal_type, signal, _bank_filter(banks_param)))


@router.post("/m/lookup", summary="HMA: hash an upload and look it up, by signal type and bank")
async def hma_lookup_upload(
    request: Request,
    banks_param: str | None = Query(None, alias="banks"),
    _actor: Actor = Depends(hma_require(*MATCHERS)),
    db: Database = Depends(get_db),
    matcher: Matcher = Depends(get_matcher),
    settings: Settings = Depends(get_settings),
) -> dict:
    kind, upload, _form = await _upload(request, {"seed", "bypass_coinflip", "banks"})
    hashed = await _hash_upload(request, kind, upload, settings)
    hashes = _hma_hashes(hashed, settings.min_pdq_quality)
    only = _bank_filter(banks_param)
    if not all(hashes.values()):
        raise InvalidInput("the photo's PDQ quality is too low to match (invalid signal)")
    return {t: _by_bank(await _search(db, matcher, t, v, only)) for t, v in hashes.items()}


@router.post("/m/compare", summary="HMA: compare pairs of signals")
async def hma_compare(request: Request, _actor: Actor = Depends(hma_require(*MATCHERS))) -> dict:
    body = await _json_body(request)
    result: dict[str, Any] = {}
    for hma_type, pair in body.items():
        kind = all_types()[_hma_signal_type(str(hma_type))]
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        ):
            raise InvalidInput(f"{hma_type} takes a list of two signals")
        try:
            a, b = (kind.normalize(v) for v in pair)
        except (ValueError, PrescreenError) as exc:
            raise InvalidInput(f"invalid {hma_type} signal") from exc
        distance = kind.distance(a, b)
        limit = PDQ_COMPARE_THRESHOLD if hma_type == "pdq" else 0
        result[hma_type] = [distance <= limit, {"distance": distance}]
    return result


@router.get("/m/index/status", summary="HMA: index size and freshness per signal type")
def hma_index_status(
    _actor: Actor = Depends(hma_require(*MATCHERS)),
    session: Session = SESSION,
    matcher: Matcher = Depends(get_matcher),
) -> dict:
    matcher.sync(session)
    sizes = matcher.size()
    status = {}
    for hma_type, prescreen_type in (("pdq", "pdq"), ("video_md5", "md5")):
        built = session.scalar(
            select(func.max(SignalChange.created_at)).where(
                SignalChange.signal_type == prescreen_type
            )
        )
        size = sizes.get(prescreen_type, 0)
        if hma_type == "video_md5":
            size = _video_md5_count(session)
        status[hma_type] = {
            "built_to": int(built.timestamp()) if built and size else -1,
            "present": matcher.loaded,
            "size": size,
        }
    return status


def _video_md5_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(EntrySignal)
            .join(BankEntry, BankEntry.id == EntrySignal.entry_id)
            .where(EntrySignal.signal_type == "md5", BankEntry.content_type == "video")
        )
        or 0
    )


@router.get("/status", summary="HMA: liveness for load balancers (no key needed)")
def hma_status(request: Request) -> PlainTextResponse:
    if not request.app.state.matcher.loaded:
        return PlainTextResponse("INDEX-NOT-LOADED", status_code=503)
    return PlainTextResponse("I-AM-ALIVE")
