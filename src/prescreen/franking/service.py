"""Server side of message franking: versioned platform keys (encrypted at rest), stamping, and
verification of a participant's report, which is then screened against the banks.

Stamping stores nothing. A report is verified in full (both MACs, key status, context,
attachments, the reporter's membership) before anything is written; then it is recorded, each
revealed part is screened with the *sender* as the user, and `verified_report_listener`s are
told once per new report (the review queue opens its case there).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import importlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from prometheus_client import Counter
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.errors import InvalidInput, NotFound, PrescreenError
from prescreen.franking import protocol
from prescreen.franking.models import E2EReport, E2EReportDecision, E2EReportMessage, FrankingKey
from prescreen.franking.protocol import AttachmentRef, DecodeError, MessageBody, StampContext
from prescreen.matching.service import Matcher
from prescreen.screening.models import Decision
from prescreen.screening.service import Hashed, ScreenRequest, hash_bytes, hash_text, screen

log = logging.getLogger(__name__)

MASTER_KEY_FILE = "franking_master_key"
LABEL_WRAP = b"prescreen/franking-key/v1"
LABEL_MASTER_FINGERPRINT = b"prescreen/franking-master/v1"
LABEL_DEDUPE = b"prescreen/e2e-report/v1"
MAX_REPORT_MESSAGES = 50

STAMPS = Counter("prescreen_franking_stamps_total", "Franking tags stamped")
REPORTS = Counter("prescreen_e2e_reports_total", "End-to-end reports", ["outcome"])


# ---------------------------------------------------------------------------------------------
# Errors a reporter or integrator can act on


class ReportRefused(PrescreenError):
    """A report failed verification; `code` says which check."""

    status_code = 422
    code = "report_refused"

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message, **detail)
        self.code = code


class NotAMember(PrescreenError):
    status_code = 403
    code = "not_a_member"


class MembershipUnavailable(PrescreenError):
    """The platform's membership check did not answer; nothing was recorded, retry later."""

    status_code = 503
    code = "membership_check_unavailable"


class FrankingUnavailable(PrescreenError):
    """The franking keys cannot be used (master key missing or wrong)."""

    status_code = 503
    code = "franking_unavailable"


# ---------------------------------------------------------------------------------------------
# The master key and platform keys


def _parse_master(text: str) -> bytes:
    text = text.strip()
    candidates: list[bytes] = []
    if len(text) == 64:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(decode(text + "=" * (-len(text) % 4)))
    for key in candidates:
        if len(key) == 32:
            return key
    raise FrankingUnavailable(
        "PRESCREEN_FRANKING_MASTER_KEY must be 32 bytes as 64 hex digits or base64"
    )


def master_key(settings: Settings) -> bytes:
    """The configured master key, or one generated at first start into DATA_DIR (mode 0600)."""
    if settings.franking_master_key is not None:
        return _parse_master(settings.franking_master_key.get_secret_value())
    path = Path(settings.data_dir) / MASTER_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            log.info("generated a franking master key", extra={"path": str(path)})
    text = path.read_text().strip()
    if not text:  # a concurrent first start may still be writing it
        raise FrankingUnavailable(f"{path} is empty; delete it only if no franking key exists")
    return _parse_master(text)


def master_fingerprint(master: bytes) -> str:
    return hashlib.sha256(LABEL_MASTER_FINGERPRINT + master).hexdigest()[:16]


def _wrap_ad(key_id: int) -> bytes:
    return LABEL_WRAP + protocol.u32(key_id)


