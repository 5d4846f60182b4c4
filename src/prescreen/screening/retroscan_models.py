"""Retro-scans: runs, what each run found, and how far the bank change feed has been scanned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class RetroscanRun(Base):
    """One retro-scan: which new bank signals were matched against stored contents, and
    with what result."""

    __tablename__ = "retroscan_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))  # "feed" (bank gained entries) | "bank"
    bank: Mapped[str | None] = mapped_column(String(128), nullable=True)
    first_change: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_change: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entries: Mapped[int] = mapped_column(Integer, default=0)
    signals: Mapped[int] = mapped_column(Integer, default=0)
    contents_scanned: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(256), default="system")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RetroscanHit(Base):
    """A previously allowed content that a retro-scan held or took down."""

    __tablename__ = "retroscan_hits"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("retroscan_runs.id"), index=True)
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), index=True)
    content_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    previous_decision_id: Mapped[str] = mapped_column(String(36))
    decision_id: Mapped[str] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(8))
    entries: Mapped[list[int]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RetroscanCursor(Base):
    """How far a reader of the bank change feed has got (see prescreen.matching.feed)."""

    __tablename__ = "retroscan_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    gaps: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
