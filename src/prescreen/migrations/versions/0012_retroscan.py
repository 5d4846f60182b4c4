"""retro-scans: runs, hits, and the change-feed position they have reached

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 15:30:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "retroscan_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("bank", sa.String(length=128), nullable=True),
        sa.Column("first_change", sa.Integer(), nullable=True),
        sa.Column("last_change", sa.Integer(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("signals", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("contents_scanned", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("hits", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("actor", sa.String(length=256), nullable=False, server_default="system"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retroscan_runs")),
    )
    op.create_table(
        "retroscan_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("content_pk", sa.String(length=36), nullable=False),
        sa.Column("content_id", sa.String(length=256), nullable=True),
        sa.Column("previous_decision_id", sa.String(length=36), nullable=False),
        sa.Column("decision_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("entries", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["retroscan_runs.id"],
            name=op.f("fk_retroscan_hits_run_id_retroscan_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["content_pk"], ["contents.id"],
            name=op.f("fk_retroscan_hits_content_pk_contents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retroscan_hits")),
    )  # fmt: skip
    with op.batch_alter_table("retroscan_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retroscan_hits_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_retroscan_hits_content_pk"), ["content_pk"], unique=False
        )
    cursors = op.create_table(
        "retroscan_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("gaps", JSON, nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retroscan_cursors")),
    )
    # Entries banked before this upgrade were matched when content was screened; retro-scans
    # start with the entries added from now on.
    position = op.get_bind().scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM signal_changes"))
    op.bulk_insert(
        cursors,
        [
            {
                "name": "feed",
                "position": int(position or 0),
                "gaps": [],
                "note": "set at upgrade",
                "updated_at": datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("retroscan_cursors")
    with op.batch_alter_table("retroscan_hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retroscan_hits_content_pk"))
        batch_op.drop_index(batch_op.f("ix_retroscan_hits_run_id"))
    op.drop_table("retroscan_hits")
    op.drop_table("retroscan_runs")
