"""Batch backfill: match a large corpus of existing content signals against every bank.

The input is Parquet or CSV with a `content_id` column and one column per signal type
(`pdq`, `md5`, `sha256`, `text`, `url`, ...); empty cells are skipped. The banks are read
once into a `BankSnapshot` (live entries of enabled banks, with each bank's thresholds and
evasion options) that travels to the workers, so workers need no database access. The input
is read in batches; each batch is matched by `match_batch`, in this process or as a task on
a Dask distributed cluster (a `LocalCluster` on this machine, or a scheduler address for a
multi-machine cluster). Both paths run the same code and the result is sorted the same way,
so they are identical.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.banks.models import Bank, BankEntry, EntrySignal
from prescreen.core.db import utcnow
from prescreen.core.errors import InvalidInput, PrescreenError
from prescreen.matching.index import SignalIndex, built_index
from prescreen.matching.service import ORIGINAL, variant_allowed
from prescreen.signals.registry import all_types, index_kind

log = logging.getLogger(__name__)
InputFormat = Literal["parquet", "csv"]
ID_COLUMN = "content_id"
RESULT_COLUMNS = ("content_id", "bank", "bank_kind", "entry", "signal_type", "distance", "label")


@dataclass(frozen=True)
class BankRules:
    """The bank settings matching needs (a picklable stand-in for the Bank row)."""

    name: str
    kind: str
    labels: tuple[str, ...]
    pdq_threshold: int
    vpdq_query_match_pct: float
    vpdq_bank_match_pct: float
    text_near_threshold: float
    match_dihedral: bool
    match_trimmed: bool
    match_crops: bool
    match_overlays: bool


@dataclass
class BankSnapshot:
    """Every live bank signal at one moment: (signal id, type, value) with its entry and bank."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    banks: dict[int, BankRules] = field(default_factory=dict)
    signals: list[tuple[int, str, str, str, int, int]] = field(default_factory=list)
    entry_labels: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.signals)


def load_snapshot(session: Session) -> BankSnapshot:
    """Live entries (enabled, or disabled only until a past time) of enabled banks."""
    snapshot, now = BankSnapshot(), utcnow()
    for bank in session.scalars(select(Bank).where(Bank.enabled.is_(True))):
        snapshot.banks[bank.id] = BankRules(
            bank.name, bank.kind, tuple(bank.labels or ()), bank.pdq_threshold,
            bank.vpdq_query_match_pct, bank.vpdq_bank_match_pct, bank.text_near_threshold,
            bank.match_dihedral, bank.match_trimmed, bank.match_crops, bank.match_overlays,
        )  # fmt: skip
    rows = session.execute(
        select(
            EntrySignal.id, EntrySignal.signal_type, EntrySignal.value, EntrySignal.variant,
            BankEntry.id, BankEntry.bank_id, BankEntry.enabled, BankEntry.disabled_until,
            BankEntry.labels,
        )
        .join(BankEntry, EntrySignal.entry_id == BankEntry.id)
        .where(BankEntry.bank_id.in_(list(snapshot.banks)))
        .order_by(EntrySignal.id)
    )  # fmt: skip
    for sid, stype, value, variant, entry, bank_id, enabled, until, labels in rows:
        if enabled or (until is not None and until <= now):
            snapshot.signals.append((sid, stype, value, variant, entry, bank_id))
            snapshot.entry_labels[entry] = tuple(labels or snapshot.banks[bank_id].labels)
    return snapshot


_INDEXES: dict[str, tuple[dict[str, SignalIndex], dict[int, tuple[str, int, int]]]] = {}


def _indexes(snapshot: BankSnapshot):
    """The snapshot's indexes, built once per process (workers keep them between batches)."""
    if snapshot.token not in _INDEXES:
        grouped: dict[str, tuple[list[int], list[str]]] = {}
        by_signal: dict[int, tuple[str, int, int]] = {}
        for sid, stype, value, variant, entry, bank_id in snapshot.signals:
            ids, values = grouped.setdefault(stype, ([], []))
            ids.append(sid)
            values.append(value)
            by_signal[sid] = (variant, entry, bank_id)
        indexes = {
            stype: built_index(index_kind(stype), ids, values)
            for stype, (ids, values) in grouped.items()
        }
        _INDEXES.clear()  # one snapshot at a time: a new backfill replaces the old one
        _INDEXES[snapshot.token] = (indexes, by_signal)
    return _INDEXES[snapshot.token]


