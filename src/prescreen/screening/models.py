"""What platforms submitted (signals, not bytes) and the decision made on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class Content(Base):
    __tablename__ = "contents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content_id: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(256), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    signals: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    submitted_by: Mapped[str] = mapped_column(String(64), default="")
    owner_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    decisions: Mapped[list[Decision]] = relationship(back_populates="content")


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(8), index=True)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    matches: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    automated: Mapped[bool] = mapped_column(default=True)
    policy_version: Mapped[str] = mapped_column(String(32), default="1")
    statement_of_reasons_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    content: Mapped[Content] = relationship(back_populates="decisions")
