"""Banks, their entries, the entries' signals, and the change feed indexes follow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    event,
    insert,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class BankKind(StrEnum):
    block = "block"
    hold = "hold"
    allow = "allow"


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default=BankKind.block.value)
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    pdq_threshold: Mapped[int] = mapped_column(Integer, default=31)
    # A video matches when at least this share of the upload's frames match the bank video's
    # frames, and this share of the bank video's frames match the upload's (Meta's vPDQ rule).
    vpdq_query_match_pct: Mapped[float] = mapped_column(Float, default=80.0)
    vpdq_bank_match_pct: Mapped[float] = mapped_column(Float, default=0.0)
    # Evasion resistance for images (see docs/matching.md): search the 8 rotations/mirrors of
    # an upload, its border-trimmed hash, and the centred crops stored with each bank image.
    match_dihedral: Mapped[bool] = mapped_column(Boolean, default=True)
    match_trimmed: Mapped[bool] = mapped_column(Boolean, default=True)
    match_crops: Mapped[bool] = mapped_column(Boolean, default=True)
    match_overlays: Mapped[bool] = mapped_column(Boolean, default=True)
    # Near-duplicate texts match at this estimated Jaccard similarity of their shingles or more.
    text_near_threshold: Mapped[float] = mapped_column(Float, default=0.8)
    # A logo bank: files added to it are reference logos, found in uploads at this confidence
    # (0..1) or more; None for every other bank (see prescreen.signals.logo).
    logo_threshold: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(256), default="local")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    entries: Mapped[list[BankEntry]] = relationship(
        back_populates="bank", cascade="all, delete-orphan", passive_deletes=True
    )


class BankEntry(Base):
    """One item in a bank: its signals, labels, state and provenance."""

    __tablename__ = "bank_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    added_by: Mapped[str] = mapped_column(String(256), default="")
    source: Mapped[str] = mapped_column(String(256), default="local")
    note: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    bank: Mapped[Bank] = relationship(back_populates="entries")
    signals: Mapped[list[EntrySignal]] = relationship(
        back_populates="entry", cascade="all, delete-orphan", passive_deletes=True
    )

    def is_active(self, now: datetime) -> bool:
        """Enabled, or disabled only until a time that has passed."""
        if self.enabled:
            return True
        return self.disabled_until is not None and self.disabled_until <= now


class EntrySignal(Base):
    __tablename__ = "entry_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("bank_entries.id", ondelete="CASCADE"), index=True
    )
    signal_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    # "original", or how this extra hash was made from the bank item ("trimmed", "crop90", ...).
    variant: Mapped[str] = mapped_column(String(32), default="original")

    entry: Mapped[BankEntry] = relationship(back_populates="signals")


class SignalChange(Base):
    """Append-only feed of index changes; every process applies it to stay current."""

    __tablename__ = "signal_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    signal_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))  # "add" | "remove"
    signal_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# A change-feed row with this op says "bank <signal_id>'s settings changed": every process's
# matcher then re-reads bank settings, which it otherwise caches (they are read on every lookup).
BANK_CHANGED = "bank"


class BankView:
    """A read-only copy of a bank's columns, safe to share between threads and sessions."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", MappingProxyType(values))

    @classmethod
    def of(cls, bank: Bank) -> BankView:
        return cls({column.key: getattr(bank, column.key) for column in Bank.__table__.columns})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("BankView is read-only")


@event.listens_for(Session, "after_flush")
def _announce_bank_changes(session: Session, _flush_context: Any) -> None:
    """Record every created, updated or deleted bank in the change feed, whichever code path
    changed it, in the same transaction."""
    dirty = [o for o in session.dirty if session.is_modified(o, include_collections=False)]
    changed = [obj for obj in (*session.new, *dirty, *session.deleted) if isinstance(obj, Bank)]
    if changed:
        session.connection().execute(
            insert(SignalChange),
            [
                {"signal_id": bank.id, "op": BANK_CHANGED, "signal_type": "", "value": ""}
                for bank in changed
            ],
        )
