"""Platform franking keys (encrypted at rest) and verified end-to-end reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class FrankingKey(Base):
    """One version of the platform key. `material` is the HMAC key and the Ed25519 seed,
    encrypted under the master key (nonce || AES-GCM-SIV ciphertext, bound to `key_id`).
    A key stamps until `rotated_at`, and verifies reports until `retired_at`."""

    __tablename__ = "franking_keys"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    material: Mapped[bytes] = mapped_column(LargeBinary)
    master_fingerprint: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class E2EReport(Base):
    """A participant's report of end-to-end-encrypted messages. `dedupe_key` is a hash of the
    reporter and the reported messages' stamps: a replay finds the same report."""

    __tablename__ = "e2e_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    reporter_id: Mapped[str] = mapped_column(String(256), index=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    submitted_by: Mapped[str] = mapped_column(String(160), default="")
    owner_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    messages: Mapped[list[E2EReportMessage]] = relationship(
        back_populates="report", order_by="E2EReportMessage.position", cascade="all"
    )
    links: Mapped[list[E2EReportDecision]] = relationship(
        back_populates="report", order_by="E2EReportDecision.id", cascade="all"
    )


class E2EReportMessage(Base):
    """One verified message of a report: the opening as the reporter revealed it (so the report
    can be re-verified later) and the platform-attested facts."""

    __tablename__ = "e2e_report_messages"
    __table_args__ = (UniqueConstraint("report_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("e2e_reports.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    stamp: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(256), index=True)
    conversation_id: Mapped[str] = mapped_column(String(256), index=True)
    server_ts: Mapped[datetime] = mapped_column(UTCDateTime)
    client_ts_ms: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    franking_key: Mapped[bytes] = mapped_column(LargeBinary)
    context: Mapped[bytes] = mapped_column(LargeBinary)

    report: Mapped[E2EReport] = relationship(back_populates="messages")


class E2EReportDecision(Base):
    """Which screening decision each reported part (text, attachment i) got; `decision_id` is
    null when the part could not be screened (`error` says why)."""

    __tablename__ = "e2e_report_decisions"
    __table_args__ = (UniqueConstraint("report_id", "position", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("e2e_reports.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    part: Mapped[str] = mapped_column(String(32))
    decision_id: Mapped[str | None] = mapped_column(
        ForeignKey("decisions.id"), index=True, nullable=True
    )
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)

    report: Mapped[E2EReport] = relationship(back_populates="links")
