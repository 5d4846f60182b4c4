"""Screening: signals -> matches -> policy -> a stored decision, idempotent per content_id."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PrescreenError,
)
from prescreen.jobs.service import (
    JobContext,
    PermanentJobError,
    enqueue,
    find_by_dedupe_key,
    job_handler,
    job_to_dict,
    take_blob,
)
from prescreen.matching.service import Match, Matcher
from prescreen.screening.hooks import Screened, announce, check_uploader
from prescreen.screening.media_steps import MediaFindings, run_media_steps
from prescreen.screening.models import Content, Decision
from prescreen.screening.policy import POLICY_VERSION, Outcome, Verdict, decide
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.detect import decode_text, detect_kind
from prescreen.signals.registry import all_types, compute_signals, normalize_signals
from prescreen.webhooks.service import notify

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)
SCREEN_VIDEO_JOB = "screen_video"
NEVER = 1.01  # a threshold no calibrated score reaches
DECISIONS = Counter("prescreen_decisions_total", "Screening decisions", ["outcome"])


@dataclass
class Hashed:
    """What screening needs of an upload: its kind, all its signals, and (for text, never
    stored) the text itself for the classifiers."""

    kind: ContentKind
    signals: dict[str, Any]
    text: str | None = field(default=None, repr=False, compare=False)
    # An image's or video's bytes, for the OCR and logo steps (never stored by screening),
    # and an image's pixels as hashing decoded them (often reduced), to skip what they rule out.
    media: bytes | None = field(default=None, repr=False, compare=False)
    preview: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def matchable(self) -> dict[str, str]:
        types = all_types()
        return {k: v for k, v in self.signals.items() if k in types}

    @property
    def variants(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Extra hashes to search, by type: `pdq_variants` as {"pdq": {name: (hex, quality)}}."""
        return {
            key.removesuffix("_variants"): {name: tuple(pair) for name, pair in value.items()}
            for key, value in self.signals.items()
            if key.endswith("_variants") and isinstance(value, dict)
        }


def upload_kind(
    data: bytes, settings: Settings, filename: str | None = None, content_type: str | None = None
) -> ContentKind:
    """The kind of an upload within the size limit, or a clear error."""
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"upload is {len(data):,} bytes, over the limit of {settings.max_upload_bytes:,}"
        )
    return detect_kind(data, filename, content_type)


def hash_bytes(
    data: bytes,
    settings: Settings,
    filename: str | None = None,
    content_type: str | None = None,
    for_bank: bool = False,
    kind: ContentKind | None = None,
) -> Hashed:
    """Signals of an uploaded file; `for_bank` adds the variants a bank item stores (crops).
    `kind` is the upload's kind when the caller already checked it with `upload_kind`."""
    kind = kind or upload_kind(data, settings, filename, content_type)
    if kind is ContentKind.text:
        return hash_text(decode_text(data, filename or "the upload"), settings)
    upload = Upload(kind, data=data, max_image_pixels=settings.max_image_pixels, for_bank=for_bank)
    signals = compute_signals(upload)
    if for_bank:
        return Hashed(kind, signals)
    return Hashed(kind, signals, media=data, preview=upload.preview)


def hash_text(text: str, settings: Settings) -> Hashed:
    if len(text) > settings.max_text_chars:
        raise PayloadTooLarge(
            f"text is {len(text):,} characters, over the limit of {settings.max_text_chars:,}"
        )
    _require_encodable(text)
    return Hashed(ContentKind.text, compute_signals(Upload(ContentKind.text, text=text)), text)


def hash_url(url: str, settings: Settings) -> Hashed:
    if len(url) > settings.max_url_chars:
        raise PayloadTooLarge(f"URL is over the limit of {settings.max_url_chars:,} characters")
    _require_encodable(url)
    return Hashed(ContentKind.url, compute_signals(Upload(ContentKind.url, text=url)))


def hash_given(hashes: dict[str, Any]) -> Hashed:
    """Precomputed hashes from the caller: validated, and the content kind inferred from them."""
    quality = hashes.get("pdq_quality")
    if quality is not None and not (isinstance(quality, int) and 0 <= quality <= 100):
        raise InvalidInput("pdq_quality must be an integer from 0 to 100")
    raw = {k: v for k, v in hashes.items() if k != "pdq_quality"}
    signals: dict[str, Any] = normalize_signals(raw)
    if quality is not None:
        signals["pdq_quality"] = quality
    kinds = [kind for kind in ContentKind if any(kind in all_types()[t].kinds for t in raw)]
    return Hashed(kinds[0] if kinds else ContentKind.photo, signals)


def _require_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"text is not valid Unicode: {exc.reason} at position {exc.start}"
        ) from exc


