"""franking: platform keys (encrypted at rest) and verified end-to-end reports

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "e2e_reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("reporter_id", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_by", sa.String(length=160), nullable=False),
        sa.Column("owner_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_e2e_reports")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_e2e_reports_dedupe_key")),
    )
    with op.batch_alter_table("e2e_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_e2e_reports_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_e2e_reports_reporter_id"), ["reporter_id"], unique=False
        )

    op.create_table(
        "franking_keys",
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("material", sa.LargeBinary(), nullable=False),
        sa.Column("master_fingerprint", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_franking_keys")),
    )
    op.create_table(
        "e2e_report_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("sender_id", sa.String(length=256), nullable=False),
        sa.Column("conversation_id", sa.String(length=256), nullable=False),
        sa.Column("server_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "attachments",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("franking_key", sa.LargeBinary(), nullable=False),
        sa.Column("context", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["e2e_reports.id"],
            name=op.f("fk_e2e_report_messages_report_id_e2e_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_e2e_report_messages")),
        sa.UniqueConstraint("report_id", "position", name=op.f("uq_e2e_report_messages_report_id")),
    )
    with op.batch_alter_table("e2e_report_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_e2e_report_messages_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_e2e_report_messages_report_id"), ["report_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_e2e_report_messages_sender_id"), ["sender_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_e2e_report_messages_stamp"), ["stamp"], unique=False)

    op.create_table(
        "e2e_report_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("part", sa.String(length=32), nullable=False),
        sa.Column("decision_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_e2e_report_decisions_decision_id_decisions"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["e2e_reports.id"],
            name=op.f("fk_e2e_report_decisions_report_id_e2e_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_e2e_report_decisions")),
        sa.UniqueConstraint(
            "report_id", "position", "part", name=op.f("uq_e2e_report_decisions_report_id")
        ),
    )
    with op.batch_alter_table("e2e_report_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_e2e_report_decisions_decision_id"), ["decision_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_e2e_report_decisions_report_id"), ["report_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("e2e_report_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_e2e_report_decisions_report_id"))
        batch_op.drop_index(batch_op.f("ix_e2e_report_decisions_decision_id"))

    op.drop_table("e2e_report_decisions")
    with op.batch_alter_table("e2e_report_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_e2e_report_messages_stamp"))
        batch_op.drop_index(batch_op.f("ix_e2e_report_messages_sender_id"))
        batch_op.drop_index(batch_op.f("ix_e2e_report_messages_report_id"))
        batch_op.drop_index(batch_op.f("ix_e2e_report_messages_conversation_id"))

    op.drop_table("e2e_report_messages")
    op.drop_table("franking_keys")
    with op.batch_alter_table("e2e_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_e2e_reports_reporter_id"))
        batch_op.drop_index(batch_op.f("ix_e2e_reports_created_at"))

    op.drop_table("e2e_reports")
