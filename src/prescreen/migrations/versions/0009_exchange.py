"""exchange: identity keys, signed feeds, peers, cursors, provenance, opinions, rejections

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "exchange_identity_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("endorsed_by", sa.String(32), nullable=True),
        sa.Column("endorsement", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key_id", name="uq_exchange_identity_keys_key_id"),
    )
    op.create_table(
        "exchange_feed_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bank", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("body", _JSON, nullable=False),
        sa.Column("item_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("bank", "seq", name="uq_exchange_feed_items_bank"),
    )
    op.create_table(
        "exchange_published_signals",
        sa.Column("signal_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("bank", sa.String(128), nullable=False),
        sa.Column("entry_uid", sa.String(300), nullable=False),
    )
    op.create_index(
        "ix_exchange_published_signals_entry_id", "exchange_published_signals", ["entry_id"]
    )
    op.create_table(
        "exchange_state",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "exchange_peers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("api_key", sa.Text(), nullable=False, server_default=""),
        sa.Column("trust", sa.String(16), nullable=False, server_default="review"),
        sa.Column("follows", _JSON, nullable=False),
        sa.Column("label_map", _JSON, nullable=False),
        sa.Column("opinion_policy", sa.String(16), nullable=False, server_default="disable"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "next_pull_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()
        ),
        sa.Column("last_pull_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("name", name="uq_exchange_peers_name"),
    )
    op.create_table(
        "exchange_peer_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "peer_id",
            sa.Integer(),
            sa.ForeignKey(
                "exchange_peers.id",
                ondelete="CASCADE",
                name="fk_exchange_peer_keys_peer_id_exchange_peers",
            ),
            nullable=False,
        ),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False, server_default="configured"),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("peer_id", "key_id", name="uq_exchange_peer_keys_peer_id"),
    )
    op.create_table(
        "exchange_pull_cursors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "peer_id",
            sa.Integer(),
            sa.ForeignKey(
                "exchange_peers.id",
                ondelete="CASCADE",
                name="fk_exchange_pull_cursors_peer_id_exchange_peers",
            ),
            nullable=False,
        ),
        sa.Column("remote_bank", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("peer_id", "remote_bank", name="uq_exchange_pull_cursors_peer_id"),
    )
    op.create_table(
        "exchange_entry_provenance",
        sa.Column(
            "entry_id",
            sa.Integer(),
            sa.ForeignKey(
                "bank_entries.id",
                ondelete="CASCADE",
                name="fk_exchange_entry_provenance_entry_id_bank_entries",
            ),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column(
            "peer_id",
            sa.Integer(),
            sa.ForeignKey(
                "exchange_peers.id",
                ondelete="SET NULL",
                name="fk_exchange_entry_provenance_peer_id_exchange_peers",
            ),
            nullable=True,
        ),
        sa.Column("peer_name", sa.String(64), nullable=True),
        sa.Column("origin_uid", sa.String(300), nullable=True),
        sa.Column("remote_bank", sa.String(128), nullable=True),
        sa.Column("feed_seq", sa.Integer(), nullable=True),
        sa.Column("origin", _JSON, nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quarantine_reason", sa.Text(), nullable=True),
        sa.Column(
            "hma_metadata",
            _JSON,
            nullable=True,
        ),
    )
    op.create_index(
        "ix_exchange_entry_provenance_origin",
        "exchange_entry_provenance",
        ["peer_id", "origin_uid"],
    )
    op.create_table(
        "exchange_opinions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_uid", sa.String(300), nullable=False),
        sa.Column("opinion", sa.String(32), nullable=False),
        sa.Column("by", sa.String(300), nullable=False),
        sa.Column(
            "peer_id",
            sa.Integer(),
            sa.ForeignKey(
                "exchange_peers.id",
                ondelete="SET NULL",
                name="fk_exchange_opinions_peer_id_exchange_peers",
            ),
            nullable=True,
        ),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index("ix_exchange_opinions_entry_uid", "exchange_opinions", ["entry_uid"])
    op.create_table(
        "exchange_rejections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "peer_id",
            sa.Integer(),
            sa.ForeignKey(
                "exchange_peers.id",
                ondelete="CASCADE",
                name="fk_exchange_rejections_peer_id_exchange_peers",
            ),
            nullable=False,
        ),
        sa.Column("remote_bank", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_table(
        "exchange_match_counts",
        sa.Column("entry_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in (
        "exchange_match_counts",
        "exchange_rejections",
        "exchange_opinions",
        "exchange_entry_provenance",
        "exchange_pull_cursors",
        "exchange_peer_keys",
        "exchange_peers",
        "exchange_state",
        "exchange_published_signals",
        "exchange_feed_items",
        "exchange_identity_keys",
    ):
        op.drop_table(table)
