"""The audit log: append an entry in the caller's transaction, sign tree heads, prove inclusion
and consistency, export everything an auditor needs to check the log offline.

Other domains call `record(session, actor, action, target, details)` for every privileged
action, in the same transaction as the action itself: the entry exists exactly when the action
committed. Appends are serialised by the one-row state table, so leaf indexes are gapless.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from prescreen.audit import merkle
from prescreen.audit.keys import public_key_bytes, public_key_pem, signing_key
from prescreen.audit.logformat import (
    EXPORT_FORMAT,
    b64,
    canonical_json,
    entry_leaf_hash,
    format_time,
    key_id,
)
from prescreen.audit.models import STATE_ROW, AuditEntry, AuditLogState, AuditTreeHead
from prescreen.audit.periodic import insert_ignoring_conflict, job_settings, periodic, rearm
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.jobs.service import JobContext, enqueue, job_handler

log = logging.getLogger(__name__)
SIGN_JOB = "audit_sign"
WITNESS_JOB = "audit_witness_push"
SYSTEM_ACTOR = "system"
_PENDING = "audit_entries_pending"  # Session.info key: entries appended at commit
ENTRIES = Counter("prescreen_audit_entries_total", "Audit log entries appended", ["action"])
HEADS = Counter("prescreen_audit_tree_heads_total", "Signed tree heads")


def _clean(value: str, limit: int) -> str:
    """A string any database stores: no NUL, valid UTF-8, at most `limit` characters."""
    value = str(value).replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")[:limit]


def _frontier(text: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in text.split(",") if h]


def _ensure_state(session: Session) -> None:
    """Create the state row (a fresh or truncated database), from the entries if any."""
    hashes = [
        bytes.fromhex(h)
        for h in session.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx))
    ]
    frontier: list[bytes] = []
    for size, leaf in enumerate(hashes):
        frontier = merkle.frontier_append(frontier, size, leaf)
    insert_ignoring_conflict(
        session,
        AuditLogState,
        {"id": STATE_ROW, "size": len(hashes), "frontier": ",".join(h.hex() for h in frontier)},
        "id",
    )


def _reserve(session: Session) -> tuple[int, list[bytes]]:
    """Take the append lock and one leaf index: an UPDATE first, so that SQLite takes its write
    lock before reading and PostgreSQL locks the row until this transaction ends."""
    bump = (
        update(AuditLogState)
        .where(AuditLogState.id == STATE_ROW)
        .values(size=AuditLogState.size + 1)
        .returning(AuditLogState.size, AuditLogState.frontier)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(bump).one_or_none()
    if row is None:
        _ensure_state(session)
        row = session.execute(bump).one()
    return row[0] - 1, _frontier(row[1])


def record(
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry as the caller's transaction commits; it rolls back with the action.

    Why at commit: appending takes the log's one lock (its state row) until the transaction
    ends. Taken in mid-transaction, a transaction holding it could wait for a row that another
    holds while that one waits to append: on PostgreSQL a deadlock, and one of them failed with
    a 503 (a moderator's decision, say, while a background job worked on the same rows). Taken
    last, the lock is held only while the entries are written, never while waiting for a row."""
    body = json.loads(canonical_json(details or {}))
    if not isinstance(body, dict):
        raise TypeError("audit details are a JSON object")
    entry = {
        "actor": _clean(actor, 256),
        "action": _clean(action, 64),
        "target": _clean(target, 256),
        "details": body,
    }
    session.info.setdefault(_PENDING, []).append(entry)


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the entries wait for the real commit
        return
    for pending in session.info.pop(_PENDING, ()):
        _append(session, pending)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back or closed without a commit
        session.info.pop(_PENDING, None)


def _append(session: Session, pending: dict[str, Any]) -> None:
    index, frontier = _reserve(session)
    fields = {"index": index, "time": format_time(utcnow()), **pending}
    leaf = entry_leaf_hash(fields)
    frontier = merkle.frontier_append(frontier, index, leaf)
    session.execute(
        update(AuditLogState)
        .where(AuditLogState.id == STATE_ROW)
        .values(frontier=",".join(h.hex() for h in frontier))
        .execution_options(synchronize_session=False)
    )
    session.add(
        AuditEntry(
            idx=index,
            logged_at=fields["time"],
            actor=fields["actor"],
            action=fields["action"],
            target=fields["target"],
            details=canonical_json(fields["details"]),
            leaf_hash=leaf.hex(),
        )
    )
    session.flush()
    ENTRIES.labels(fields["action"]).inc()


# --- reading ------------------------------------------------------------------------------------


def entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "index": entry.idx,
        "time": entry.logged_at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": json.loads(entry.details),
    }


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {**entry_fields(entry), "leaf_hash": entry.leaf_hash, "signature": entry.signature}


