"""Publishing: every shared bank has an append-only, signed feed of its changes.

The feed is derived from the banks' change feed (`signal_changes`), which every change to an
entry's signals goes through whoever made it (API, CLI, review, imports), so nothing is missed.
It is brought up to date before every page is served, under a lock, so sequence numbers are
gap-free. A bank that becomes shared first publishes every entry it already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from prescreen.audit.logformat import format_time
from prescreen.audit.periodic import insert_ignoring_conflict
from prescreen.banks.models import Bank, BankEntry, EntrySignal, SignalChange
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import NotFound
from prescreen.exchange import keys
from prescreen.exchange.feedformat import FEED_FORMAT, HEAD_CONTEXT, head_fields, sign, sign_item
from prescreen.exchange.models import EntryProvenance, ExchangeState, FeedItem, PublishedSignal

PUBLISH_CURSOR = "publish_cursor"
_BATCH = 5000


class Publisher:
    """Appends signed items to bank feeds within one transaction."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.key_id, self.key = keys.current_key(session, settings)
        self.instance = keys.instance_id(session, settings)
        self._last: dict[str, tuple[int, str]] = {}

    def append(self, bank: str, op: str, fields: dict[str, Any]) -> FeedItem:
        seq, prev = self._next(bank)
        body = {"bank": bank, "seq": seq, "prev": prev, "op": op, "time": format_time(utcnow())}
        signed = sign_item(self.key, self.key_id, {**body, **fields})
        item = FeedItem(
            bank=bank,
            seq=seq,
            op=op,
            body=signed["body"],
            item_hash=signed["hash"],
            key_id=self.key_id,
            signature=signed["signature"],
        )
        self.session.add(item)
        self._last[bank] = (seq, signed["hash"])
        return item

    def _next(self, bank: str) -> tuple[int, str]:
        """The next sequence number and the hash it chains to (cached for bulk publishing)."""
        if bank not in self._last:
            last = self.session.execute(
                select(FeedItem.seq, FeedItem.item_hash)
                .where(FeedItem.bank == bank)
                .order_by(FeedItem.seq.desc())
                .limit(1)
            ).first()
            self._last[bank] = (last.seq, last.item_hash) if last else (0, "")
        seq, item_hash = self._last[bank]
        return seq + 1, item_hash

    def publish_adds(self, entries: list[BankEntry], bank: str) -> None:
        """Append an add item per entry (one query for their provenance, none per entry)."""
        ids = [entry.id for entry in entries]
        provenance = {
            p.entry_id: p
            for p in self.session.scalars(
                select(EntryProvenance).where(EntryProvenance.entry_id.in_(ids))
            )
        }
        with self.session.no_autoflush:
            for entry in entries:
                self._publish_add(entry, bank, provenance.get(entry.id))
        self.session.flush()

    def _publish_add(self, entry: BankEntry, bank: str, provenance: EntryProvenance | None) -> None:
        uid = f"{self.instance}/{bank}/{entry.id}"
        origin: dict[str, Any] = {"instance": self.instance, "bank": bank, "entry": entry.id}
        if provenance is not None and provenance.origin_uid:
            uid = provenance.origin_uid
            origin = {**(provenance.origin or {}), "via": provenance.peer_name}
        self.append(
            bank,
            "add",
            {
                "entry": uid,
                "signals": {
                    s.signal_type: s.value for s in entry.signals if s.variant == "original"
                },
                "variants": _variants(entry),
                "labels": list(entry.labels or []),
                "content_type": entry.content_type,
                "provenance": {
                    "source": entry.source,
                    "created_at": entry.created_at.isoformat(),
                    "origin": origin,
                },
            },
        )
        self.session.add_all(
            PublishedSignal(signal_id=s.id, entry_id=entry.id, bank=bank, entry_uid=uid)
            for s in entry.signals
        )