def classifier_reasons(text: str | None, settings: Settings) -> list[dict[str, Any]]:
    """One reason per classifier head for a text: its calibrated score, what the policy's
    thresholds make of it, and the model version."""
    if not text or settings.classifier_policy == "off":
        return []
    from prescreen.classify.service import DEFAULT_THRESHOLDS, actions, classify, model_version

    thresholds = settings.classifier_thresholds or (
        DEFAULT_THRESHOLDS
        if settings.classifier_policy == "model"
        else {head: {"hold": t["block"], "block": NEVER} for head, t in DEFAULT_THRESHOLDS.items()}
    )
    (scores,) = classify([text])
    return [
        {
            "kind": "classifier",
            "head": head,
            "score": round(score, 4),
            "action": action,
            "thresholds": thresholds.get(head),
            "model_version": model_version(),
        }
        for head, score in scores.items()
        if (action := actions({head: score}, thresholds).get(head))
    ]


def media_steps(
    session: Session, matcher: Matcher, settings: Settings, hashed: Hashed
) -> MediaFindings:
    """The OCR and logo steps for an image (or a video's sampled frames), each within its time
    budget; a step that fails or overruns is logged and counted and adds nothing."""
    if hashed.media is None or hashed.kind not in (ContentKind.photo, ContentKind.video):
        return MediaFindings()
    return run_media_steps(session, matcher, settings, hashed.kind, hashed.media, hashed.preview)


def _merge_matches(first: list[Match], extra: list[Match]) -> list[Match]:
    """Both lists, an entry already matched keeping its first match."""
    seen = {m.entry for m in first}
    return first + [m for m in extra if m.entry not in seen]


def fingerprint(hashed: Hashed) -> str:
    canonical = json.dumps(hashed.matchable, sort_keys=True)
    return hashlib.sha256(f"{hashed.kind.value}|{canonical}".encode()).hexdigest()


@dataclass
class ScreenRequest:
    hashed: Hashed | None
    content_id: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    submitted_by: str = ""
    owner_key_id: str | None = None
    media: bytes | None = None  # the upload's bytes, for listeners that must keep them (review)
    media_type: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """Everything but the content, for a job that hashes the content later."""
        return {
            "content_id": self.content_id,
            "user_id": self.user_id,
            "metadata": self.metadata,
            "submitted_by": self.submitted_by,
            "owner_key_id": self.owner_key_id,
        }


def screen(db: Database, matcher: Matcher, settings: Settings, request: ScreenRequest) -> dict:
    """Decide on one content and store the decision. A repeat of the same content_id with the
    same content returns the stored decision; with different content it is a conflict.

    Matching, OCR, logo search and classifiers run in a read-only transaction; only storing the
    decision writes. On SQLite, where one transaction writes at a time, a slow step therefore
    never holds up other uploads. A repeat is found when its insert meets the unique content_id,
    not by looking first: nearly every content_id is new, and the lookup cost a screen about
    1 ms; a repeat is evaluated again before it is answered from the stored decision."""
    with db.session(readonly=True) as session:
        evaluation = _evaluate(session, matcher, settings, request)
    try:  # a content_id makes a retry after an interrupted commit safe (idempotent)
        return db.retrying(
            lambda session: _record(session, request, evaluation),
            idempotent=request.content_id is not None,
        )
    except IntegrityError:  # the content_id was screened before, or by a concurrent request
        log.info("content_id already screened; returning the stored decision")
    return db.retrying(
        lambda session: _stored_decision(session, request) or _record(session, request, evaluation),
        idempotent=True,
    )


def _screen_once(
    session: Session, matcher: Matcher, settings: Settings, request: ScreenRequest
) -> dict:
    """Decide and store in one transaction (a job's, whose commit also completes the job)."""
    stored = _stored_decision(session, request)
    if stored is not None:
        return stored
    return _record(session, request, _evaluate(session, matcher, settings, request))


@dataclass
class Evaluation:
    """What screening found, before anything is stored."""

    matches: list[Match]
    verdict: Verdict
    notes: list[dict[str, Any]]


def _stored_decision(session: Session, request: ScreenRequest) -> dict | None:
    """The decision already stored for this content_id, if any (a conflict if the content
    differs)."""
    if request.content_id is None:
        return None
    stored = session.scalar(select(Content).where(Content.content_id == request.content_id))
    if stored is None:
        return None
    assert request.hashed is not None
    if stored.fingerprint != fingerprint(request.hashed):
        raise Conflict(
            f"content_id {request.content_id!r} was already screened with different "
            "content; use a new content_id for new content",
            content_id=request.content_id,
        )
    return decision_to_dict(_latest_decision(session, stored), stored)


def _evaluate(
    session: Session, matcher: Matcher, settings: Settings, request: ScreenRequest
) -> Evaluation:
    assert request.hashed is not None
    hashed = request.hashed
    matches = matcher.lookup(session, hashed.matchable, variants=hashed.variants)
    found = media_steps(session, matcher, settings, hashed)
    matches = _merge_matches(matches, found.matches)
    verdict = decide(
        matches,
        hashed.signals.get("pdq_quality"),
        settings.min_pdq_quality,
        uploader_reasons=check_uploader(session, request.user_id),
        classifier_reasons=classifier_reasons(hashed.text, settings) + found.classifier_reasons,
    )
    if found.steps:
        hashed.signals["media_steps"] = found.steps
    return Evaluation(matches, verdict, found.notes)


