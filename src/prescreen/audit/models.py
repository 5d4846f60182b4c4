"""Audit log tables: the entries (leaves), the signed tree heads, and the one-row log state that
serialises appends (its size and the frontier of perfect subtree roots)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from prescreen.core.db import Base, UTCDateTime, utcnow

STATE_ROW = 1


class AuditLogState(Base):
    """Locked by every append (an UPDATE first, so SQLite takes its write lock and PostgreSQL
    the row lock): leaf indexes are gapless and unique, and a rolled-back append leaves no gap."""

    __tablename__ = "audit_log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    frontier: Mapped[str] = mapped_column(Text, default="")  # hex subtree roots, largest first


class AuditEntry(Base):
    """One privileged action. The leaf is computed from these columns (see logformat)."""

    __tablename__ = "audit_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    logged_at: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(256), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256), index=True)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON object
    leaf_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(100), nullable=True)


class AuditTreeHead(Base):
    """A signed tree head (RFC 6962 TreeHeadSignature, Ed25519)."""

    __tablename__ = "audit_tree_heads"

    id: Mapped[int] = mapped_column(primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
