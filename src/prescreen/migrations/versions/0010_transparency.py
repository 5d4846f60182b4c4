"""transparency: CSAM report bundles under a legal hold, TCO review proceedings

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "csam_reports",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("content_pk", sa.String(length=36), sa.ForeignKey("contents.id"), nullable=False),
        sa.Column(
            "decision_id", sa.String(length=36), sa.ForeignKey("decisions.id"), nullable=False
        ),
        sa.Column("hold_id", sa.String(length=36), sa.ForeignKey("legal_holds.id"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="ready"),
        sa.Column(
            "bundle",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False, server_default=""),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
        sa.Column("preserve_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_by", sa.String(length=256), nullable=True),
        sa.Column("ncmec_report_id", sa.String(length=64), nullable=True),
        sa.UniqueConstraint("content_pk", name="uq_csam_reports_content_pk"),
    )
    op.create_index("ix_csam_reports_status", "csam_reports", ["status"])
    op.create_index("ix_csam_reports_created_at", "csam_reports", ["created_at"])
    op.create_table(
        "tco_proceedings",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column(
            "order_id",
            sa.String(length=36),
            sa.ForeignKey("legal_removal_orders.id"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("brought_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False, server_default="pending"),
        sa.Column("reinstated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_by", sa.String(length=256), nullable=False, server_default=""),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )
    op.create_index("ix_tco_proceedings_order_id", "tco_proceedings", ["order_id"])
    op.create_index("ix_tco_proceedings_brought_at", "tco_proceedings", ["brought_at"])


def downgrade() -> None:
    op.drop_table("tco_proceedings")
    op.drop_table("csam_reports")
