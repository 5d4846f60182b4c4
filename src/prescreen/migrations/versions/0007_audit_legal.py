"""audit log (Merkle tree, signed tree heads) and legal requests

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("logged_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_entries")),
    )
    op.create_index(op.f("ix_audit_entries_action"), "audit_entries", ["action"], unique=False)
    op.create_index(op.f("ix_audit_entries_actor"), "audit_entries", ["actor"], unique=False)
    op.create_index(
        op.f("ix_audit_entries_logged_at"), "audit_entries", ["logged_at"], unique=False
    )
    op.create_index(op.f("ix_audit_entries_target"), "audit_entries", ["target"], unique=False)
    op.create_table(
        "audit_log_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log_state")),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_tree_heads")),
    )
    op.create_index(
        op.f("ix_audit_tree_heads_tree_size"), "audit_tree_heads", ["tree_size"], unique=False
    )
    op.create_table(
        "legal_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("authority", sa.String(length=256), nullable=False),
        sa.Column(
            "contact",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=256), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "accounts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "data_categories",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("non_disclosure", sa.Boolean(), nullable=False),
        sa.Column("non_disclosure_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "emergency",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("document_sha256", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column(
            "problems",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("review_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=256), nullable=True),
        sa.Column("review_outcome", sa.String(length=16), nullable=True),
        sa.Column("review_overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_requests")),
    )
    op.create_index(
        op.f("ix_legal_requests_received_at"), "legal_requests", ["received_at"], unique=False
    )
    op.create_index(op.f("ix_legal_requests_status"), "legal_requests", ["status"], unique=False)
    op.create_index(op.f("ix_legal_requests_type"), "legal_requests", ["type"], unique=False)
    op.create_table(
        "legal_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("actor_id", sa.String(length=160), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["legal_requests.id"],
            name=op.f("fk_legal_approvals_request_id_legal_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_approvals")),
        sa.UniqueConstraint("request_id", "actor_id", name=op.f("uq_legal_approvals_request_id")),
    )
    op.create_index(
        op.f("ix_legal_approvals_request_id"), "legal_approvals", ["request_id"], unique=False
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column(
            "accounts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "content_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["legal_requests.id"],
            name=op.f("fk_legal_holds_request_id_legal_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_expires_at"), "legal_holds", ["expires_at"], unique=False)
    op.create_index(op.f("ix_legal_holds_request_id"), "legal_holds", ["request_id"], unique=False)
    op.create_table(
        "legal_notices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("send_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["legal_requests.id"],
            name=op.f("fk_legal_notices_request_id_legal_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_notices")),
    )
    op.create_index(
        op.f("ix_legal_notices_request_id"), "legal_notices", ["request_id"], unique=False
    )
    op.create_index(op.f("ix_legal_notices_status"), "legal_notices", ["status"], unique=False)
    op.create_index(op.f("ix_legal_notices_user_id"), "legal_notices", ["user_id"], unique=False)
    op.create_table(
        "legal_productions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("produced_by", sa.String(length=256), nullable=False),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "scope",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "files",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("zip_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["legal_requests.id"],
            name=op.f("fk_legal_productions_request_id_legal_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_productions")),
    )
    op.create_index(
        op.f("ix_legal_productions_request_id"), "legal_productions", ["request_id"], unique=False
    )
    op.create_table(
        "legal_removal_orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("withhold_from_provider", sa.Boolean(), nullable=False),
        sa.Column(
            "items",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_by", sa.String(length=256), nullable=True),
        sa.Column("unable_reason", sa.Text(), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["legal_requests.id"],
            name=op.f("fk_legal_removal_orders_request_id_legal_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_removal_orders")),
        sa.UniqueConstraint("request_id", name=op.f("uq_legal_removal_orders_request_id")),
    )
    op.create_index(
        op.f("ix_legal_removal_orders_received_at"),
        "legal_removal_orders",
        ["received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_legal_removal_orders_status"), "legal_removal_orders", ["status"], unique=False
    )

    op.bulk_insert(
        sa.table(
            "audit_log_state",
            sa.column("id", sa.Integer()),
            sa.column("size", sa.BigInteger()),
            sa.column("frontier", sa.Text()),
        ),
        [{"id": 1, "size": 0, "frontier": ""}],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_legal_removal_orders_status"), table_name="legal_removal_orders")
    op.drop_index(op.f("ix_legal_removal_orders_received_at"), table_name="legal_removal_orders")
    op.drop_table("legal_removal_orders")
    op.drop_index(op.f("ix_legal_productions_request_id"), table_name="legal_productions")
    op.drop_table("legal_productions")
    op.drop_index(op.f("ix_legal_notices_user_id"), table_name="legal_notices")
    op.drop_index(op.f("ix_legal_notices_status"), table_name="legal_notices")
    op.drop_index(op.f("ix_legal_notices_request_id"), table_name="legal_notices")
    op.drop_table("legal_notices")
    op.drop_index(op.f("ix_legal_holds_request_id"), table_name="legal_holds")
    op.drop_index(op.f("ix_legal_holds_expires_at"), table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_index(op.f("ix_legal_approvals_request_id"), table_name="legal_approvals")
    op.drop_table("legal_approvals")
    op.drop_index(op.f("ix_legal_requests_type"), table_name="legal_requests")
    op.drop_index(op.f("ix_legal_requests_status"), table_name="legal_requests")
    op.drop_index(op.f("ix_legal_requests_received_at"), table_name="legal_requests")
    op.drop_table("legal_requests")
    op.drop_index(op.f("ix_audit_tree_heads_tree_size"), table_name="audit_tree_heads")
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_log_state")
    op.drop_index(op.f("ix_audit_entries_target"), table_name="audit_entries")
    op.drop_index(op.f("ix_audit_entries_logged_at"), table_name="audit_entries")
    op.drop_index(op.f("ix_audit_entries_actor"), table_name="audit_entries")
    op.drop_index(op.f("ix_audit_entries_action"), table_name="audit_entries")
    op.drop_table("audit_entries")
