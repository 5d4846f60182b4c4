"""Review tables: cases and their items, held media (temporary), human decisions, appeals,
statements of reasons, strikes, and the web UI's users and sessions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class ReviewCase(Base):
    """One unit of human review: one or more contents (same content, or the same uploader held
    for the same reason), a priority with its SLA, a claim, and the outcome."""

    __tablename__ = "review_cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # held | report | appeal
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | escalated | decided
    priority: Mapped[int] = mapped_column(Integer, index=True)  # 0 critical .. 3 low
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    csam: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[str | None] = mapped_column(String(256), index=True, nullable=True)
    group_key: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    match_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalated_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    excluded_reviewer: Mapped[str | None] = mapped_column(String(160), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)

    items: Mapped[list[ReviewItem]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="ReviewItem.id"
    )


class ReviewItem(Base):
    """One content in a case, with why it is there (held, reported, appealed)."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[str] = mapped_column(
        ForeignKey("review_cases.id", ondelete="CASCADE"), index=True
    )
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), index=True)
    decision_pk: Mapped[str | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # held | report | appeal
    reporter: Mapped[str | None] = mapped_column(String(256), nullable=True)
    report_category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[ReviewCase] = relationship(back_populates="items")


class ReviewMedia(Base):
    """The bytes of a held, non-CSAM upload, kept only until its case is decided."""

    __tablename__ = "review_media"

    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewDecision(Base):
    """A human verdict on a case: violating, not_violating, escalate, or on an appeal upheld,
    reversed; who, when, why, and the bank entries it created."""

    __tablename__ = "review_decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("review_cases.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bank: Mapped[str | None] = mapped_column(String(128), nullable=True)
    bank_entries: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    share: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(160))
    reviewer_role: Mapped[str] = mapped_column(String(16))
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reversed_by_appeal: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Appeal(Base):
    """An uploader's appeal against a restrictive decision, decided by a different reviewer."""

    __tablename__ = "review_appeals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), index=True)
    screening_decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"))
    review_decision_id: Mapped[str | None] = mapped_column(
        ForeignKey("review_decisions.id"), nullable=True
    )
    case_id: Mapped[str] = mapped_column(ForeignKey("review_cases.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | decided
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # upheld | reversed
    first_reviewer: Mapped[str | None] = mapped_column(String(160), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    submitted_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StatementOfReasons(Base):
    """What the uploader is told about a restrictive human decision (EU DSA Art. 17 fields that
    review can fill; the transparency domain completes and exports them)."""

    __tablename__ = "statements_of_reasons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), index=True)
    decision_id: Mapped[str | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    review_decision_id: Mapped[str | None] = mapped_column(
        ForeignKey("review_decisions.id"), nullable=True
    )
    user_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decision_visibility: Mapped[list[str]] = mapped_column(JSONType, default=list)
    decision_ground: Mapped[str] = mapped_column(String(64))
    ground_explanation: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(80))
    category_specification: Mapped[list[str]] = mapped_column(JSONType, default=list)
    content_type: Mapped[list[str]] = mapped_column(JSONType, default=list)
    decision_facts: Mapped[str] = mapped_column(Text, default="")
    source_type: Mapped[str] = mapped_column(String(40))
    automated_detection: Mapped[bool] = mapped_column(Boolean)
    automated_decision: Mapped[str] = mapped_column(String(40))
    content_date: Mapped[date] = mapped_column(Date)
    application_date: Mapped[date] = mapped_column(Date)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Strike(Base):
    """A confirmed violation by an uploader; enough within the window hold their next uploads."""

    __tablename__ = "review_strikes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("review_cases.id"))
    review_decision_id: Mapped[str] = mapped_column(ForeignKey("review_decisions.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UiUser(Base):
    """A person who logs in to the web UI; the password is stored as a scrypt hash."""

    __tablename__ = "ui_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UiSession(Base):
    """A logged-in browser. The cookie holds a random token; only its keyed hash is stored."""

    __tablename__ = "ui_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ui_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
