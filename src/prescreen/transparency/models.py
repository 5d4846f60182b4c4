"""Transparency tables: CSAM report bundles kept under a legal hold, and the administrative or
judicial review proceedings against removal orders that the TCO report counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class CsamReport(Base):
    """A CyberTipline report bundle for one confirmed CSAM content: the fields NCMEC needs, a
    digest of them, and the preservation hold that keeps them (and the content's records) for a
    year (18 U.S.C. 2258A(h) as amended by the REPORT Act)."""

    __tablename__ = "csam_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content_pk: Mapped[str] = mapped_column(ForeignKey("contents.id"), unique=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"))
    hold_id: Mapped[str] = mapped_column(ForeignKey("legal_holds.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)  # ready | submitted
    bundle: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    preserve_until: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    submitted_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    ncmec_report_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TcoProceeding(Base):
    """An administrative or judicial review the provider brought against a removal order (TCO
    Art. 9), its outcome, and whether the content had to be reinstated."""

    __tablename__ = "tco_proceedings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("legal_removal_orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # administrative | judicial
    brought_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="pending")  # pending|upheld|annulled
    reinstated: Mapped[bool] = mapped_column(Boolean, default=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
