"""API keys with roles. Keys are shown once and stored only as a SHA-256 of their secret part
(they are 256-bit random, so a fast hash is enough; passwords would need a slow one)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from prescreen.core.db import Base, Database, UTCDateTime, utcnow
from prescreen.core.errors import Forbidden, InvalidInput, Unauthorized

KEY_PREFIX = "psk"


class Role(StrEnum):
    integrator = "integrator"
    moderator = "moderator"
    lead = "lead"
    legal = "legal"
    auditor = "auditor"
    admin = "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass(frozen=True)
class Actor:
    """Who is calling: an API key's public id, name and role."""

    key_id: str
    name: str
    role: Role

    @property
    def label(self) -> str:
        return f"apikey:{self.key_id}" + (f" ({self.name})" if self.name else "")


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session, role: Role | str, name: str = "", actor: str = "cli"
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {role!r}", roles=[r.value for r in Role]) from exc
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = ApiKey(key_id=key_id, secret_hash=_hash_secret(secret), name=name, role=role.value)
    session.add(row)
    session.flush()
    from prescreen.audit.service import record

    record(session, actor, "apikey.create", f"apikey:{key_id}", {"role": role.value, "name": name})
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


def authenticate(session: Session, presented: str | None) -> Actor:
    """Resolve a presented key to its actor; failures do not say which part was wrong."""
    if not presented:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    prefix, _, rest = presented.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        raise Unauthorized("the API key is malformed")
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is not valid")
    if not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
        raise Unauthorized("the API key is not valid")
    return Actor(key_id=row.key_id, name=row.name, role=Role(row.role))


class VerifiedKeys:
    """API keys verified in the last `ttl` seconds, so the hot path does not read the database
    on every request. Only successes are kept, under the SHA-256 of the presented key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actors: dict[str, tuple[Actor, float]] = {}

    def get(self, presented: str, ttl: float) -> Actor | None:
        with self._lock:
            found = self._actors.get(_hash_secret(presented))
        if found is None or time.monotonic() - found[1] > ttl:
            return None
        return found[0]

    def put(self, presented: str, actor: Actor) -> None:
        with self._lock:
            if len(self._actors) > 10_000:
                self._actors.clear()
            self._actors[_hash_secret(presented)] = (actor, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._actors.clear()


VERIFIED_KEYS = VerifiedKeys()


def authenticate_cached(db: Database, presented: str | None, ttl: float) -> Actor:
    """`authenticate`, reusing a verification made in the last `ttl` seconds."""
    if presented and ttl > 0 and (actor := VERIFIED_KEYS.get(presented, ttl)) is not None:
        return actor
    with db.session(readonly=True) as session:
        actor = authenticate(session, presented)
    if ttl > 0:
        VERIFIED_KEYS.put(presented or "", actor)
    return actor


def check_role(actor: Actor, allowed: frozenset[Role]) -> None:
    """Admins may do everything; others only what the route allows."""
    if actor.role is Role.admin or actor.role in allowed:
        return
    raise Forbidden(
        f"role {actor.role.value!r} may not do this",
        required=sorted(r.value for r in allowed | {Role.admin}),
    )


def revoke_api_key(session: Session, key_id: str, actor: str = "cli") -> bool:
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None:
        return False
    row.revoked_at = utcnow()
    VERIFIED_KEYS.clear()
    from prescreen.audit.service import record

    record(session, actor, "apikey.revoke", f"apikey:{key_id}", {"role": row.role})
    return True