def head_to_dict(head: AuditTreeHead) -> dict[str, Any]:
    return {
        "tree_size": head.tree_size,
        "timestamp": head.timestamp_ms,
        "root_hash": head.root_hash,
        "signature": head.signature,
        "key_id": head.key_id,
        "signed_at": format_time(head.created_at),
    }


def state(session: Session) -> tuple[int, list[bytes]]:
    row = session.execute(
        select(AuditLogState.size, AuditLogState.frontier).where(AuditLogState.id == STATE_ROW)
    ).one_or_none()
    return (0, []) if row is None else (row[0], _frontier(row[1]))


def list_entries(
    session: Session,
    after: int = -1,
    limit: int = 100,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.idx > after)
    if action:
        query = query.where(
            AuditEntry.action.startswith(action.rstrip("*"))
            if action.endswith("*")
            else AuditEntry.action == action
        )
    if target:
        query = query.where(AuditEntry.target == target)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    return list(session.scalars(query.order_by(AuditEntry.idx).limit(limit)))


def get_entry(session: Session, index: int) -> AuditEntry:
    entry = session.get(AuditEntry, index)
    if entry is None:
        raise NotFound(f"no audit entry {index}")
    return entry


def latest_head(session: Session) -> AuditTreeHead | None:
    return session.scalar(
        select(AuditTreeHead).order_by(AuditTreeHead.tree_size.desc(), AuditTreeHead.id.desc())
    )


def list_heads(session: Session, after_size: int = -1, limit: int = 100) -> list[AuditTreeHead]:
    return list(
        session.scalars(
            select(AuditTreeHead)
            .where(AuditTreeHead.tree_size > after_size)
            .order_by(AuditTreeHead.tree_size, AuditTreeHead.id)
            .limit(limit)
        )
    )


def head_for_size(session: Session, size: int) -> AuditTreeHead | None:
    return session.scalar(
        select(AuditTreeHead)
        .where(AuditTreeHead.tree_size == size)
        .order_by(AuditTreeHead.id.desc())
        .limit(1)
    )


# --- signing ------------------------------------------------------------------------------------


def _sign_entries(session: Session, settings: Settings, size: int) -> int:
    """Sign every entry a head is about to cover, after checking it still matches its leaf hash
    (an entry changed in the database before its first signature is left unsigned, and the
    verifier names it)."""
    key, signed, after = signing_key(settings), 0, -1
    while True:
        batch = list(
            session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.idx > after, AuditEntry.idx < size, AuditEntry.signature.is_(None)
                )
                .order_by(AuditEntry.idx)
                .limit(500)
            )
        )
        if not batch:
            return signed
        for entry in batch:
            leaf = entry_leaf_hash(entry_fields(entry))
            if leaf.hex() != entry.leaf_hash:
                log.error("audit entry does not match its leaf hash", extra={"index": entry.idx})
                continue
            entry.signature = b64(key.sign(merkle.entry_signature_message(leaf)))
            signed += 1
        after = batch[-1].idx
        session.flush()


def sign_tree_head(
    session: Session, settings: Settings, force: bool = False
) -> AuditTreeHead | None:
    """Sign a head of the log as it is now: always when forced, otherwise when the log grew or
    the latest head is older than PRESCREEN_AUDIT_HEAD_MAX_AGE_SECONDS."""
    size, frontier = state(session)
    _sign_entries(session, settings, size)
    latest = latest_head(session)
    if not force:
        if latest is None and size == 0:
            return None
        if latest is not None and latest.tree_size == size:
            age = utcnow() - latest.created_at
            if age < timedelta(seconds=settings.audit_head_max_age_seconds):
                return None
    key = signing_key(settings)
    root_hash = merkle.frontier_root(frontier)
    timestamp = int(time.time() * 1000)
    if latest is not None and timestamp <= latest.timestamp_ms:
        timestamp = latest.timestamp_ms + 1
    head = AuditTreeHead(
        tree_size=size,
        timestamp_ms=timestamp,
        root_hash=root_hash.hex(),
        signature=b64(key.sign(merkle.tree_head_message(timestamp, size, root_hash))),
        key_id=key_id(public_key_bytes(key)),
        created_at=utcnow(),
    )
    session.add(head)
    session.flush()
    HEADS.inc()
    for url in settings.audit_witness_urls:
        enqueue(session, WITNESS_JOB, {"url": url, "head": head_to_dict(head)}, max_attempts=8)
    return head


def public_key_info(settings: Settings) -> dict[str, Any]:
    key = signing_key(settings)
    raw = public_key_bytes(key)
    return {
        "algorithm": "Ed25519",
        "public_key": b64(raw),
        "key_id": key_id(raw),
        "pem": public_key_pem(key),
    }


