"""What exchange adds to matching: every match on an exchanged entry carries its provenance
(peer, peer entry, opinions); matches on a `review`-trusted peer's entries or on quarantined
entries are held instead of blocked; a flood of matches on one entry quarantines it."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prescreen.core.db import utcnow
from prescreen.exchange.config import exchange_settings
from prescreen.exchange.models import EntryProvenance, ExchangeState, MatchCount, Peer, Trust
from prescreen.exchange.service import opinions_for, quarantine
from prescreen.matching.service import Match, match_annotator
from prescreen.screening.hooks import Screened, decision_listener

log = logging.getLogger(__name__)
HOLD_KEY = "exchange_hold"


def _instance(session: Session) -> str | None:
    return session.scalar(select(ExchangeState.value).where(ExchangeState.name == "instance_id"))


@match_annotator
def annotate(session: Session, matches: list[Match]) -> list[Match]:
    if not matches:
        return matches
    ids = [m.entry for m in matches]
    rows = {
        p.entry_id: p
        for p in session.scalars(select(EntryProvenance).where(EntryProvenance.entry_id.in_(ids)))
    }
    trusts = dict(session.execute(select(Peer.id, Peer.trust)).all()) if rows else {}
    instance = _instance(session)
    uids = {
        m.entry: (
            rows[m.entry].origin_uid if m.entry in rows and rows[m.entry].origin_uid else None
        )
        or (f"{instance}/{m.bank}/{m.entry}" if instance else None)
        for m in matches
    }
    opinions = opinions_for(session, [u for u in uids.values() if u]) if instance or rows else {}
    return [_annotated(m, rows.get(m.entry), trusts, uids[m.entry], opinions) for m in matches]


def _annotated(
    match: Match,
    provenance: EntryProvenance | None,
    trusts: dict[int, str],
    uid: str | None,
    opinions: dict[str, list[dict[str, Any]]],
) -> Match:
    extra: dict[str, Any] = {}
    said = opinions.get(uid or "", [])
    if provenance is not None and provenance.origin_uid:
        trust = trusts.get(provenance.peer_id or -1, Trust.review.value)
        extra["provenance"] = {
            "peer": provenance.peer_name,
            "peer_bank": provenance.remote_bank,
            "peer_entry": provenance.origin_uid,
            "feed_seq": provenance.feed_seq,
            "origin": provenance.origin,
            "trust": trust,
            "opinions": said,
        }
        if trust == Trust.review.value:
            extra[HOLD_KEY] = "peer_trust_review"
    elif said:
        extra["provenance"] = {"entry": uid, "opinions": said}
    if provenance is not None and provenance.quarantined_at is not None:
        extra[HOLD_KEY] = "quarantined"
        extra["quarantine"] = {
            "since": provenance.quarantined_at.isoformat(),
            "reason": provenance.quarantine_reason,
        }
    if not extra:
        return match
    return dataclasses.replace(match, detail={**match.detail, **extra})


@decision_listener
def count_matches(session: Session, screened: Screened) -> None:
    """Count matches per entry and hour; quarantine an entry whose hour is a flood."""
    entries = {m["entry"] for m in screened.decision.matches or [] if "entry" in m}
    if not entries:
        return
    settings = exchange_settings()
    hour = int(utcnow().timestamp() // 3600)
    for entry_id in sorted(entries):
        count = _increment(session, entry_id, hour)
        if count < settings.flood_min_matches:
            continue
        since = hour - settings.flood_history_hours
        past = session.scalar(
            select(func.coalesce(func.sum(MatchCount.count), 0)).where(
                MatchCount.entry_id == entry_id, MatchCount.hour >= since, MatchCount.hour < hour
            )
        )
        usual = (past or 0) / settings.flood_history_hours
        if count > settings.flood_factor * usual:
            reason = f"flood: {count} matches this hour, usually {usual:.2f} an hour"
            quarantine(session, entry_id, reason, "exchange")


def _increment(session: Session, entry_id: int, hour: int) -> int:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(MatchCount).values(entry_id=entry_id, hour=hour, count=1)
    statement = statement.on_conflict_do_update(
        index_elements=["entry_id", "hour"], set_={"count": MatchCount.count + 1}
    )
    session.execute(statement)
    return session.scalar(
        select(MatchCount.count).where(MatchCount.entry_id == entry_id, MatchCount.hour == hour)
    )
