"""This instance's Ed25519 identity keys. Private halves are files in DATA_DIR/exchange_keys/
(mode 0600, never logged); the database holds the public halves and which key is current.
Rotation makes a new key endorsed by the current one; old public keys stay published, so
items they signed still verify."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.audit.periodic import insert_ignoring_conflict
from prescreen.audit.service import record as audit_record
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict
from prescreen.exchange.feedformat import (
    ENDORSE_CONTEXT,
    endorsement_fields,
    key_id_of,
    raw_public_key,
    sign,
)
from prescreen.exchange.models import ExchangeState, IdentityKey

KEY_DIR = "exchange_keys"
INSTANCE_ID = "instance_id"


def _key_path(settings: Settings, key_id: str) -> Path:
    return Path(settings.data_dir) / KEY_DIR / key_id


def _write_private(settings: Settings, key: Ed25519PrivateKey, key_id: str) -> None:
    path = _key_path(settings, key_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = key.private_bytes_raw()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(seed).decode() + "\n")


def _read_private(settings: Settings, key_id: str) -> Ed25519PrivateKey:
    path = _key_path(settings, key_id)
    if not path.is_file():
        raise Conflict(
            f"the private half of exchange key {key_id} is not in {path.parent}; copy it from "
            "the machine that made it, or rotate to a new key"
        )
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))


def _new_key(settings: Settings) -> tuple[Ed25519PrivateKey, str, str]:
    key = Ed25519PrivateKey.from_private_bytes(secrets.token_bytes(32))
    public = base64.b64encode(raw_public_key(key)).decode()
    key_id = key_id_of(public)
    _write_private(settings, key, key_id)
    return key, key_id, public


def current_key(session: Session, settings: Settings) -> tuple[str, Ed25519PrivateKey]:
    """The key new items are signed with, made on first use."""
    row = session.scalar(
        select(IdentityKey)
        .where(IdentityKey.retired_at.is_(None))
        .order_by(IdentityKey.id.desc())
        .limit(1)
    )
    if row is None:
        _key, key_id, public = _new_key(settings)
        row = IdentityKey(key_id=key_id, public_key=public)
        session.add(row)
        session.flush()
        insert_ignoring_conflict(
            session, ExchangeState, {"name": INSTANCE_ID, "value": key_id}, "name"
        )
    return row.key_id, _read_private(settings, row.key_id)


def instance_id(session: Session, settings: Settings) -> str:
    """This instance's stable id: the id of its first identity key."""
    current_key(session, settings)
    return session.scalars(
        select(ExchangeState.value).where(ExchangeState.name == INSTANCE_ID)
    ).one()


def rotate(session: Session, settings: Settings, actor: str) -> IdentityKey:
    """A new current key, endorsed by the one it replaces (which is retired, not deleted)."""
    old_id, old_key = current_key(session, settings)
    _key, key_id, public = _new_key(settings)
    old = session.scalars(select(IdentityKey).where(IdentityKey.key_id == old_id)).one()
    old.retired_at = utcnow()
    row = IdentityKey(
        key_id=key_id,
        public_key=public,
        endorsed_by=old_id,
        endorsement=sign(old_key, ENDORSE_CONTEXT, endorsement_fields(key_id, public)),
    )
    session.add(row)
    session.flush()
    audit_record(session, actor, "exchange.key.rotate", f"exchange_key:{key_id}", {"old": old_id})
    return row


def published_keys(session: Session) -> list[dict[str, str | None]]:
    """Every identity key, oldest first, with its endorsement: what a follower needs."""
    return [
        {
            "key_id": k.key_id,
            "public_key": k.public_key,
            "endorsed_by": k.endorsed_by,
            "endorsement": k.endorsement,
            "created_at": k.created_at.isoformat(),
            "retired_at": k.retired_at.isoformat() if k.retired_at else None,
        }
        for k in session.scalars(select(IdentityKey).order_by(IdentityKey.id))
    ]