# --- proofs -------------------------------------------------------------------------------------


def leaf_hashes(session: Session, size: int) -> list[bytes]:
    rows = session.execute(
        select(AuditEntry.idx, AuditEntry.leaf_hash)
        .where(AuditEntry.idx < size)
        .order_by(AuditEntry.idx)
    ).all()
    for position, row in enumerate(rows):
        if row[0] != position:
            raise Conflict(f"the audit log is damaged: entry {position} is missing", index=position)
    if len(rows) != size:
        raise Conflict(f"the audit log is damaged: entry {len(rows)} is missing", index=len(rows))
    return [bytes.fromhex(row[1]) for row in rows]


def _default_size(session: Session) -> int:
    head = latest_head(session)
    return head.tree_size if head is not None else state(session)[0]


def inclusion(session: Session, index: int, tree_size: int | None = None) -> dict[str, Any]:
    size = _default_size(session) if tree_size is None else tree_size
    current = state(session)[0]
    if not 0 <= index < size or size > current:
        raise InvalidInput(
            f"entry {index} is not in a tree of size {size} (the log has {current} entries)"
        )
    leaves = leaf_hashes(session, size)
    head = head_for_size(session, size)
    return {
        "index": index,
        "tree_size": size,
        "leaf_hash": leaves[index].hex(),
        "audit_path": [h.hex() for h in merkle.inclusion_proof(leaves, index, size)],
        "tree_head": head_to_dict(head) if head is not None else None,
    }


def consistency(session: Session, first: int, second: int | None = None) -> dict[str, Any]:
    second = _default_size(session) if second is None else second
    current = state(session)[0]
    if not 0 <= first <= second or second > current:
        raise InvalidInput(
            f"no consistency proof from size {first} to {second} (the log has {current} entries)"
        )
    leaves = leaf_hashes(session, second)
    heads = (head_for_size(session, first), head_for_size(session, second))
    return {
        "first": first,
        "second": second,
        "consistency": [h.hex() for h in merkle.consistency_proof(leaves, first, second)],
        "first_tree_head": head_to_dict(heads[0]) if heads[0] is not None else None,
        "second_tree_head": head_to_dict(heads[1]) if heads[1] is not None else None,
    }


# --- export -------------------------------------------------------------------------------------


def export_lines(session: Session, settings: Settings) -> Iterator[str]:
    """NDJSON: a header with the public key, every entry in order, every signed tree head."""
    size = state(session)[0]
    count = session.scalar(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.idx < size)
    )
    info = public_key_info(settings)
    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "public_key": info["public_key"],
        "key_id": info["key_id"],
        "exported_at": format_time(utcnow()),
        "tree_size": size,
        "entries": count,
    }
    yield json.dumps(header, sort_keys=True) + "\n"
    after = -1
    while True:
        batch = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.idx > after, AuditEntry.idx < size)
                .order_by(AuditEntry.idx)
                .limit(1000)
            )
        )
        if not batch:
            break
        for entry in batch:
            yield json.dumps({"type": "entry", **entry_to_dict(entry)}, sort_keys=True) + "\n"
        after = batch[-1].idx
    heads = session.scalars(
        select(AuditTreeHead)
        .where(AuditTreeHead.tree_size <= size)
        .order_by(AuditTreeHead.tree_size, AuditTreeHead.id)
    )
    for head in heads:
        yield json.dumps({"type": "tree_head", **head_to_dict(head)}, sort_keys=True) + "\n"


# --- jobs ---------------------------------------------------------------------------------------

periodic(SIGN_JOB, lambda settings: settings.audit_sign_interval_seconds)


@job_handler(SIGN_JOB)
def sign_job(ctx: JobContext) -> dict[str, Any]:
    head = sign_tree_head(ctx.session, job_settings(ctx))
    rearm(ctx)
    return {"tree_size": head.tree_size if head else None}


@job_handler(WITNESS_JOB)
def push_to_witness(ctx: JobContext) -> dict[str, Any]:
    """POST a signed tree head to a witness; the head is self-authenticating (Ed25519)."""
    import httpx

    from prescreen.webhooks.service import check_url

    settings = job_settings(ctx)
    url = check_url(ctx.job.payload["url"], settings.webhook_allow_private)
    body = json.dumps({"event": "tree_head", "head": ctx.job.payload["head"]}, sort_keys=True)
    response = httpx.post(
        url,
        content=body,
        headers={"Content-Type": "application/json", "User-Agent": "prescreen-audit/1"},
        timeout=10.0,
    )
    if response.status_code >= 300:
        raise RuntimeError(f"witness answered {response.status_code}")
    return {"status_code": response.status_code}
