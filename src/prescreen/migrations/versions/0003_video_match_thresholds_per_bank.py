"""video match thresholds per bank

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:14:56.484224
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vpdq_query_match_pct", sa.Float(), nullable=False, server_default="80")
        )
        batch_op.add_column(
            sa.Column("vpdq_bank_match_pct", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("vpdq_bank_match_pct")
        batch_op.drop_column("vpdq_query_match_pct")