def match_batch(snapshot: BankSnapshot, batch: dict[str, list[Any]]) -> dict[str, Any]:
    """Match one batch of rows (columns by name); the best match per (content, entry)."""
    indexes, by_signal = _indexes(snapshot)
    types = all_types()
    radius = max((rules.pdq_threshold for rules in snapshot.banks.values()), default=0)
    columns = [name for name in batch if name in indexes]
    ids = batch.get(ID_COLUMN, [])
    found: list[tuple] = []
    invalid = 0
    for row, content_id in enumerate(ids):
        best: dict[int, tuple] = {}
        for signal_type in columns:
            value = batch[signal_type][row]
            if value is None or value == "":
                continue
            try:
                value = types[signal_type].normalize(str(value))
            except PrescreenError:
                invalid += 1
                continue
            for sid, score in indexes[signal_type].search(value, radius):
                variant, entry, bank_id = by_signal[sid]
                rules = snapshot.banks[bank_id]
                kind = types[signal_type]
                if not (variant_allowed(rules, ORIGINAL, variant) and kind.accepts(score, rules)):
                    continue
                distance = kind.score_distance(score)
                perceptual = int(kind.index_kind != "exact")
                if entry in best and best[entry][0] <= (distance, perceptual):
                    continue
                best[entry] = ((distance, perceptual), rules, signal_type, distance)
        for entry, (_strength, rules, signal_type, distance) in best.items():
            labels = snapshot.entry_labels.get(entry, ())
            found.append((str(content_id), rules.name, rules.kind, entry, signal_type, distance,
                          labels[0] if labels else None))  # fmt: skip
    return {"rows": len(ids), "invalid": invalid, "matches": found}


def read_batches(path: Path, fmt: InputFormat, batch_rows: int) -> Iterator[dict[str, list]]:
    """The input in batches of columns, streamed (the file is never loaded whole)."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        else:
            import pyarrow.csv as pacsv

            convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types=_as_text(path))
            batches = _rebatch(pacsv.open_csv(path, convert_options=convert), batch_rows)
        for batch in batches:
            if ID_COLUMN not in batch.schema.names:
                raise InvalidInput(f"the input has no {ID_COLUMN!r} column")
            yield batch.to_pydict()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path} as {fmt}: {exc}") from exc


def _as_text(path: Path) -> dict[str, Any]:
    """Read every CSV column as text (a hex hash of digits only must not become a number)."""
    import pyarrow as pa

    with path.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline().strip().split(",")
    return {name.strip('"'): pa.string() for name in header}


def _rebatch(reader, rows: int):
    import pyarrow as pa

    pending, count = [], 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending, count = [], 0
    if pending:
        table = pa.Table.from_batches(pending).combine_chunks()
        yield from table.to_batches()


@dataclass
class BackfillResult:
    rows: int = 0
    invalid: int = 0
    matches: list[tuple] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "invalid_values": self.invalid,
            "matches": len(self.matches),
            "contents_matched": len({m[0] for m in self.matches}),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
            "workers": self.workers,
        }

    def add(self, part: dict[str, Any]) -> None:
        self.rows += part["rows"]
        self.invalid += part["invalid"]
        self.matches.extend(part["matches"])

    def finish(self, started: float) -> BackfillResult:
        self.matches.sort(key=lambda m: (m[0], m[5], m[1], m[3]))
        self.seconds = time.perf_counter() - started
        return self


def backfill_local(
    snapshot: BankSnapshot, path: Path, fmt: InputFormat, batch_rows: int = 50_000
) -> BackfillResult:
    """The whole corpus in this process."""
    started, result = time.perf_counter(), BackfillResult()
    for batch in read_batches(path, fmt, batch_rows):
        result.add(match_batch(snapshot, batch))
    return result.finish(started)


def backfill_dask(
    snapshot: BankSnapshot,
    path: Path,
    fmt: InputFormat,
    client: Any,
    batch_rows: int = 50_000,
) -> BackfillResult:
    """The corpus on a Dask distributed cluster: the snapshot is broadcast once, batches are
    submitted as they are read, with at most two per worker thread in flight."""
    from distributed import as_completed

    started, result = time.perf_counter(), BackfillResult()
    threads = sum(client.nthreads().values()) or 1
    result.workers = len(client.nthreads())
    shared = client.scatter(snapshot, broadcast=True)
    pending = as_completed()
    for batch in read_batches(path, fmt, batch_rows):
        pending.add(client.submit(match_batch, shared, batch, pure=False))
        while pending.count() >= 2 * threads:
            result.add(next(pending).result())
    for future in pending:
        result.add(future.result())
    return result.finish(started)


def write_matches(result: BackfillResult, out: Path | None, fmt: str) -> None:
    """Matches as CSV, NDJSON or Parquet (to stdout for CSV/NDJSON without a path)."""
    import csv
    import json
    import sys

    rows = [dict(zip(RESULT_COLUMNS, match, strict=True)) for match in result.matches]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if out is None:
            raise InvalidInput("Parquet output needs --output FILE")
        columns = {name: [row[name] for row in rows] for name in RESULT_COLUMNS}
        pq.write_table(pa.table(columns), out)
        return
    handle = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    finally:
        if out:
            handle.close()
