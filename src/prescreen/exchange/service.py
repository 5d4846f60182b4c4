"""Peers and opinions: configure who to follow and how far to trust them, record opinions on
entries (published in the bank's feed when the bank is shared), report rejected pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from prescreen.audit.service import record as audit_record
from prescreen.banks import service as banks
from prescreen.banks.models import Bank, BankKind
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.exchange import keys
from prescreen.exchange.feed import Publisher, entry_uid, publish_pending
from prescreen.exchange.feedformat import decode_public_key, key_id_of
from prescreen.exchange.models import (
    EntryProvenance,
    Opinion,
    OpinionKind,
    OpinionPolicy,
    Peer,
    PeerKey,
    PullCursor,
    Rejection,
    Trust,
)

PEER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PEER_FIELDS = ("base_url", "api_key", "trust", "follows", "label_map", "opinion_policy", "enabled")


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("base_url is an http(s) URL, e.g. https://prescreen.example.org")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("base_url has no query, fragment or credentials")
    return url.rstrip("/")


def _check_follows(follows: Any) -> list[dict[str, str]]:
    if not isinstance(follows, list):
        raise InvalidInput('"follows" is a list of {"remote": bank, "local": bank}')
    checked = []
    for item in follows:
        if not isinstance(item, dict) or set(item) - {"remote", "local"} or "remote" not in item:
            raise InvalidInput('"follows" is a list of {"remote": bank, "local": bank}')
        remote, local = str(item["remote"]), str(item.get("local") or item["remote"])
        for name in (remote, local):
            if not banks.BANK_NAME.match(name):
                raise InvalidInput(f"not a bank name: {name[:140]!r}")
        checked.append({"remote": remote, "local": local})
    if len({f["remote"] for f in checked}) != len(checked):
        raise InvalidInput("each remote bank is followed once")
    return checked


def _check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in fields.items() if v is not None}
    if "base_url" in fields:
        fields["base_url"] = _check_base_url(str(fields["base_url"]))
    if "trust" in fields:
        fields["trust"] = _enum(Trust, fields["trust"], "trust")
    if "opinion_policy" in fields:
        fields["opinion_policy"] = _enum(OpinionPolicy, fields["opinion_policy"], "opinion_policy")
    if "follows" in fields:
        fields["follows"] = _check_follows(fields["follows"])
    if "label_map" in fields:
        label_map = fields["label_map"]
        if not isinstance(label_map, dict):
            raise InvalidInput('"label_map" maps a peer\'s label to a local label')
        fields["label_map"] = dict(
            zip(
                banks.validate_labels(label_map.keys()),
                banks.validate_labels(label_map.values()),
                strict=False,
            )
        )
    return fields


def _enum(kind: type, value: Any, name: str) -> str:
    try:
        return kind(value).value
    except ValueError as exc:
        raise InvalidInput(f"{name} is one of {[k.value for k in kind]}") from exc


def _set_keys(session: Session, peer: Peer, public_keys: list[str]) -> None:
    """Replace the peer's keys with these (the keys learnt from its rotations go too)."""
    rows = []
    for public in public_keys:
        try:
            decode_public_key(public)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        rows.append(PeerKey(peer_id=peer.id, key_id=key_id_of(public), public_key=public.strip()))
    session.execute(delete(PeerKey).where(PeerKey.peer_id == peer.id))
    session.add_all({row.key_id: row for row in rows}.values())


def _ensure_local_banks(session: Session, peer: Peer, actor: str) -> None:
    for follow in peer.follows:
        if session.scalar(select(Bank.id).where(Bank.name == follow["local"])) is None:
            bank = banks.create_bank(
                session,
                follow["local"],
                actor=actor,
                kind=BankKind.block.value,
                description=f"followed from peer {peer.name}, bank {follow['remote']}",
            )
            bank.source = f"peer:{peer.name}"


def create_peer(
    session: Session, name: str, public_keys: list[str], actor: str, **fields: Any
) -> Peer:
    if not PEER_NAME.match(name):
        raise InvalidInput("peer names are lower-case letters, digits and _ . - (up to 64)")
    if session.scalar(select(Peer.id).where(Peer.name == name)) is not None:
        raise Conflict(f"peer {name!r} already exists")
    if not public_keys:
        raise InvalidInput("a peer needs at least one public key (its GET /v1/exchange/identity)")
    checked = _check_fields(fields)
    if "base_url" not in checked:
        raise InvalidInput("a peer needs a base_url")
    peer = Peer(name=name, **checked)
    session.add(peer)
    session.flush()
    _set_keys(session, peer, public_keys)
    _ensure_local_banks(session, peer, actor)
    audit_record(session, actor, "exchange.peer.create", f"peer:{name}", _audit_view(checked))
    return peer


def _audit_view(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k == "api_key" else v) for k, v in fields.items()}


def get_peer(session: Session, name: str) -> Peer:
    peer = session.scalar(select(Peer).where(Peer.name == name))
    if peer is None:
        raise NotFound(f"no peer named {name!r}", peer=name)
    return peer


def list_peers(session: Session) -> list[Peer]:
    return list(session.scalars(select(Peer).order_by(Peer.name)))


