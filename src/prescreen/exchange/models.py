"""Exchange tables: this instance's identity keys and published feed, its peers, what it pulled
from them (cursors, provenance, opinions), what it rejected, and match counts for flood checks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from prescreen.core.db import Base, JSONType, UTCDateTime, utcnow


class Trust(StrEnum):
    act = "act"  # the peer's entries match and act like local ones
    review = "review"  # matches on the peer's entries are held for review


class OpinionKind(StrEnum):
    true_positive = "true_positive"
    false_positive = "false_positive"
    disputed = "disputed"


class OpinionPolicy(StrEnum):
    disable = "disable"  # a peer's false_positive disables the local copy
    review = "review"  # ... or quarantines it: its matches are held for review
    ignore = "ignore"  # ... or is only recorded


class IdentityKey(Base):
    """An Ed25519 key this instance signs its feeds with. The private half lives in DATA_DIR;
    a rotated-in key is endorsed by the key before it, so peers can follow the rotation."""

    __tablename__ = "exchange_identity_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    endorsed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    endorsement: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FeedItem(Base):
    """One signed change in a shared bank's append-only feed, chained to the item before."""

    __tablename__ = "exchange_feed_items"
    __table_args__ = (UniqueConstraint("bank", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bank: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    item_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PublishedSignal(Base):
    """Which published entry a signal belongs to, so its removal can be published."""

    __tablename__ = "exchange_published_signals"

    signal_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(Integer, index=True)
    bank: Mapped[str] = mapped_column(String(128))
    entry_uid: Mapped[str] = mapped_column(String(300))


class ExchangeState(Base):
    """Small named values: this instance's id, the publisher's change-feed position."""

    __tablename__ = "exchange_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Peer(Base):
    __tablename__ = "exchange_peers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    api_key: Mapped[str] = mapped_column(Text, default="")
    trust: Mapped[str] = mapped_column(String(16), default=Trust.review.value)
    follows: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    label_map: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    opinion_policy: Mapped[str] = mapped_column(String(16), default=OpinionPolicy.disable.value)
    enabled: Mapped[bool] = mapped_column(default=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_pull_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PeerKey(Base):
    """A public key that verifies a peer's feed: configured, or learnt from a signed rotation."""

    __tablename__ = "exchange_peer_keys"
    __table_args__ = (UniqueConstraint("peer_id", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("exchange_peers.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="configured")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PullCursor(Base):
    """How far a followed feed has been applied: the last sequence number and item hash."""

    __tablename__ = "exchange_pull_cursors"
    __table_args__ = (UniqueConstraint("peer_id", "remote_bank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("exchange_peers.id", ondelete="CASCADE"))
    remote_bank: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EntryProvenance(Base):
    """Exchange facts about a local entry: the peer entry it copies, or its quarantine."""

    __tablename__ = "exchange_entry_provenance"
    __table_args__ = (Index("ix_exchange_entry_provenance_origin", "peer_id", "origin_uid"),)

    entry_id: Mapped[int] = mapped_column(
        ForeignKey("bank_entries.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    peer_id: Mapped[int | None] = mapped_column(
        ForeignKey("exchange_peers.id", ondelete="SET NULL"), nullable=True
    )
    peer_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    origin_uid: Mapped[str | None] = mapped_column(String(300), nullable=True)
    remote_bank: Mapped[str | None] = mapped_column(String(128), nullable=True)
    feed_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    origin: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    quarantined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    quarantine_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    hma_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class Opinion(Base):
    """A verdict on an entry (by its global uid), from a local reviewer or a peer."""

    __tablename__ = "exchange_opinions"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_uid: Mapped[str] = mapped_column(String(300), index=True)
    opinion: Mapped[str] = mapped_column(String(32))
    by: Mapped[str] = mapped_column(String(300))
    peer_id: Mapped[int | None] = mapped_column(
        ForeignKey("exchange_peers.id", ondelete="SET NULL"), nullable=True
    )
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rejection(Base):
    """A feed page refused: why, and what was expected. Nothing of it was applied."""

    __tablename__ = "exchange_rejections"

    id: Mapped[int] = mapped_column(primary_key=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("exchange_peers.id", ondelete="CASCADE"))
    remote_bank: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MatchCount(Base):
    """Matches per entry per hour, for telling a flood from the usual rate."""

    __tablename__ = "exchange_match_counts"

    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)