def entry_uid(session: Session, instance: str, entry_id: int, bank: str) -> str:
    """An entry's id across instances: its origin's, for a copy of a peer's entry."""
    provenance = session.get(EntryProvenance, entry_id)
    if provenance is not None and provenance.origin_uid:
        return provenance.origin_uid
    return f"{instance}/{bank}/{entry_id}"


def _variants(entry: BankEntry) -> dict[str, dict[str, str]]:
    variants: dict[str, dict[str, str]] = {}
    for s in entry.signals:
        if s.variant != "original":
            variants.setdefault(s.signal_type, {})[s.variant] = s.value
    return variants


def _lock_cursor(session: Session) -> int:
    insert_ignoring_conflict(session, ExchangeState, {"name": PUBLISH_CURSOR, "value": "0"}, "name")
    query = select(ExchangeState).where(ExchangeState.name == PUBLISH_CURSOR)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return int(session.scalars(query).one().value)


def publish_pending(session: Session, settings: Settings) -> int:
    """Append what changed in shared banks since the last call; returns the items appended."""
    cursor = _lock_cursor(session)
    publisher: Publisher | None = None
    appended = 0
    shared = list(session.scalars(select(Bank).where(Bank.shared.is_(True))))
    _forget_unshared(session, {bank.name for bank in shared})
    if not shared and session.scalar(select(PublishedSignal.signal_id).limit(1)) is None:
        # Nothing is or was published: skip the change feed instead of reading it.
        cursor = session.scalar(select(func.max(SignalChange.id))) or cursor
    for bank in shared:
        marker = f"feed_started:{bank.name}"
        if session.get(ExchangeState, marker) is None:
            publisher = publisher or Publisher(session, settings)
            appended += _backfill(session, publisher, bank)
            session.add(ExchangeState(name=marker, value=str(bank.id)))
    while True:
        rows = session.execute(
            select(SignalChange.id, SignalChange.op, SignalChange.signal_id)
            .where(SignalChange.id > cursor)
            .order_by(SignalChange.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for op, batch in groupby(rows, key=lambda r: r.op):
            signal_ids = [r.signal_id for r in batch]
            if op == "add":
                entries = _new_shared_entries(session, signal_ids)
                if entries:
                    publisher = publisher or Publisher(session, settings)
                    for bank_name, group in groupby(entries, key=lambda pair: pair[1]):
                        publisher.publish_adds([entry for entry, _ in group], bank_name)
                    appended += len(entries)
            elif op == "remove":  # (a "bank" row is a settings change, not a signal)
                removed = _published_entries(session, signal_ids)
                if removed:
                    publisher = publisher or Publisher(session, settings)
                    appended += _publish_removes(session, publisher, removed)
        cursor = rows[-1].id
    state = session.get(ExchangeState, PUBLISH_CURSOR)
    if state is not None and state.value != str(cursor):
        state.value = str(cursor)
    session.flush()
    return appended


def _forget_unshared(session: Session, shared: set[str]) -> None:
    """A bank no longer shared loses its started mark, so sharing it again publishes what was
    added meanwhile (entries already published are not published twice)."""
    markers = session.scalars(
        select(ExchangeState).where(ExchangeState.name.like("feed_started:%"))
    )
    for marker in markers:
        if marker.name.removeprefix("feed_started:") not in shared:
            session.delete(marker)
    session.flush()


def _backfill(session: Session, publisher: Publisher, bank: Bank) -> int:
    count, after = 0, 0
    while True:
        batch = list(
            session.scalars(
                select(BankEntry)
                .options(selectinload(BankEntry.signals))
                .where(BankEntry.bank_id == bank.id, BankEntry.id > after)
                .order_by(BankEntry.id)
                .limit(1000)
            )
        )
        if not batch:
            return count
        done = _already_published(session, [e.id for e in batch])
        todo = [entry for entry in batch if entry.id not in done]
        publisher.publish_adds(todo, bank.name)
        count += len(todo)
        after = batch[-1].id
        for entry in batch:  # keep the session small: flushes scan what it holds
            session.expunge(entry)


def _already_published(session: Session, entry_ids: Iterable[int]) -> set[int]:
    return set(
        session.scalars(
            select(PublishedSignal.entry_id).where(PublishedSignal.entry_id.in_(list(entry_ids)))
        )
    )


def _new_shared_entries(session: Session, signal_ids: list[int]) -> list[tuple[BankEntry, str]]:
    """Entries of shared, already-published banks that these added signals belong to and that
    were not published yet (an entry's several signals publish once)."""
    rows = session.execute(
        select(BankEntry.id, Bank.name)
        .join(EntrySignal, EntrySignal.entry_id == BankEntry.id)
        .join(Bank, Bank.id == BankEntry.bank_id)
        .where(EntrySignal.id.in_(signal_ids), Bank.shared.is_(True))
        .distinct()
    ).all()
    started = {
        name.removeprefix("feed_started:")
        for name in session.scalars(
            select(ExchangeState.name).where(ExchangeState.name.like("feed_started:%"))
        )
    }
    wanted = {entry_id: bank for entry_id, bank in rows if bank in started}
    done = _already_published(session, wanted)
    wanted = {k: v for k, v in wanted.items() if k not in done}
    if not wanted:
        return []
    entries = session.scalars(
        select(BankEntry)
        .options(selectinload(BankEntry.signals))
        .where(BankEntry.id.in_(list(wanted)))
        .order_by(BankEntry.id)
    )
    return [(entry, wanted[entry.id]) for entry in entries]


def _published_entries(session: Session, signal_ids: list[int]) -> list[tuple[int, str, str]]:
    rows = session.execute(
        select(PublishedSignal.entry_id, PublishedSignal.bank, PublishedSignal.entry_uid)
        .where(PublishedSignal.signal_id.in_(signal_ids))
        .distinct()
        .order_by(PublishedSignal.entry_id)
    ).all()
    return [(r.entry_id, r.bank, r.entry_uid) for r in rows]


def _publish_removes(
    session: Session, publisher: Publisher, removed: list[tuple[int, str, str]]
) -> int:
    for _entry_id, bank, uid in removed:
        publisher.append(bank, "remove", {"entry": uid})
    session.execute(
        delete(PublishedSignal).where(PublishedSignal.entry_id.in_([r[0] for r in removed]))
    )
    return len(removed)


def feed_page(
    session: Session, settings: Settings, bank: str, after: int, limit: int
) -> dict[str, Any]:
    """Items after `after` (at most `limit`), the signed head, and the key chain."""
    has_items = session.scalar(select(FeedItem.id).where(FeedItem.bank == bank).limit(1))
    shared = session.scalar(select(Bank.shared).where(Bank.name == bank))
    if not shared and has_items is None:
        raise NotFound(f"bank {bank!r} is not shared", bank=bank)
    publish_pending(session, settings)
    items = list(
        session.scalars(
            select(FeedItem)
            .where(FeedItem.bank == bank, FeedItem.seq > after)
            .order_by(FeedItem.seq)
            .limit(limit)
        )
    )
    last = session.execute(
        select(FeedItem.seq, FeedItem.item_hash)
        .where(FeedItem.bank == bank)
        .order_by(FeedItem.seq.desc())
        .limit(1)
    ).first()
    head_seq, head_hash = (last.seq, last.item_hash) if last else (0, "")
    key_id, key = keys.current_key(session, settings)
    fields = head_fields(bank, head_seq, head_hash, format_time(utcnow()))
    return {
        "format": FEED_FORMAT,
        "instance": keys.instance_id(session, settings),
        "bank": bank,
        "after": after,
        "items": [
            {"body": i.body, "hash": i.item_hash, "key_id": i.key_id, "signature": i.signature}
            for i in items
        ],
        "head": {**fields, "key_id": key_id, "signature": sign(key, HEAD_CONTEXT, fields)},
        "keys": keys.published_keys(session),
        "next_after": items[-1].seq if items and items[-1].seq < head_seq else None,
    }
