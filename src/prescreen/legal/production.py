"""Productions: the only queries an export can run, and the signed zip they go into.

A `Scope` (accounts, data categories, time range) is compiled into one query per category, each
filtered by those accounts and that range; nothing else reaches the bundle. The zip holds
`manifest.json` (the request, scope, approvals and the SHA-256 of every file), `manifest.sig`
(Ed25519 over the manifest's bytes, base64) and the files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.audit.logformat import key_id, verify_signature
from prescreen.screening.models import Content, Decision

FORMAT = "prescreen-production/1"
MANIFEST, SIGNATURE, README = "manifest.json", "manifest.sig", "README.txt"
CATEGORIES = ("account", "decisions", "review_cases", "content")
NOT_HELD = (
    "prescreen holds no content of end-to-end-encrypted messages: only messages a participant "
    "reported (and the platform verified) are held, and hashes of what was screened."
)
README_TEXT = f"""This is a production of records under legal process, made by prescreen.

manifest.json names the legal request, the approved scope, the approvals, and the SHA-256 digest
of every other file in this archive. manifest.sig is an Ed25519 signature (base64) over the exact
bytes of manifest.json, by the key whose id the manifest names; obtain that key from the
operator independently and check it with `prescreen legal verify-production FILE --public-key`.

{NOT_HELD}
"""


@dataclass(frozen=True)
class Scope:
    accounts: tuple[str, ...]
    categories: tuple[str, ...]
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "accounts": list(self.accounts),
            "categories": list(self.categories),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    def covers(self, user_id: str | None, moment: datetime) -> bool:
        return user_id in self.accounts and self.start <= moment <= self.end


@dataclass
class File:
    path: str
    data: bytes
    records: int


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ndjson(path: str, records: Iterable[dict[str, Any]]) -> File:
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
    return File(path, "".join(line + "\n" for line in lines).encode(), len(lines))


def _contents(session: Session, scope: Scope) -> list[Content]:
    rows = session.scalars(
        select(Content)
        .where(
            Content.user_id.in_(scope.accounts),
            Content.created_at >= scope.start,
            Content.created_at <= scope.end,
        )
        .order_by(Content.created_at, Content.id)
    ).all()
    return [c for c in rows if scope.covers(c.user_id, c.created_at)]


def account_records(session: Session, scope: Scope) -> list[File]:
    """What the platform told prescreen about each account: its uploads' metadata."""
    accounts: dict[str, dict[str, Any]] = {}
    for content in _contents(session, scope):
        assert content.user_id is not None
        record = accounts.setdefault(
            content.user_id,
            {"user_id": content.user_id, "uploads": 0, "first_seen": None, "metadata": []},
        )
        record["uploads"] += 1
        record["first_seen"] = record["first_seen"] or _iso(content.created_at)
        record["last_seen"] = _iso(content.created_at)
        if (
            content.meta
            and content.meta not in record["metadata"]
            and len(record["metadata"]) < 1000
        ):
            record["metadata"].append(content.meta)
    return [_ndjson("account.ndjson", [accounts[a] for a in sorted(accounts)])]


def decision_records(session: Session, scope: Scope) -> list[File]:
    rows = session.execute(
        select(Decision, Content)
        .join(Content, Decision.content_pk == Content.id)
        .where(
            Content.user_id.in_(scope.accounts),
            Decision.created_at >= scope.start,
            Decision.created_at <= scope.end,
        )
        .order_by(Decision.created_at, Decision.id)
    ).all()
    return [
        _ndjson(
            "decisions.ndjson",
            (
                {
                    "decision_id": d.id,
                    "content_id": c.content_id,
                    "user_id": c.user_id,
                    "content_type": c.kind,
                    "decision": d.outcome,
                    "reasons": d.reasons,
                    "automated": d.automated,
                    "policy_version": d.policy_version,
                    "created_at": _iso(d.created_at),
                }
                for d, c in rows
                if scope.covers(c.user_id, d.created_at)
            ),
        )
    ]


def review_records(session: Session, scope: Scope) -> list[File]:
    from prescreen.review.models import Appeal, ReviewCase, ReviewDecision

    cases = [
        case
        for case in session.scalars(
            select(ReviewCase)
            .where(
                ReviewCase.user_id.in_(scope.accounts),
                ReviewCase.created_at >= scope.start,
                ReviewCase.created_at <= scope.end,
            )
            .order_by(ReviewCase.created_at, ReviewCase.id)
        )
        if scope.covers(case.user_id, case.created_at)
    ]
    records = []
    for case in cases:
        content_ids = {
            c.id: c.content_id
            for c in session.scalars(
                select(Content).where(Content.id.in_([i.content_pk for i in case.items]))
            )
        }
        decisions = session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.case_id == case.id)
            .order_by(ReviewDecision.created_at)
        )
        records.append(
            {
                "case_id": case.id,
                "user_id": case.user_id,
                "kind": case.kind,
                "status": case.status,
                "labels": case.labels,
                "created_at": _iso(case.created_at),
                "decided_at": _iso(case.decided_at),
                "outcome": case.outcome,
                "items": [
                    {
                        "content_id": content_ids.get(item.content_pk),
                        "source": item.source,
                        "report_category": item.report_category,
                        "created_at": _iso(item.created_at),
                    }
                    for item in case.items
                ],
                "decisions": [
                    {
                        "verdict": d.verdict,
                        "label": d.label,
                        "reason": d.reason,
                        "reviewer_role": d.reviewer_role,
                        "created_at": _iso(d.created_at),
                        "reversed_at": _iso(d.reversed_at),
                    }
                    for d in decisions
                ],
            }
        )
    appeals = [
        {
            "appeal_id": a.id,
            "user_id": a.user_id,
            "reason": a.reason,
            "status": a.status,
            "outcome": a.outcome,
            "created_at": _iso(a.created_at),
            "decided_at": _iso(a.decided_at),
        }
        for a in session.scalars(
            select(Appeal)
            .where(
                Appeal.user_id.in_(scope.accounts),
                Appeal.created_at >= scope.start,
                Appeal.created_at <= scope.end,
            )
            .order_by(Appeal.created_at)
        )
        if scope.covers(a.user_id, a.created_at)
    ]
    return [_ndjson("review_cases.ndjson", records), _ndjson("appeals.ndjson", appeals)]