def _record(session: Session, request: ScreenRequest, evaluation: Evaluation) -> dict:
    """Store the content and its decision; a content_id stored before makes the insert fail on
    its unique constraint (IntegrityError)."""
    assert request.hashed is not None
    hashed, verdict, matches = request.hashed, evaluation.verdict, evaluation.matches
    content = Content(
        id=str(uuid.uuid4()),
        content_id=request.content_id,
        user_id=request.user_id,
        kind=hashed.kind.value,
        fingerprint=fingerprint(hashed),
        signals=hashed.signals,
        meta=request.metadata,
        submitted_by=request.submitted_by,
        owner_key_id=request.owner_key_id,
    )
    decision = Decision(
        id=str(uuid.uuid4()),
        content_pk=content.id,
        outcome=verdict.outcome.value,
        reasons=verdict.reasons + evaluation.notes,
        matches=[m.to_dict() for m in matches],
        policy_version=POLICY_VERSION,
        statement_of_reasons_id=(
            str(uuid.uuid4()) if verdict.outcome is not Outcome.allow else None
        ),
    )
    session.add_all([content, decision])
    session.flush()
    announce(session, Screened(content, decision, request.media, request.media_type))
    DECISIONS.labels(decision.outcome).inc()
    log.info(
        "screened",
        extra={"decision": decision.id, "outcome": decision.outcome, "matches": len(matches)},
    )
    return decision_to_dict(decision, content)


def submit_video(db: Database, request: ScreenRequest, data: bytes, filename: str) -> dict:
    """Queue a video for asynchronous screening; a repeated content_id gets the same job, or
    the stored decision once there is one."""
    dedupe_key = f"screen:{request.content_id}" if request.content_id else None
    for attempt in range(2):
        try:
            with db.session() as session:
                if request.content_id is not None:
                    stored = session.scalar(
                        select(Content).where(Content.content_id == request.content_id)
                    )
                    if stored is not None:
                        return {
                            "decision": decision_to_dict(_latest_decision(session, stored), stored)
                        }
                    existing = find_by_dedupe_key(session, dedupe_key or "")
                    if existing is not None:
                        return {"job": job_to_dict(existing)}
                job = enqueue(
                    session,
                    SCREEN_VIDEO_JOB,
                    request.to_payload(),
                    submitted_by=request.submitted_by,
                    max_attempts=3,
                    dedupe_key=dedupe_key,
                    blob=(data, filename),
                )
                return {"job": job_to_dict(job)}
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


@job_handler(SCREEN_VIDEO_JOB)
def screen_video_job(ctx: JobContext) -> dict[str, Any]:
    """Hash the video, decide, store the decision and queue the webhook, all in the job's
    transaction: a worker killed half-way leaves nothing behind, and the next one starts over."""
    settings: Settings = ctx.worker.context["settings"]
    matcher: Matcher = ctx.worker.context["matcher"]
    data, _name = take_blob(ctx.session, ctx.job.id)
    try:
        upload = Upload(ContentKind.video, data=data, max_image_pixels=settings.max_image_pixels)
        hashed = Hashed(ContentKind.video, compute_signals(upload), media=data)
    except PrescreenError as exc:
        raise PermanentJobError(exc.message) from exc
    payload = ctx.job.payload
    request = ScreenRequest(
        hashed,
        content_id=payload.get("content_id"),
        user_id=payload.get("user_id"),
        metadata=payload.get("metadata") or {},
        submitted_by=payload.get("submitted_by", ""),
        owner_key_id=payload.get("owner_key_id"),
        media=data,
        media_type="video/mp4",
    )
    decision = _screen_once(ctx.session, matcher, settings, request)
    notify(ctx.session, payload.get("owner_key_id"), "decision", decision)
    return {"decision_id": decision["id"], "decision": decision}


def _latest_decision(session: Session, content: Content) -> Decision:
    return session.scalars(
        select(Decision)
        .where(Decision.content_pk == content.id)
        .order_by(Decision.created_at.desc())
        .limit(1)
    ).one()


def get_decision(session: Session, decision_id: str) -> dict:
    decision = session.get(Decision, decision_id)
    if decision is None:
        raise NotFound(f"no decision {decision_id!r}")
    return decision_to_dict(decision, decision.content)


def decision_to_dict(decision: Decision, content: Content) -> dict:
    return {
        "id": decision.id,
        "decision": decision.outcome,
        "content_id": content.content_id,
        "user_id": content.user_id,
        "content_type": content.kind,
        "reasons": decision.reasons,
        "matches": [
            {k: m[k] for k in ("bank", "entry", "label", "labels", "signal_type", "distance")}
            for m in decision.matches
        ],
        "signals": content.signals,
        "automated": decision.automated,
        "policy_version": decision.policy_version,
        "statement_of_reasons_id": decision.statement_of_reasons_id,
        "created_at": decision.created_at.isoformat(),
    }