def wrap_material(master: bytes, key_id: int, material: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCMSIV(master).encrypt(nonce, material, _wrap_ad(key_id))


def unwrap_material(master: bytes, key_id: int, blob: bytes) -> bytes:
    try:
        return AESGCMSIV(master).decrypt(blob[:12], blob[12:], _wrap_ad(key_id))
    except InvalidTag as exc:
        raise FrankingUnavailable(
            f"franking key {key_id} does not decrypt under the configured master key"
        ) from exc


@dataclass(frozen=True)
class PlatformKey:
    """A decrypted platform key: never logged, never returned by the API."""

    key_id: int
    hmac_key: bytes = field(repr=False)
    signing_seed: bytes = field(repr=False)
    public_key: bytes
    retired_at: datetime | None


def _decrypt(row: FrankingKey, settings: Settings) -> PlatformKey:
    material = unwrap_material(master_key(settings), row.key_id, row.material)
    return PlatformKey(
        row.key_id, material[:32], material[32:], bytes.fromhex(row.public_key), row.retired_at
    )


def _new_key_row(session: Session, settings: Settings, now: datetime) -> FrankingKey:
    master = master_key(settings)
    key_id = (session.scalar(select(func.max(FrankingKey.key_id))) or 0) + 1
    material = os.urandom(protocol.PLATFORM_KEY_BYTES + 32)
    row = FrankingKey(
        key_id=key_id,
        material=wrap_material(master, key_id, material),
        master_fingerprint=master_fingerprint(master),
        public_key=protocol.public_key_of(material[32:]).hex(),
        created_at=now,
    )
    session.add(row)
    return row


def _current_row(session: Session) -> FrankingKey | None:
    return session.scalars(
        select(FrankingKey)
        .where(FrankingKey.rotated_at.is_(None), FrankingKey.retired_at.is_(None))
        .order_by(FrankingKey.key_id.desc())
        .limit(1)
    ).first()


def active_key(session: Session, settings: Settings) -> PlatformKey:
    """The key that stamps now; the first one is made on first use."""
    for _attempt in range(3):
        row = _current_row(session)
        if row is not None:
            return _decrypt(row, settings)
        try:
            with session.begin_nested():
                row = _new_key_row(session, settings, utcnow())
            log.info("created franking key", extra={"key_id": row.key_id})
            return _decrypt(row, settings)
        except IntegrityError:
            continue  # another process created it; read theirs
    raise FrankingUnavailable("could not create a franking key")


def rotate_key(
    session: Session,
    settings: Settings,
    retire_after_days: float | None = None,
    now: datetime | None = None,
) -> FrankingKey:
    """Start stamping with a new key. Every older key that still stamps stops stamping now and
    keeps verifying reports for `retire_after_days` (default: the configured retention)."""
    now = now or utcnow()
    days = (
        settings.franking_key_retire_after_days if retire_after_days is None else retire_after_days
    )
    if days < 0:
        raise InvalidInput("retire_after_days must not be negative")
    for attempt in range(3):
        try:
            with session.begin_nested():
                for old in session.scalars(
                    select(FrankingKey).where(FrankingKey.rotated_at.is_(None))
                ):
                    old.rotated_at = now
                    retire = now + timedelta(days=days)
                    if old.retired_at is None or old.retired_at > retire:
                        old.retired_at = retire
                row = _new_key_row(session, settings, now)
                session.flush()
            log.info("rotated franking key", extra={"key_id": row.key_id})
            return row
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def retire_key(session: Session, key_id: int, now: datetime | None = None) -> FrankingKey:
    """Stop a key now, for stamping and for verifying (e.g. after a compromise). Reports that
    rely on it can no longer be verified."""
    row = session.get(FrankingKey, key_id)
    if row is None:
        raise NotFound(f"no franking key {key_id}")
    now = now or utcnow()
    row.rotated_at = row.rotated_at or now
    if row.retired_at is None or row.retired_at > now:
        row.retired_at = now
    session.flush()
    return row


def key_to_dict(row: FrankingKey, now: datetime | None = None) -> dict[str, Any]:
    """Public facts about a key; never its material."""
    now = now or utcnow()
    retired = row.retired_at is not None and row.retired_at <= now
    return {
        "key_id": row.key_id,
        "public_key": base64.b64encode(bytes.fromhex(row.public_key)).decode(),
        "created_at": row.created_at.isoformat(),
        "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None,
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
        "stamping": row.rotated_at is None and not retired,
        "verifying": not retired,
    }


def list_keys(session: Session) -> list[FrankingKey]:
    return list(session.scalars(select(FrankingKey).order_by(FrankingKey.key_id)))


# ---------------------------------------------------------------------------------------------
# Stamping


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def stamp(
    session: Session,
    settings: Settings,
    tag: bytes,
    sender_id: str,
    conversation_id: str,
    sign: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Stamp a franking tag with what the platform observed (sender account, conversation,
    server time). Only the tag is seen, and nothing is stored."""
    if len(tag) != protocol.TAG_BYTES:
        raise InvalidInput(f"tag must be {protocol.TAG_BYTES} bytes (base64)")
    key = active_key(session, settings)
    server_ts_ms = to_ms(now or utcnow())
    try:
        context = StampContext(key.key_id, sender_id, conversation_id, server_ts_ms).encode()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    mac = protocol.stamp_mac(key.hmac_key, tag, context)
    signature = protocol.sign_stamp(key.signing_seed, mac, context) if sign else None
    STAMPS.inc()
    return {
        "key_id": key.key_id,
        "context": base64.b64encode(context).decode(),
        "stamp": base64.b64encode(mac).decode(),
        "signature": base64.b64encode(signature).decode() if signature else None,
        "server_ts_ms": server_ts_ms,
        "server_ts": from_ms(server_ts_ms).isoformat(),
        "sender_id": sender_id,
        "conversation_id": conversation_id,
    }


# ---------------------------------------------------------------------------------------------
# Membership: was the reporter in the conversation when the message was sent?

MembershipCheck = Callable[[str, str, datetime], bool]
"""(conversation_id, user_id, at) -> whether user_id was a member of the conversation at `at`."""

_membership_override: MembershipCheck | None = None


def set_membership_check(check: MembershipCheck | None) -> MembershipCheck | None:
    """Use an in-process function for membership (overrides the settings); returns the
    previous one. `None` goes back to the settings."""
    global _membership_override
    previous, _membership_override = _membership_override, check
    return previous


def http_membership_check(
    url: str, token: str | None = None, timeout: float = 5.0
) -> MembershipCheck:
    """POST {"conversation_id", "user_id", "at", "at_ms"} to the platform; it answers
    {"member": true|false}."""

    def check(conversation_id: str, user_id: str, at: datetime) -> bool:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "at_ms": to_ms(at),
        }
        try:
            response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise MembershipUnavailable(
                "the membership callback could not be reached", error=type(exc).__name__
            ) from exc
        if response.status_code != 200:
            raise MembershipUnavailable(
                "the membership callback failed", status=response.status_code
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise MembershipUnavailable("the membership callback did not answer JSON") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("member"), bool):
            raise MembershipUnavailable('the membership callback must answer {"member": bool}')
        return answer["member"]

    return check


def membership_check_for(settings: Settings) -> MembershipCheck | None:
    """In order: a function set in-process, `PRESCREEN_MEMBERSHIP_CHECK` ("module:function"),
    `PRESCREEN_MEMBERSHIP_CALLBACK_URL`."""
    if _membership_override is not None:
        return _membership_override
    if settings.membership_check:
        module, _, name = settings.membership_check.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise MembershipUnavailable(
                f"PRESCREEN_MEMBERSHIP_CHECK {settings.membership_check!r} cannot be imported"
            ) from exc
    if settings.membership_callback_url:
        token = settings.membership_callback_token
        return http_membership_check(
            settings.membership_callback_url,
            token.get_secret_value() if token else None,
            settings.membership_callback_timeout_seconds,
        )
    return None


def _check_member(check: MembershipCheck, conversation_id: str, user_id: str, at: datetime) -> bool:
    try:
        return check(conversation_id, user_id, at) is True
    except PrescreenError:
        raise
    except Exception as exc:
        log.warning("membership check failed", extra={"error": type(exc).__name__})
        raise MembershipUnavailable("the membership check failed") from exc


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass
class ReportItem:
    """One reported message as submitted: the opening and the platform's stamp, decoded."""

    body: bytes
    franking_key: bytes
    context: bytes
    stamp: bytes
    attachments: list[bytes] = field(default_factory=list)
    tag: bytes | None = None


@dataclass
class ReportSubmission:
    reporter_id: str
    items: list[ReportItem]
    reason: str | None = None
    note: str = ""


@dataclass
class VerifiedItem:
    position: int
    item: ReportItem
    body: MessageBody
    context: StampContext

    @property
    def server_ts(self) -> datetime:
        return from_ms(self.context.server_ts_ms)


def _refuse(code: str, message: str, position: int, **detail: Any) -> ReportRefused:
    REPORTS.labels(code).inc()
    return ReportRefused(code, f"message {position}: {message}", message_index=position, **detail)


def _key_for(
    session: Session, settings: Settings, key_id: int, position: int, now: datetime
) -> PlatformKey:
    row = session.get(FrankingKey, key_id)
    if row is None:
        raise _refuse(
            "unknown_key", f"the stamp names unknown key {key_id}", position, key_id=key_id
        )
    if row.retired_at is not None and row.retired_at <= now:
        raise _refuse(
            "key_retired",
            f"the stamp's key {key_id} was retired; reports under it can no longer be verified",
            position,
            key_id=key_id,
            retired_at=row.retired_at.isoformat(),
        )
    return _decrypt(row, settings)


def verify_item(
    session: Session, settings: Settings, position: int, item: ReportItem, now: datetime
) -> VerifiedItem:
    """Every cryptographic and consistency check on one reported message."""
    try:
        context = StampContext.decode(item.context)
    except DecodeError as exc:
        raise _refuse("malformed_context", str(exc), position) from exc
    if len(item.stamp) != protocol.STAMP_BYTES:
        raise _refuse("malformed_stamp", f"a stamp is {protocol.STAMP_BYTES} bytes", position)
    if len(item.franking_key) != protocol.FRANKING_KEY_BYTES:
        raise _refuse(
            "malformed_franking_key",
            f"a franking key is exactly {protocol.FRANKING_KEY_BYTES} bytes",
            position,
        )
    key = _key_for(session, settings, context.key_id, position, now)
    tag = protocol.franking_tag(item.franking_key, item.body)
    if item.tag is not None and not hmac.compare_digest(tag, item.tag):
        raise _refuse(
            "body_mismatch",
            "the body and franking key do not open the franking tag (altered body or wrong key)",
            position,
        )
    expected = protocol.stamp_mac(key.hmac_key, tag, item.context)
    if not hmac.compare_digest(expected, item.stamp):
        raise _refuse(
            "stamp_mismatch",
            "the platform stamp does not verify for this body, franking key and context "
            "(altered content, context or time, a wrong key, or a forged stamp)",
            position,
        )
    try:
        body = MessageBody.decode(item.body)
        from_ms(context.server_ts_ms)
    except (DecodeError, ValueError, OverflowError, OSError) as exc:
        raise _refuse("malformed_body", str(exc), position) from exc
    if body.sender_id != context.sender_id or body.conversation_id != context.conversation_id:
        raise _refuse(
            "context_mismatch",
            "the body's sender or conversation differs from what the platform stamped",
            position,
        )
    if len(item.attachments) != len(body.attachments):
        raise _refuse(
            "attachment_mismatch",
            f"the message commits to {len(body.attachments)} attachments; give the plaintext of "
            f"each, in order ({len(item.attachments)} given)",
            position,
        )
    for index, (ref, data) in enumerate(zip(body.attachments, item.attachments, strict=True)):
        digest = hashlib.sha256(data).digest()
        if len(data) != ref.size or not hmac.compare_digest(digest, ref.sha256):
            raise _refuse(
                "attachment_mismatch",
                f"attachment {index} is not the plaintext whose SHA-256 the sender committed to",
                position,
                attachment_index=index,
            )
    return VerifiedItem(position, item, body, context)


def dedupe_key(reporter_id: str, items: Sequence[ReportItem]) -> str:
    stamps = b"".join(sorted(item.stamp for item in items))
    data = LABEL_DEDUPE + protocol.lp(reporter_id.encode()) + stamps
    return hashlib.sha256(data).hexdigest()


def _storable(text: str) -> str:
    """A display copy a database column accepts (the exact bytes are kept in `body`)."""
    return text.replace("\x00", "\ufffd")


def _attachment_facts(ref: AttachmentRef) -> dict[str, Any]:
    return {"sha256": ref.sha256.hex(), "size": ref.size, "mime": _storable(ref.mime)}


def _claim(
    db: Database,
    submission: ReportSubmission,
    verified: list[VerifiedItem],
    key: str,
    submitted_by: str,
    owner_key_id: str | None,
) -> E2EReport:
    """The report with this dedupe key: the stored one, or a new pending one."""
    for attempt in range(2):
        try:
            with db.session() as session:
                existing = session.scalar(select(E2EReport).where(E2EReport.dedupe_key == key))
                if existing is not None:
                    return existing
                report = E2EReport(
                    id=str(uuid.uuid4()),
                    dedupe_key=key,
                    reporter_id=submission.reporter_id,
                    reason=submission.reason,
                    note=submission.note,
                    status="pending",
                    submitted_by=submitted_by[:160],
                    owner_key_id=owner_key_id,
                    created_at=utcnow(),
                )
                report.messages = [
                    E2EReportMessage(
                        position=v.position,
                        stamp=v.item.stamp.hex(),
                        key_id=v.context.key_id,
                        message_id=v.body.message_id.hex(),
                        sender_id=v.context.sender_id,
                        conversation_id=v.context.conversation_id,
                        server_ts=v.server_ts,
                        client_ts_ms=v.body.client_ts_ms,
                        content_type=_storable(v.body.content_type),
                        content=_storable(v.body.content),
                        attachments=[_attachment_facts(a) for a in v.body.attachments],
                        body=v.item.body,
                        franking_key=v.item.franking_key,
                        context=v.item.context,
                    )
                    for v in verified
                ]
                session.add(report)
                session.flush()
                return report
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _screen_parts(
    db: Database,
    matcher: Matcher,
    settings: Settings,
    report: E2EReport,
    verified: list[VerifiedItem],
    submitted_by: str,
    owner_key_id: str | None,
) -> list[tuple[int, str, str | None, str | None]]:
    """Screen each revealed text and attachment; the reported user is the sender."""
    links: list[tuple[int, str, str | None, str | None]] = []
    for v in verified:
        parts: list[tuple[str, Callable[[], Hashed], bytes | None, str | None]] = []
        if v.body.content:
            parts.append(("text", lambda v=v: hash_text(v.body.content, settings), None, None))
        for index, (ref, data) in enumerate(
            zip(v.body.attachments, v.item.attachments, strict=True)
        ):
            parts.append(
                (
                    f"attachment:{index}",
                    lambda data=data, ref=ref: hash_bytes(data, settings, content_type=ref.mime),
                    data,
                    _storable(ref.mime),
                )
            )
        for part, hasher, media, media_type in parts:
            try:
                hashed = hasher()
            except PrescreenError as exc:
                links.append((v.position, part, None, f"{exc.code}: {exc.message}"[:500]))
                continue
            except Exception:  # one unreadable attachment must not lose a verified report
                log.exception("hashing a reported part failed", extra={"report": report.id})
                links.append((v.position, part, None, "hashing_failed"))
                continue
            request = ScreenRequest(
                hashed,
                content_id=f"e2e:{report.id}:{v.position}:{part}",
                user_id=v.context.sender_id,
                metadata={
                    "source": "e2e_report",
                    "report_id": report.id,
                    "conversation_id": v.context.conversation_id,
                    "message_index": v.position,
                    "part": part,
                },
                submitted_by=submitted_by,
                owner_key_id=owner_key_id,
                media=media,
                media_type=media_type,
            )
            try:
                decision = screen(db, matcher, settings, request)
            except PrescreenError as exc:
                links.append((v.position, part, None, f"{exc.code}: {exc.message}"[:500]))
                continue
            links.append((v.position, part, decision["id"], None))
    return links


ReportListener = Callable[[Session, E2EReport], None]
_report_listeners: list[ReportListener] = []


def verified_report_listener(fn: ReportListener) -> ReportListener:
    """Register `fn(session, report)`, called once per newly verified report, in the
    transaction that marks it verified, after its decision links are stored
    (`report.links`: position, part, decision_id)."""
    _report_listeners.append(fn)
    return fn


def _finalize(
    db: Database, report_id: str, links: list[tuple[int, str, str | None, str | None]]
) -> tuple[E2EReport, bool]:
    for attempt in range(2):
        try:
            with db.session() as session:
                report = session.get(E2EReport, report_id)
                assert report is not None
                have = {(link.position, link.part) for link in report.links}
                for position, part, decision_id, error in links:
                    if (position, part) not in have:
                        report.links.append(
                            E2EReportDecision(
                                position=position, part=part, decision_id=decision_id, error=error
                            )
                        )
                session.flush()
                changed = session.execute(
                    update(E2EReport)
                    .where(E2EReport.id == report_id, E2EReport.status == "pending")
                    .values(status="verified", verified_at=utcnow())
                    .execution_options(synchronize_session=False)
                ).rowcount
                session.refresh(report)
                if changed:
                    for listener in _report_listeners:
                        listener(session, report)
                return report, bool(changed)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def submit_report(
    db: Database,
    matcher: Matcher,
    settings: Settings,
    submission: ReportSubmission,
    submitted_by: str = "",
    owner_key_id: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Verify, record and screen a report. Returns (report, created); a replay of a recorded
    report returns it with created False. Any failed check refuses the whole report and
    records nothing."""
    now = now or utcnow()
    if not submission.items:
        raise InvalidInput("a report names at least one message")
    if len(submission.items) > MAX_REPORT_MESSAGES:
        raise InvalidInput(f"a report names at most {MAX_REPORT_MESSAGES} messages")
    if len({item.stamp for item in submission.items}) != len(submission.items):
        raise InvalidInput("a report names each message once")
    with db.session() as session:
        verified = [
            verify_item(session, settings, i, item, now) for i, item in enumerate(submission.items)
        ]
    key = dedupe_key(submission.reporter_id, submission.items)
    with db.session() as session:
        stored = session.scalar(select(E2EReport).where(E2EReport.dedupe_key == key))
        if stored is not None and stored.status == "verified":
            REPORTS.labels("duplicate").inc()
            return report_to_dict(session, stored, duplicate=True), False
    check = membership_check_for(settings)
    if check is None:
        raise MembershipUnavailable(
            "no membership check is configured: set PRESCREEN_MEMBERSHIP_CALLBACK_URL"
        )
    asked: dict[tuple[str, int], bool] = {}
    for v in verified:
        ask = (v.context.conversation_id, v.context.server_ts_ms)
        if ask not in asked:
            asked[ask] = _check_member(check, ask[0], submission.reporter_id, v.server_ts)
        if not asked[ask]:
            REPORTS.labels("not_a_member").inc()
            raise NotAMember(
                f"message {v.position}: the reporter was not a member of the conversation when "
                "the message was sent",
                message_index=v.position,
            )
    report = _claim(db, submission, verified, key, submitted_by, owner_key_id)
    if report.status != "verified":
        links = _screen_parts(db, matcher, settings, report, verified, submitted_by, owner_key_id)
        report, created = _finalize(db, report.id, links)
    else:
        created = False
    REPORTS.labels("verified" if created else "duplicate").inc()
    log.info(
        "e2e report verified" if created else "e2e report repeated",
        extra={"report": report.id, "messages": len(verified)},
    )
    with db.session() as session:
        stored = session.get(E2EReport, report.id)
        assert stored is not None
        return report_to_dict(session, stored, duplicate=not created), created


def get_report(session: Session, report_id: str) -> E2EReport:
    report = session.get(E2EReport, report_id)
    if report is None:
        raise NotFound(f"no report {report_id!r}")
    return report


def verified_reports_for(session: Session, decision_id: str) -> list[E2EReport]:
    """The verified reports whose revealed content got this decision."""
    return list(
        session.scalars(
            select(E2EReport)
            .join(E2EReportDecision, E2EReportDecision.report_id == E2EReport.id)
            .where(E2EReportDecision.decision_id == decision_id, E2EReport.status == "verified")
            .distinct()
            .order_by(E2EReport.created_at)
        )
    )


def report_to_dict(session: Session, report: E2EReport, duplicate: bool = False) -> dict[str, Any]:
    decisions = {
        d.id: d
        for d in session.scalars(
            select(Decision).where(
                Decision.id.in_([link.decision_id for link in report.links if link.decision_id])
            )
        )
    }
    by_position: dict[int, list[dict[str, Any]]] = {}
    for link in report.links:
        decision = decisions.get(link.decision_id) if link.decision_id else None
        entry: dict[str, Any] = {"part": link.part, "decision_id": link.decision_id}
        if decision is not None:
            entry.update(
                {
                    "decision": decision.outcome,
                    "reasons": decision.reasons,
                    "matches": [
                        {
                            k: m.get(k)
                            for k in ("bank", "entry", "label", "labels", "signal_type", "distance")
                        }
                        for m in decision.matches
                    ],
                }
            )
        else:
            entry.update({"decision": None, "error": link.error})
        by_position.setdefault(link.position, []).append(entry)
    return {
        "id": report.id,
        "status": report.status,
        "duplicate": duplicate,
        "reporter_id": report.reporter_id,
        "reason": report.reason,
        "note": report.note,
        "created_at": report.created_at.isoformat(),
        "verified_at": report.verified_at.isoformat() if report.verified_at else None,
        "messages": [
            {
                "index": m.position,
                "message_id": m.message_id,
                "sender_id": m.sender_id,
                "conversation_id": m.conversation_id,
                "server_ts": m.server_ts.isoformat(),
                "server_ts_ms": to_ms(m.server_ts),
                "client_ts_ms": m.client_ts_ms,
                "key_id": m.key_id,
                "content_type": m.content_type,
                "content": m.content,
                "attachments": m.attachments,
                "screening": by_position.get(m.position, []),
            }
            for m in report.messages
        ],
    }