def update_peer(
    session: Session, name: str, actor: str, public_keys: list[str] | None = None, **fields: Any
) -> Peer:
    """Change a peer; the next pull is due at once and earlier failures are forgiven."""
    peer = get_peer(session, name)
    checked = _check_fields(fields)
    for key, value in checked.items():
        setattr(peer, key, value)
    if public_keys is not None:
        if not public_keys:
            raise InvalidInput("a peer needs at least one public key")
        _set_keys(session, peer, public_keys)
    if "follows" in checked:
        followed = {f["remote"] for f in peer.follows}
        session.execute(
            delete(PullCursor).where(
                PullCursor.peer_id == peer.id, PullCursor.remote_bank.not_in(followed)
            )
        )
        _ensure_local_banks(session, peer, actor)
    peer.failures, peer.next_pull_at = 0, utcnow()
    session.flush()
    details = _audit_view(checked) | ({"public_keys": len(public_keys)} if public_keys else {})
    audit_record(session, actor, "exchange.peer.update", f"peer:{name}", details)
    return peer


def delete_peer(session: Session, name: str, actor: str) -> None:
    """Stop following a peer; the entries already copied stay (delete their banks to drop them)."""
    peer = get_peer(session, name)
    session.delete(peer)
    session.flush()
    audit_record(session, actor, "exchange.peer.delete", f"peer:{name}", {})


def peer_keys(session: Session, peer: Peer) -> dict[str, str]:
    rows = session.scalars(select(PeerKey).where(PeerKey.peer_id == peer.id))
    return {row.key_id: row.public_key for row in rows}


def peer_to_dict(session: Session, peer: Peer) -> dict[str, Any]:
    cursors = session.scalars(select(PullCursor).where(PullCursor.peer_id == peer.id))
    key_rows = session.scalars(
        select(PeerKey).where(PeerKey.peer_id == peer.id).order_by(PeerKey.id)
    )
    return {
        "name": peer.name,
        "base_url": peer.base_url,
        "has_api_key": bool(peer.api_key),
        "trust": peer.trust,
        "follows": peer.follows,
        "label_map": peer.label_map,
        "opinion_policy": peer.opinion_policy,
        "enabled": peer.enabled,
        "keys": [{"key_id": k.key_id, "source": k.source} for k in key_rows],
        "cursors": {c.remote_bank: c.seq for c in cursors},
        "failures": peer.failures,
        "next_pull_at": peer.next_pull_at.isoformat(),
        "last_pull_at": peer.last_pull_at.isoformat() if peer.last_pull_at else None,
        "last_error": peer.last_error,
    }


def rejections(session: Session, peer: Peer, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Rejection)
        .where(Rejection.peer_id == peer.id)
        .order_by(Rejection.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "bank": r.remote_bank,
            "reason": r.reason,
            "detail": r.detail,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


def identity(session: Session, settings: Settings) -> dict[str, Any]:
    key_id, _key = keys.current_key(session, settings)
    return {
        "instance": keys.instance_id(session, settings),
        "current_key": key_id,
        "keys": keys.published_keys(session),
    }


# --- opinions ------------------------------------------------------------------------------------


def give_opinion(
    session: Session,
    settings: Settings,
    bank_name: str,
    entry_id: int,
    opinion: str,
    actor: str,
    note: str = "",
) -> dict[str, Any]:
    """Record a verdict on an entry (local or a peer's copy); published when the bank is shared."""
    kind = _enum(OpinionKind, opinion, "opinion")
    bank = banks.get_bank(session, bank_name)
    entry = banks.get_entry(session, bank, entry_id)
    instance = keys.instance_id(session, settings)
    uid = entry_uid(session, instance, entry.id, bank.name)
    session.add(Opinion(entry_uid=uid, opinion=kind, by=f"local:{actor}"[:300], note=note))
    published = False
    if bank.shared:
        publish_pending(session, settings)
        Publisher(session, settings).append(
            bank.name, "opinion", {"entry": uid, "opinion": kind, "note": note[:2000]}
        )
        published = True
    session.flush()
    audit_record(
        session,
        actor,
        "exchange.opinion",
        f"bank_entry:{entry.id}",
        {"opinion": kind, "entry_uid": uid, "published": published},
    )
    return {"entry": entry.id, "entry_uid": uid, "opinion": kind, "published": published}


def opinions_for(session: Session, uids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in session.scalars(
        select(Opinion).where(Opinion.entry_uid.in_(uids)).order_by(Opinion.id)
    ):
        found.setdefault(row.entry_uid, []).append(
            {"opinion": row.opinion, "by": row.by, "at": row.created_at.isoformat()}
        )
    return found


def quarantine(session: Session, entry_id: int, reason: str, actor: str) -> None:
    """Hold every match on this entry for review until a lead releases it."""
    provenance = session.get(EntryProvenance, entry_id)
    if provenance is None:
        provenance = EntryProvenance(entry_id=entry_id, origin={})
        session.add(provenance)
    if provenance.quarantined_at is None:
        provenance.quarantined_at, provenance.quarantine_reason = utcnow(), reason[:2000]
        session.flush()
        audit_record(
            session,
            actor,
            "exchange.entry.quarantine",
            f"bank_entry:{entry_id}",
            {"reason": reason},
        )


def release(session: Session, bank_name: str, entry_id: int, actor: str) -> dict[str, Any]:
    bank = banks.get_bank(session, bank_name)
    entry = banks.get_entry(session, bank, entry_id)
    provenance = session.get(EntryProvenance, entry.id)
    if provenance is None or provenance.quarantined_at is None:
        raise Conflict(f"entry {entry_id} is not quarantined")
    provenance.quarantined_at = provenance.quarantine_reason = None
    session.flush()
    audit_record(session, actor, "exchange.entry.release", f"bank_entry:{entry.id}", {})
    return {"entry": entry.id, "quarantined": False}


def backoff_delay(failures: int, interval: float, cap: float) -> timedelta:
    return timedelta(seconds=min(cap, max(1.0, interval) * 2 ** max(0, failures - 1)))
