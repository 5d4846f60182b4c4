"""Legal process records and what follows from them: approvals, productions, preservation holds,
user notices and removal orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class LegalRequest(Base):
    """One legal process as received: who issued it, under which law, for which accounts, data
    categories and time range; its validation result, status and emergency review."""

    __tablename__ = "legal_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    authority: Mapped[str] = mapped_column(String(256))
    contact: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    jurisdiction: Mapped[str] = mapped_column(String(16))
    legal_basis: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(String(256))
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    accounts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    data_categories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    range_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    range_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    non_disclosure: Mapped[bool] = mapped_column(Boolean, default=False)
    non_disclosure_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    emergency: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    document_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64))
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decision_note: Mapped[str] = mapped_column(Text, default="")
    review_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    review_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    review_overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    approvals: Mapped[list[LegalApproval]] = relationship(
        back_populates="request", order_by="LegalApproval.id", cascade="all"
    )


class LegalApproval(Base):
    """One person's approval of a request, bound to the request's digest (its exact scope)."""

    __tablename__ = "legal_approvals"
    __table_args__ = (UniqueConstraint("request_id", "actor_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("legal_requests.id"), index=True)
    actor_id: Mapped[str] = mapped_column(String(160))
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[LegalRequest] = relationship(back_populates="approvals")


class LegalProduction(Base):
    """One export made for a request: its scope, and the digests of its signed manifest and zip
    (the zip itself is handed over, not kept)."""

    __tablename__ = "legal_productions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("legal_requests.id"), index=True)
    produced_by: Mapped[str] = mapped_column(String(256))
    produced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scope: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    zip_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)


class PreservationHold(Base):
    """Records of these accounts (within the time range, if one is set) and these contents are
    kept from retention sweeps and deletion until the hold expires or is released."""

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("legal_requests.id"), index=True, nullable=True
    )
    accounts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    content_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    range_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    range_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(256), nullable=True)


class UserNotice(Base):
    """The notice owed to an affected user, and when it may be sent (withheld while a
    non-disclosure order or an emergency applies)."""

    __tablename__ = "legal_notices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("legal_requests.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(256), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # scheduled|withheld|due|sent
    reason: Mapped[str] = mapped_column(String(64), default="")
    send_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RemovalOrder(Base):
    """A removal order (EU TCO Regulation Art. 3): received_at starts the one-hour clock."""

    __tablename__ = "legal_removal_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("legal_requests.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    statement: Mapped[str] = mapped_column(Text, default="")
    withhold_from_provider: Mapped[bool] = mapped_column(Boolean, default=False)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    executed_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    unable_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
