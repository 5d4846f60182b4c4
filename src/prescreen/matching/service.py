"""The matcher: in-memory indexes per signal type, kept current through the change feed.

Indexes are built once from the store, then every process applies `signal_changes` rows it has
not seen before each lookup, so a bank change made by any process (API, CLI, worker) is matched
by all of them without reloading whole indexes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prescreen.banks.models import Bank, BankEntry, EntrySignal, SignalChange
from prescreen.core.db import utcnow
from prescreen.core.errors import NotFound
from prescreen.matching.index import PDQHashIndex, SignalIndex, make_index
from prescreen.matching.pdq_index import PDQIndex
from prescreen.signals.registry import all_types

log = logging.getLogger(__name__)
_FETCH_CHUNK = 500
PDQ = "pdq"
ORIGINAL = "original"


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


class Matcher:
    """Indexes for every registered signal type; thread-safe.

    With a `snapshot_dir`, the PDQ index (the one that is slow to rebuild) is saved there with
    the change-feed position it reflects; a later start loads it memory-mapped and applies only
    the changes since, instead of re-reading every hash.
    """

    def __init__(self, snapshot_dir: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._indexes: dict[str, SignalIndex] = {}
        self._cursor = 0
        self.loaded = False
        self.snapshot_dir = snapshot_dir

    def _index(self, signal_type: str) -> SignalIndex:
        if signal_type not in self._indexes:
            types = all_types()
            kind = types[signal_type].index_kind if signal_type in types else "exact"
            self._indexes[signal_type] = make_index(kind)
        return self._indexes[signal_type]

    def rebuild(self, session: Session) -> None:
        """Load every stored signal (the PDQ index from its snapshot when that is current);
        the feed position is read first so nothing is missed."""
        with self._lock:
            cursor = session.scalar(select(func.max(SignalChange.id))) or 0
            snapshot = self._load_snapshot(cursor)
            self._indexes = {}
            query = select(EntrySignal.id, EntrySignal.signal_type, EntrySignal.value)
            if snapshot is not None:
                query = query.where(EntrySignal.signal_type != PDQ)
            by_type: dict[str, tuple[list[int], list[str]]] = {}
            count = 0
            for signal_id, signal_type, value in session.execute(query).yield_per(100_000):
                ids, values = by_type.setdefault(signal_type, ([], []))
                ids.append(signal_id)
                values.append(value)
                count += 1
            for signal_type, (ids, values) in by_type.items():
                self._index(signal_type).add(ids, values)
            self.loaded = True
            if snapshot is not None:
                self._indexes[PDQ], self._cursor = snapshot
                applied = self.sync(session)
                log.info(
                    "indexes loaded", extra={"snapshot_cursor": snapshot[1], "applied": applied}
                )
                return
            self._cursor = cursor
            log.info("indexes rebuilt", extra={"signals": count, "cursor": cursor})
        self.save_snapshot()

    def _load_snapshot(self, db_cursor: int) -> tuple[PDQHashIndex, int] | None:
        """The saved PDQ index and its feed position, unless missing, unreadable or from
        another database (a position the feed has not reached)."""
        if self.snapshot_dir is None or not (self.snapshot_dir / "pdq.json").is_file():
            return None
        try:
            cursor = json.loads((self.snapshot_dir / "pdq.json").read_text())["cursor"]
            if not isinstance(cursor, int) or cursor > db_cursor:
                log.warning("index snapshot is stale; rebuilding", extra={"cursor": cursor})
                return None
            return PDQHashIndex(PDQIndex.load(self.snapshot_dir / "pdq")), cursor
        except (OSError, ValueError, KeyError) as exc:
            log.warning("index snapshot unreadable; rebuilding", extra={"error": str(exc)})
            return None

    def save_snapshot(self) -> bool:
        """Save the PDQ index with the feed position it reflects (atomic per file)."""
        if self.snapshot_dir is None:
            return False
        with self._lock:
            index, cursor = self._indexes.get(PDQ), self._cursor
            if not isinstance(index, PDQHashIndex):
                return False
            try:
                self.snapshot_dir.mkdir(parents=True, exist_ok=True)
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
        changes (a million-row import applies in seconds); returns how many were applied."""
        with self._lock:
            if not self.loaded:
                self.rebuild(session)
                return 0
            rows = session.execute(
                select(SignalChange.id, SignalChange.op, SignalChange.signal_type,
                       SignalChange.signal_id, SignalChange.value)
                .where(SignalChange.id > self._cursor)
                .order_by(SignalChange.id)
            ).yield_per(50_000)  # fmt: skip
            applied = 0
            for (op, signal_type), batch in groupby(rows, key=lambda r: (r.op, r.signal_type)):
                batch = list(batch)
                index = self._index(signal_type)
                if op == "add":
                    index.add([r.signal_id for r in batch], [r.value for r in batch])
                else:
                    index.remove([r.signal_id for r in batch])
                self._cursor = batch[-1].id
                applied += len(batch)
            return applied

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
        now = now or utcnow()
        query = select(Bank).where(Bank.enabled.is_(True))
        if banks is not None:
            query = query.where(Bank.name.in_(list(banks)))
        live_banks = {bank.id: bank for bank in session.scalars(query)}
        if banks is not None:
            _require_banks_exist(session, set(banks))
        if not live_banks:
            return []
        max_radius = max(bank.pdq_threshold for bank in live_banks.values())
        probes = [(t, ORIGINAL, v, None) for t, v in signals.items()]
        for signal_type, by_name in (variants or {}).items():
            probes += [(signal_type, name, h, q) for name, (h, q) in by_name.items()]
        candidates: dict[int, list[Candidate]] = defaultdict(list)
        with self._lock:
            for signal_type, variant, value, quality in probes:
                index = self._indexes.get(signal_type)
                for signal_id, score in index.search(value, max_radius) if index else ():
                    candidates[signal_id].append(Candidate(signal_type, score, variant, quality))
        return self._resolve(session, candidates, live_banks, now)

    def _resolve(
        self,
        session: Session,
        candidates: dict[int, list[Candidate]],
        live_banks: dict[int, Bank],
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


@dataclass(frozen=True)
class Candidate:
    """An index hit: which signal type, its score, and which query variant found it."""

    signal_type: str
    score: Any
    variant: str
    quality: int | None


DIHEDRAL = ("rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "transverse")


def variant_allowed(bank: Bank, query_variant: str, bank_variant: str) -> bool:
    """A bank's evasion options: rotations/mirrors and trimmed borders on the upload's side,
    centred crops (and trimmed borders) on the bank item's side."""
    trimmed = query_variant.startswith("trimmed") or bank_variant == "trimmed"
    if trimmed and not bank.match_trimmed:
        return False
    if query_variant.removeprefix("trimmed_") in DIHEDRAL and not bank.match_dihedral:
        return False
    return bank.match_crops or not bank_variant.startswith("crop")


def _strength_of(signal_type: str, distance: int) -> tuple[int, int]:
    """Lower is stronger: closer first, and an exact signal beats a perceptual hash at a tie."""
    types = all_types()
    perceptual = signal_type in types and types[signal_type].index_kind != "exact"
    return (distance, int(perceptual))


def _strength(match: Match) -> tuple[int, int]:
    return _strength_of(match.signal_type, match.distance)


def _require_banks_exist(session: Session, names: set[str]) -> None:
    found = set(session.scalars(select(Bank.name).where(Bank.name.in_(names))))
    if missing := sorted(names - found):
        raise NotFound(f"no bank named {', '.join(map(repr, missing))}", banks=missing)
