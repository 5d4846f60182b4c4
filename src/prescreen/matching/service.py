"""The matcher: in-memory indexes per signal type, kept current through the change feed.

Indexes are built once from the store, then every process applies `signal_changes` rows it has
not seen before each lookup, so a bank change made by any process (API, CLI, worker) is matched
by all of them without reloading whole indexes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from prescreen.banks.models import (
    BANK_CHANGED,
    Bank,
    BankEntry,
    BankView,
    EntrySignal,
    SignalChange,
)
from prescreen.core.db import Database, driver_chunks, utcnow
from prescreen.core.errors import NotFound
from prescreen.matching.feed import FeedCursor
from prescreen.matching.index import (
    IndexRows,
    PDQHashIndex,
    SignalIndex,
    gather_by_type,
    make_index,
)
from prescreen.matching.pdq_index import PDQIndex
from prescreen.signals.image_variants import TRIMMINGS, variant_parts
from prescreen.signals.registry import all_types, index_kind

log = logging.getLogger(__name__)
_FETCH_CHUNK = 500
_REBUILD_CHUNK = 100_000  # signals read and packed at a time when an index is rebuilt
_RECENT_CHANGES = 10_000
PDQ = "pdq"
ORIGINAL = "original"
# More changes than this since the snapshot (and more than it holds): rebuild in bulk instead
# of replaying them one by one.
REBUILD_BEYOND = 100_000
# More pending changes than this: take them from (or make) a shared snapshot.
CATCH_UP = 50_000
# Built once: every lookup runs it, and building a statement costs more than running it.
_CHANGES = select(
    SignalChange.id, SignalChange.op, SignalChange.signal_type, SignalChange.signal_id,
    SignalChange.value,
).order_by(SignalChange.id)  # fmt: skip
_CHANGES_AFTER = _CHANGES.where(SignalChange.id > bindparam("cursor"))
_OTHER_CHANGES_BETWEEN = _CHANGES.where(
    SignalChange.id > bindparam("after"), SignalChange.id <= bindparam("upto"),
    SignalChange.signal_type != PDQ,
)  # fmt: skip


@contextmanager
def _file_lock(folder: Path) -> Iterator[None]:
    """One process at a time writes (or waits for) the snapshot in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Match:
    """One bank entry whose signal is within its bank's threshold of a query signal."""

    bank: str
    bank_kind: str
    entry: int
    signal_type: str
    distance: int
    threshold: float
    labels: list[str] = field(default_factory=list)
    source: str = "local"
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


MatchAnnotator = Callable[[Session, list[Match]], list[Match]]
_annotators: list[MatchAnnotator] = []


def match_annotator(fn: MatchAnnotator) -> MatchAnnotator:
    """Register a function that adds to matches (e.g. exchange provenance) after every lookup."""
    _annotators.append(fn)
    return fn


