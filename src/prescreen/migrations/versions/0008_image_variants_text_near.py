"""image variants and text near-duplicates: per-bank options, variant hashes of bank items

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 13:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        for column in ("match_dihedral", "match_trimmed", "match_crops"):
            batch_op.add_column(
                sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.true())
            )
        batch_op.add_column(
            sa.Column("text_near_threshold", sa.Float(), nullable=False, server_default="0.8")
        )
    with op.batch_alter_table("entry_signals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("variant", sa.String(length=32), nullable=False, server_default="original")
        )


def downgrade() -> None:
    with op.batch_alter_table("entry_signals", schema=None) as batch_op:
        batch_op.drop_column("variant")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        for column in ("text_near_threshold", "match_crops", "match_trimmed", "match_dihedral"):
            batch_op.drop_column(column)