def content_records(session: Session, scope: Scope) -> list[File]:
    """Content the account published (signals, metadata, and bytes while still held for
    review) and end-to-end messages it sent that a participant reported."""
    from prescreen.franking.models import E2EReportMessage
    from prescreen.review.models import ReviewMedia

    contents = _contents(session, scope)
    media = {
        m.content_pk: m
        for m in session.scalars(
            select(ReviewMedia).where(ReviewMedia.content_pk.in_([c.id for c in contents]))
        )
    }
    files: list[File] = []
    records = []
    for content in contents:
        record = {
            "content_id": content.content_id,
            "user_id": content.user_id,
            "content_type": content.kind,
            "signals": content.signals,
            "metadata": content.meta,
            "created_at": _iso(content.created_at),
            "file": None,
        }
        if content.id in media:
            path = f"content/{content.id}"
            files.append(File(path, media[content.id].data, 1))
            record["file"] = {"path": path, "media_type": media[content.id].media_type}
        records.append(record)
    messages = [
        {
            "report_id": m.report_id,
            "message_id": m.message_id,
            "sender_id": m.sender_id,
            "conversation_id": m.conversation_id,
            "sent_at": _iso(m.server_ts),
            "content_type": m.content_type,
            "content": m.content,
            "attachments": m.attachments,
        }
        for m in session.scalars(
            select(E2EReportMessage)
            .where(
                E2EReportMessage.sender_id.in_(scope.accounts),
                E2EReportMessage.server_ts >= scope.start,
                E2EReportMessage.server_ts <= scope.end,
            )
            .order_by(E2EReportMessage.server_ts, E2EReportMessage.id)
        )
        if scope.covers(m.sender_id, m.server_ts)
    ]
    return [
        _ndjson("content.ndjson", records),
        _ndjson("reported_messages.ndjson", messages),
        *files,
    ]


COLLECTORS: dict[str, Callable[[Session, Scope], list[File]]] = {
    "account": account_records,
    "decisions": decision_records,
    "review_cases": review_records,
    "content": content_records,
}


def collect(session: Session, scope: Scope) -> list[File]:
    return [
        f
        for category in CATEGORIES
        if category in scope.categories
        for f in COLLECTORS[category](session, scope)
    ]


def build_bundle(
    files: list[File], manifest: dict[str, Any], key: Ed25519PrivateKey
) -> tuple[bytes, bytes]:
    """The zip and the exact manifest bytes it carries (signed)."""
    from prescreen.audit.keys import public_key_bytes

    public = public_key_bytes(key)
    manifest = {
        **manifest,
        "format": FORMAT,
        "signing_key": {
            "algorithm": "Ed25519",
            "key_id": key_id(public),
            "public_key": base64.b64encode(public).decode(),
        },
        "not_held": NOT_HELD,
        "files": [
            {
                "path": f.path,
                "sha256": hashlib.sha256(f.data).hexdigest(),
                "bytes": len(f.data),
                "records": f.records,
            }
            for f in files
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False).encode()
    signature = base64.b64encode(key.sign(manifest_bytes)) + b"\n"
    stamp = datetime.fromisoformat(manifest["produced_at"]).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [
            (README, README_TEXT.encode()),
            (MANIFEST, manifest_bytes),
            (SIGNATURE, signature),
            *((f.path, f.data) for f in files),
        ]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)
    return buffer.getvalue(), manifest_bytes


def verify_bundle(data: bytes, public_key: bytes | None = None) -> tuple[dict[str, Any], list[str]]:
    """Check a production offline: the manifest's signature, and every file's digest."""
    problems: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        if MANIFEST not in names or SIGNATURE not in names:
            return {}, ["the archive has no manifest.json or manifest.sig"]
        manifest_bytes = archive.read(MANIFEST)
        manifest = json.loads(manifest_bytes)
        key = public_key or base64.b64decode(manifest["signing_key"]["public_key"])
        if public_key is None:
            problems_note = "the public key was taken from the manifest itself; pin it"
        else:
            problems_note = ""
        signature = base64.b64decode(archive.read(SIGNATURE).strip())
        if not verify_signature(key, signature, manifest_bytes):
            problems.append("manifest.sig is not a valid signature of manifest.json by this key")
        listed = {f["path"]: f for f in manifest.get("files", [])}
        for path, entry in listed.items():
            if path not in names:
                problems.append(f"{path} is listed in the manifest but missing")
            elif hashlib.sha256(archive.read(path)).hexdigest() != entry["sha256"]:
                problems.append(f"{path} does not match its SHA-256 in the manifest")
        for extra in sorted(names - set(listed) - {MANIFEST, SIGNATURE, README}):
            problems.append(f"{extra} is in the archive but not in the manifest")
    if problems_note:
        manifest = {**manifest, "_warning": problems_note}
    return manifest, problems