class Matcher:
    """Indexes for every registered signal type; thread-safe.

    With a `snapshot_dir`, the PDQ index (the one that is slow to rebuild) is saved there with
    the change-feed position it reflects; a later start loads it memory-mapped and applies only
    the changes since, instead of re-reading every hash.
    """

    def __init__(self, snapshot_dir: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._indexes: dict[str, SignalIndex] = {}
        self._feed = FeedCursor()
        self._banks: dict[int, BankView] | None = None
        self._banks_generation = 0
        self.loaded = False
        self.snapshot_dir = snapshot_dir

    def _index(self, signal_type: str) -> SignalIndex:
        if signal_type not in self._indexes:
            self._indexes[signal_type] = make_index(index_kind(signal_type))
        return self._indexes[signal_type]

    def rebuild(self, session: Session) -> None:
        """Load every stored signal (the PDQ index from its snapshot when that is current);
        the feed position is read first so nothing is missed."""
        if self._rebuild(session, from_snapshot=True):
            self.save_snapshot()

    def _rebuild(self, session: Session, from_snapshot: bool) -> bool:
        """`rebuild`, without saving; True when the PDQ index was built from the tables."""
        with self._lock:
            cursor = session.scalar(select(func.max(SignalChange.id))) or 0
            snapshot = self._load_snapshot(cursor) if from_snapshot else None
            self._indexes = {}
            self._forget_banks()
            query = select(EntrySignal.id, EntrySignal.signal_type, EntrySignal.value)
            if snapshot is not None:
                query = query.where(EntrySignal.signal_type != PDQ)
            rows: dict[str, IndexRows] = {}
            for chunk in driver_chunks(session, query, _REBUILD_CHUNK):
                gather_by_type(rows, chunk, index_kind)
            count = sum(len(column) for column in rows.values())
            self._indexes = {signal_type: column.build() for signal_type, column in rows.items()}
            self.loaded = True
            if snapshot is not None:
                self._indexes[PDQ] = snapshot[0]
                self._feed = _feed_at(session, snapshot[1])
                applied = self.sync(session)
                log.info(
                    "indexes loaded", extra={"snapshot_cursor": snapshot[1], "applied": applied}
                )
                return False
            self._feed = _feed_at(session, cursor)
            log.info("indexes rebuilt", extra={"signals": count, "cursor": cursor})
            return True

    def _load_snapshot(self, db_cursor: int) -> tuple[PDQHashIndex, int] | None:
        """The saved PDQ index and its feed position, unless missing, unreadable or from
        another database (a position the feed has not reached)."""
        if self.snapshot_dir is None or not (self.snapshot_dir / "pdq.json").is_file():
            return None
        try:
            marker = json.loads((self.snapshot_dir / "pdq.json").read_text())
            cursor, signals = marker["cursor"], marker.get("signals", 0)
            if not isinstance(cursor, int) or cursor > db_cursor:
                log.warning("index snapshot is stale; rebuilding", extra={"cursor": cursor})
                return None
            if db_cursor - cursor > max(REBUILD_BEYOND, signals):
                log.info("many changes since the index snapshot; rebuilding")
                return None
            return PDQHashIndex(PDQIndex.load(self.snapshot_dir / "pdq")), cursor
        except (OSError, ValueError, KeyError) as exc:
            log.warning("index snapshot unreadable; rebuilding", extra={"error": str(exc)})
            return None

    def save_snapshot(self, compact: bool = False) -> bool:
        """Save the PDQ index with the feed position it reflects (atomic per file); `compact`
        first folds recent additions into the main index, so loaders map all of it."""
        if self.snapshot_dir is None:
            return False
        with _file_lock(self.snapshot_dir):
            return self._save_snapshot_locked(compact)

    def _save_snapshot_locked(self, compact: bool) -> bool:
        assert self.snapshot_dir is not None
        with self._lock:
            index, cursor = self._indexes.get(PDQ), self._feed.position
            if not isinstance(index, PDQHashIndex):
                return False
            if compact:
                index.index.wait_for_compaction()
                index.index.compact()
            try:
                index.index.save(self.snapshot_dir / "pdq")
                marker = self.snapshot_dir / "pdq.json.tmp"
                marker.write_text(json.dumps({"cursor": cursor, "signals": len(index)}))
                marker.replace(self.snapshot_dir / "pdq.json")
            except OSError as exc:
                log.warning("could not save the index snapshot", extra={"error": str(exc)})
                return False
        log.info("index snapshot saved", extra={"cursor": cursor, "signals": len(index)})
        return True

    def sync(self, session: Session) -> int:
        """Apply changes recorded since the last sync, in batches of consecutive same-kind
        changes (a million-row import applies in seconds); returns how many were applied.

        The feed is read without holding the matcher's lock (a thread waiting on the database
        must never block lookups, nor wait on a thread that holds the database), then applied
        under it; rows another thread applied meanwhile are skipped."""
        if not self.loaded:
            with self._lock:
                if not self.loaded:
                    self.rebuild(session)
                    return 0
        # Core, not ORM, execution: this runs before every lookup, mostly to find nothing.
        result = session.connection().execute(*self._pending()).yield_per(CATCH_UP)
        applied = 0
        for number, chunk in enumerate(result.partitions()):
            if number == 0 and len(chunk) == CATCH_UP and self.snapshot_dir is not None:
                result.close()
                return self._catch_up(session)
            applied += self._apply(chunk)
        return applied

    def _pending(self) -> tuple[Any, dict[str, int]]:
        """Changes not applied yet: after the position, or in a hole the feed had below it."""
        if not self._feed.gaps:
            return _CHANGES_AFTER, {"cursor": self._feed.position}
        return _CHANGES.where(self._feed.pending(SignalChange.id)), {}

    def _apply(self, rows: Iterable[Any]) -> int:
        """Apply rows under the lock; rows another thread applied meanwhile are skipped."""
        applied = 0
        for (op, signal_type), group in groupby(rows, key=lambda r: (r.op, r.signal_type)):
            with self._lock:
                batch = [r for r in group if self._feed.wants(r.id)]
                if not batch:
                    continue
                if op == BANK_CHANGED:
                    self._forget_banks()
                elif op == "add":
                    self._index(signal_type).add(
                        [r.signal_id for r in batch], [r.value for r in batch]
                    )
                else:
                    self._index(signal_type).remove([r.signal_id for r in batch])
                self._feed.advance(r.id for r in batch)
                applied += len(batch)
        return applied

    def _catch_up(self, session: Session) -> int:
        """Many changes at once (a bulk import). Rather than every process on the host building
        its own copy of the grown index, the first one applies them and saves a snapshot, and
        every process (that one included) maps the snapshot: the index is in memory once."""
        assert self.snapshot_dir is not None
        with _file_lock(self.snapshot_dir):
            newest = session.scalar(select(func.max(SignalChange.id))) or 0
            snapshot = self._load_snapshot(newest)
            if snapshot is not None and snapshot[1] > self._feed.position:
                index, cursor = snapshot
                others = {"after": self._feed.position, "upto": cursor}
                applied = self._apply(session.execute(_OTHER_CHANGES_BETWEEN, others))
                with self._lock:
                    self._indexes[PDQ] = index
                    if cursor > self._feed.position:
                        self._feed = _feed_at(session, cursor)
                return applied + self._apply(session.execute(*self._pending()).yield_per(CATCH_UP))
            before = self._feed.position
            if newest - before > max(REBUILD_BEYOND, self.size().get(PDQ, 0)):
                # More changes than the index holds (a bulk import that more than doubles it):
                # reading every signal is cheaper than replaying them (1M: 4.5 against 16 s).
                self._rebuild(session, from_snapshot=False)
                applied = self._feed.position - before
            else:
                applied = self._apply(session.execute(*self._pending()).yield_per(CATCH_UP))
            if self._save_snapshot_locked(compact=True):
                mapped = PDQHashIndex(PDQIndex.load(self.snapshot_dir / "pdq"))
                with self._lock:
                    self._indexes[PDQ] = mapped
            return applied

    def _forget_banks(self) -> None:
        with self._lock:
            self._banks = None
            self._banks_generation += 1

    def banks(self, session: Session) -> dict[int, BankView]:
        """Every bank's settings by id, cached until the change feed says a bank changed (bank
        settings are read on every lookup and change rarely)."""
        with self._lock:
            cached, generation = self._banks, self._banks_generation
        if cached is not None:
            return cached
        views = {bank.id: BankView.of(bank) for bank in session.scalars(select(Bank))}
        with self._lock:
            if self._banks_generation == generation:
                self._banks = views
        return views

    def size(self) -> dict[str, int]:
        with self._lock:
            return {name: len(index) for name, index in self._indexes.items()}

    def lookup(
        self,
        session: Session,
        signals: dict[str, Any],
        banks: Iterable[str] | None = None,
        now: datetime | None = None,
        variants: dict[str, dict[str, tuple[str, int]]] | None = None,
    ) -> list[Match]:
        """Every active entry in an enabled bank that matches one of `signals` (or, where the
        bank allows it, one of their `variants`: rotations, trimmed borders) at its threshold."""
        self.sync(session)
        return self._answer(session, self._candidates(session, signals, banks, variants), now)

    def lookup_now(
        self, session: Session, signals: dict[str, Any], banks: Iterable[str] | None = None
    ) -> list[Match] | None:
        """`lookup` for a caller that must not wait, the event loop (handing a lookup to a
        thread and back costs about a quarter of a millisecond). None, to ask `lookup`
        instead, when the index is not loaded, has changes to apply first, or is held by
        another thread (one applying a bulk import holds it for seconds)."""
        if not self.loaded or session.connection().execute(*self._pending()).first():
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            found = self._candidates(session, signals, banks, None)
        finally:
            self._lock.release()
        return self._answer(session, found, None)

    def _candidates(
        self,
        session: Session,
        signals: dict[str, Any],
        banks: Iterable[str] | None,
        variants: dict[str, dict[str, tuple[str, int]]] | None,
    ) -> tuple[dict[int, list[Candidate]], dict[int, BankView]]:
        """The indexed signals near the probes, and the live banks they may belong to."""
        known = self.banks(session)
        live_banks = {i: bank for i, bank in known.items() if bank.enabled}
        if banks is not None:
            wanted = set(banks)
            if missing := sorted(wanted - {bank.name for bank in known.values()}):
                raise NotFound(f"no bank named {', '.join(map(repr, missing))}", banks=missing)
            live_banks = {i: bank for i, bank in live_banks.items() if bank.name in wanted}
        candidates: dict[int, list[Candidate]] = defaultdict(list)
        if not live_banks:
            return candidates, live_banks
        max_radius = max(bank.pdq_threshold for bank in live_banks.values())
        probes = [(t, ORIGINAL, v, None) for t, v in signals.items()]
        for signal_type, by_name in (variants or {}).items():
            probes += [(signal_type, name, h, q) for name, (h, q) in by_name.items()]
        with self._lock:
            for signal_type, variant, value, quality in probes:
                index = self._indexes.get(signal_type)
                for signal_id, score in index.search(value, max_radius) if index else ():
                    candidates[signal_id].append(Candidate(signal_type, score, variant, quality))
        return candidates, live_banks

    def _answer(
        self,
        session: Session,
        found: tuple[dict[int, list[Candidate]], dict[int, BankView]],
        now: datetime | None,
    ) -> list[Match]:
        candidates, live_banks = found
        if not live_banks:
            return []
        matches = self._resolve(session, candidates, live_banks, now or utcnow())
        for annotate in _annotators:
            matches = annotate(session, matches)
        return matches

    def _resolve(
        self,
        session: Session,
        candidates: dict[int, list[Candidate]],
        live_banks: dict[int, BankView],
        now: datetime,
    ) -> list[Match]:
        matches: dict[int, Match] = {}
        types = all_types()
        ids = list(candidates)
        for start in range(0, len(ids), _FETCH_CHUNK):
            rows = session.execute(
                select(EntrySignal.id, EntrySignal.variant, BankEntry)
                .join(BankEntry, EntrySignal.entry_id == BankEntry.id)
                .where(EntrySignal.id.in_(ids[start : start + _FETCH_CHUNK]))
            ).all()
            for signal_id, bank_variant, entry in rows:
                bank = live_banks.get(entry.bank_id)
                if bank is None or not entry.is_active(now):
                    continue
                for found in candidates[signal_id]:
                    kind = types[found.signal_type]
                    if not (
                        variant_allowed(bank, found.variant, bank_variant)
                        and kind.accepts(found.score, bank)
                    ):
                        continue
                    distance = kind.score_distance(found.score)
                    if entry.id in matches and _strength(matches[entry.id]) <= _strength_of(
                        found.signal_type, distance
                    ):
                        continue
                    detail = kind.score_detail(found.score)
                    if found.variant != ORIGINAL or bank_variant != ORIGINAL:
                        detail |= {"query_variant": found.variant, "bank_variant": bank_variant}
                    if found.quality is not None:
                        detail["quality"] = found.quality
                    matches[entry.id] = Match(
                        bank=bank.name,
                        bank_kind=bank.kind,
                        entry=entry.id,
                        signal_type=found.signal_type,
                        distance=distance,
                        threshold=kind.threshold(bank),
                        detail=detail,
                        labels=list(entry.labels or bank.labels or []),
                        source=entry.source,
                    )
        return sorted(matches.values(), key=lambda m: (m.distance, m.bank, m.entry))


def refresh_snapshot(db: Database, snapshot_dir: Path) -> None:
    """Bring the on-disk PDQ index snapshot up to date and compacted, so the processes that
    start next map all of it (before forking server workers, after a bulk import)."""
    matcher = Matcher(snapshot_dir=snapshot_dir)
    with db.session(readonly=True) as session:
        matcher.rebuild(session)  # saves the snapshot itself when it had to build the index
    index = matcher._indexes.get(PDQ)
    if isinstance(index, PDQHashIndex) and (
        index.index.stats()["delta_rows"] or index.index.wide_tables()
    ):  # changes applied on top of an older snapshot, or one from before tables were packed
        matcher.save_snapshot(compact=True)


def _feed_at(session: Session, position: int) -> FeedCursor:
    """A feed cursor at `position` that will still read the recent changes below it that are
    not committed yet (holes in the ids); re-applying one that was loaded is harmless."""
    start = max(0, position - _RECENT_CHANGES)
    ids = session.scalars(
        select(SignalChange.id)
        .where(SignalChange.id > start, SignalChange.id <= position)
        .order_by(SignalChange.id)
    )
    feed = FeedCursor(start)
    feed.advance(ids)
    if feed.position < position:  # the newest ids themselves are not visible yet
        feed.gaps.append([feed.position + 1, position, time.time()])
        feed.position = position
    return feed


@dataclass(frozen=True)
class Candidate:
    """An index hit: which signal type, its score, and which query variant found it."""

    signal_type: str
    score: Any
    variant: str
    quality: int | None


def variant_allowed(bank: BankView, query_variant: str, bank_variant: str) -> bool:
    """A bank's evasion options: rotations/mirrors and trimmed borders on the upload's side,
    centred crops (and trimmed borders) on the bank item's side, half-frame crops of videos and
    blanked corners of images on both."""
    query_copy, turn = variant_parts(query_variant)
    trimmed = query_copy in TRIMMINGS or variant_parts(bank_variant)[0] in TRIMMINGS
    if trimmed and not bank.match_trimmed:
        return False
    if turn != "original" and not bank.match_dihedral:
        return False
    masked = query_variant.startswith("corner_") or bank_variant.startswith("corner_")
    if masked and not bank.match_overlays:
        return False
    cropped = query_variant.startswith("crop") or bank_variant.startswith("crop")
    return bank.match_crops or not cropped


def _strength_of(signal_type: str, distance: int) -> tuple[int, int]:
    """Lower is stronger: closer first, and an exact signal beats a perceptual hash at a tie."""
    types = all_types()
    perceptual = signal_type in types and types[signal_type].index_kind != "exact"
    return (distance, int(perceptual))


def _strength(match: Match) -> tuple[int, int]:
    return _strength_of(match.signal_type, match.distance)
