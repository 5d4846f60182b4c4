"""Bank and entry management. Every change to an entry's signals is written to the change feed
in the same transaction, so indexes in every process follow it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Column, Table, func, select
from sqlalchemy.orm import Session, selectinload

from prescreen.audit.service import record as audit_record
from prescreen.banks.models import Bank, BankEntry, BankKind, EntrySignal, SignalChange
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.core.validation import BANK_NAME_PATTERN, clean_text
from prescreen.signals.base import ContentKind
from prescreen.signals.registry import all_types, normalize_signals

BANK_NAME = re.compile(BANK_NAME_PATTERN)
LABEL = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
VARIANT = re.compile(r"^[a-z0-9_]{1,32}$")
NDJSON_FORMAT = "prescreen-bank/1"
_BULK = 50_000
BANK_FIELDS = (
    "description",
    "kind",
    "labels",
    "pdq_threshold",
    "vpdq_query_match_pct",
    "vpdq_bank_match_pct",
    "match_dihedral",
    "match_trimmed",
    "match_crops",
    "match_overlays",
    "text_near_threshold",
    "logo_threshold",
    "enabled",
    "shared",
)


def validate_labels(labels: Iterable[str]) -> list[str]:
    labels = list(dict.fromkeys(label.strip().lower() for label in labels))
    bad = [label for label in labels if not LABEL.match(label)]
    if bad:
        raise InvalidInput(
            "labels are lower-case letters, digits and _ . : - (up to 64 characters)", invalid=bad
        )
    return labels


def _validate_bank_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated settings; a field given as None means "leave unchanged"."""
    fields = {k: v for k, v in fields.items() if v is not None}
    unknown = set(fields) - set(BANK_FIELDS)
    if unknown:
        raise InvalidInput("unknown bank fields", unknown=sorted(unknown))
    if "kind" in fields:
        try:
            fields["kind"] = BankKind(fields["kind"]).value
        except ValueError as exc:
            raise InvalidInput(
                f"bank kind must be one of {[k.value for k in BankKind]}", kind=fields["kind"]
            ) from exc
    if "labels" in fields:
        fields["labels"] = validate_labels(fields["labels"])
    threshold = fields.get("pdq_threshold")
    if threshold is not None and not (isinstance(threshold, int) and 0 <= threshold <= 256):
        raise InvalidInput("pdq_threshold must be an integer from 0 to 256")
    similarity = fields.get("text_near_threshold")
    if similarity is not None and not (
        isinstance(similarity, int | float) and 0.5 <= similarity <= 1
    ):
        raise InvalidInput("text_near_threshold must be a similarity from 0.5 to 1")
    confidence = fields.get("logo_threshold")
    if confidence is not None and not (
        isinstance(confidence, int | float) and 0.05 <= confidence <= 1
    ):
        raise InvalidInput("logo_threshold must be a confidence from 0.05 to 1")
    for share in ("vpdq_query_match_pct", "vpdq_bank_match_pct"):
        value = fields.get(share)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 100):
            raise InvalidInput(f"{share} must be a percentage from 0 to 100")
    return fields


def create_bank(session: Session, name: str, *, actor: str = "system", **fields: Any) -> Bank:
    if not BANK_NAME.match(name):
        raise InvalidInput(
            "bank names start with a letter or digit and use letters, digits, _ . - "
            "(up to 128 characters)",
            name=name[:140],
        )
    if session.scalar(select(Bank.id).where(Bank.name == name)) is not None:
        raise Conflict(f"bank {name!r} already exists")
    bank = Bank(name=name, **_validate_bank_fields(fields))
    session.add(bank)
    session.flush()
    audit_record(session, actor, "bank.create", f"bank:{name}", {"settings": fields})
    return bank


def get_bank(session: Session, name: str) -> Bank:
    bank = session.scalar(select(Bank).where(Bank.name == name))
    if bank is None:
        raise NotFound(f"no bank named {name!r}", bank=name)
    return bank


def list_banks(session: Session) -> list[tuple[Bank, int]]:
    counts = dict(
        session.execute(select(BankEntry.bank_id, func.count()).group_by(BankEntry.bank_id)).all()
    )
    return [
        (bank, counts.get(bank.id, 0)) for bank in session.scalars(select(Bank).order_by(Bank.name))
    ]


def update_bank(session: Session, name: str, *, actor: str = "system", **fields: Any) -> Bank:
    bank = get_bank(session, name)
    changes = _validate_bank_fields(fields)
    for key, value in changes.items():
        setattr(bank, key, value)
    session.flush()
    audit_record(session, actor, "bank.update", f"bank:{name}", {"changes": changes})
    return bank


def delete_bank(session: Session, name: str, actor: str = "system") -> None:
    bank = get_bank(session, name)
    signals = session.scalars(
        select(EntrySignal).join(BankEntry).where(BankEntry.bank_id == bank.id)
    ).all()
    _record_changes(session, signals, "remove")
    audit_record(session, actor, "bank.delete", f"bank:{name}", {"signals": len(signals)})
    session.delete(bank)
    session.flush()


@dataclass(slots=True)
class NewEntry:
    """An entry to add, validated before anything is written."""

    signals: dict[str, str]
    labels: list[str] = field(default_factory=list)
    note: str = ""
    source: str = "local"
    content_type: str | None = None
    enabled: bool = True
    disabled_until: datetime | None = None
    # Extra hashes of the same item, by signal type and variant name (e.g. pdq "crop90").
    variants: dict[str, dict[str, str]] = field(default_factory=dict)

    def signal_rows(self) -> Iterator[tuple[str, str, str]]:
        """(type, variant, value) of every hash to store, originals first."""
        for signal_type, value in self.signals.items():
            yield signal_type, "original", value
        for signal_type, by_name in self.variants.items():
            for variant, value in by_name.items():
                yield signal_type, variant, value

    @classmethod
    def validated(
        cls,
        signals: dict[str, Any],
        *,
        labels: Iterable[str] = (),
        note: str = "",
        source: str = "local",
        content_type: str | None = None,
        enabled: bool = True,
        disabled_until: datetime | None = None,
        variants: Any = None,
    ) -> NewEntry:
        """Validate signals (and `<type>_variants`, as hashing a bank item produces them).
        Bulk imports call this once per line, so the common case (no variants, no note) makes
        as few calls as it can."""
        types = all_types()
        matchable = {k: v for k, v in signals.items() if k in types}
        if not matchable:
            raise InvalidInput(
                "an entry needs at least one signal of a known type",
                given=sorted(signals),
                known=sorted(types),
            )
        if variants or any(k.endswith("_variants") for k in signals):
            variants = _variants(signals, variants)
        if content_type is not None and not (
            isinstance(content_type, str) and content_type in _CONTENT_KINDS
        ):
            raise InvalidInput(f"unknown content_type {str(content_type)[:40]!r}")
        return cls(
            normalize_signals(matchable),
            _labels(tuple(labels or ())),
            _clean("note", note) if note else "",
            _clean_source(source),
            content_type,
            enabled,
            disabled_until,
            variants or {},
        )


_CONTENT_KINDS = frozenset(kind.value for kind in ContentKind)


def _variants(signals: dict[str, Any], given: Any) -> dict[str, dict[str, str]]:
    """`{"pdq": {"crop90": hex}}` from `given` or from `pdq_variants` ({name: [hex, quality]})."""
    if given is not None and not isinstance(given, dict):
        raise InvalidInput('"variants" maps a signal type to {variant name: value}')
    raw: dict[str, Any] = dict(given or {})
    for name, value in signals.items():
        if name.endswith("_variants") and name.removesuffix("_variants") in all_types():
            raw[name.removesuffix("_variants")] = value
    variants: dict[str, dict[str, str]] = {}
    for signal_type, by_name in raw.items():
        if signal_type not in all_types() or not isinstance(by_name, dict):
            raise InvalidInput('"variants" maps a signal type to {variant name: value}')
        kind = all_types()[signal_type]
        variants[signal_type] = {}
        for variant, value in list(by_name.items())[:32]:
            if not (isinstance(variant, str) and VARIANT.match(variant)):
                raise InvalidInput(f"bad variant name {str(variant)[:40]!r}")
            hash_value = value[0] if isinstance(value, list | tuple) and value else value
            variants[signal_type][variant] = kind.normalize(hash_value)
    return variants


@lru_cache(maxsize=1024)
def _labels(labels: tuple[str, ...]) -> list[str]:
    """`validate_labels`, remembered: an import repeats the same few label sets a million times."""
    return validate_labels(labels)


@lru_cache(maxsize=256)
def _clean_source(value: Any) -> str:
    """`_clean` of a source, remembered: an import gives every line the same one."""
    return _clean("source", value)


def _clean(field_name: str, value: Any) -> str:
    try:
        return clean_text(str(value))[:2000]
    except ValueError as exc:
        raise InvalidInput(f"{field_name} {exc}") from exc


def add_entries(
    session: Session,
    bank: Bank,
    entries: Sequence[NewEntry],
    added_by: str,
    return_rows: bool = True,
) -> list[BankEntry]:
    """Insert entries, their signals and their change-feed rows in bulk: ids are reserved up
    front and rows go through the driver's executemany (PostgreSQL: COPY), so a million entries
    take seconds. Returns the new entries unless `return_rows` is False (large imports)."""
    if not entries:
        return []
    now = utcnow()
    entry_ids = _reserve_ids(session, BankEntry.__table__, len(entries))
    signals = [
        (entry_id, signal_type, variant, value)
        for entry_id, new in zip(entry_ids, entries, strict=True)
        for signal_type, variant, value in new.signal_rows()
    ]
    signal_ids = _reserve_ids(session, EntrySignal.__table__, len(signals))
    writer = _BulkWriter(session)
    writer.insert(BankEntry.__table__, _entry_rows(writer, bank, entries, entry_ids, added_by, now))
    writer.insert(
        EntrySignal.__table__,
        {"id": signal_ids, "entry_id": [s[0] for s in signals],
         "signal_type": [s[1] for s in signals], "variant": [s[2] for s in signals],
         "value": [s[3] for s in signals]},
    )  # fmt: skip
    writer.insert(
        SignalChange.__table__,
        {"signal_id": signal_ids, "op": ["add"] * len(signals),
         "signal_type": [s[1] for s in signals], "value": [s[3] for s in signals],
         "created_at": [writer.bound(SignalChange.__table__.c.created_at, now)] * len(signals)},
    )  # fmt: skip
    audit_record(
        session,
        added_by,
        "bank.entries.add",
        f"bank:{bank.name}",
        {"entries": len(entry_ids), "first": entry_ids[0], "last": entry_ids[-1]},
    )
    if not return_rows:
        return []
    rows = session.scalars(
        select(BankEntry)
        .options(selectinload(BankEntry.signals))
        .where(BankEntry.id.in_(list(entry_ids)))
        .order_by(BankEntry.id)
    ).all()
    return list(rows)


def _entry_rows(
    writer: _BulkWriter,
    bank: Bank,
    entries: Sequence[NewEntry],
    ids: Sequence[int],
    added_by: str,
    now: datetime,
) -> dict[str, list[Any]]:
    table = BankEntry.__table__
    labels: dict[tuple[str, ...], Any] = {}
    for new in entries:
        key = tuple(new.labels)
        if key not in labels:
            labels[key] = writer.bound(table.c.labels, list(key))
    n = len(entries)
    stamp = writer.bound(table.c.created_at, now)
    on, off = writer.bound(table.c.enabled, True), writer.bound(table.c.enabled, False)
    return {
        "id": list(ids),
        "bank_id": [bank.id] * n,
        "labels": [labels[tuple(new.labels)] for new in entries],
        "note": [new.note for new in entries],
        "source": [new.source for new in entries],
        "added_by": [added_by] * n,
        "content_type": [new.content_type for new in entries],
        "enabled": [on if new.enabled else off for new in entries],
        "disabled_until": [
            writer.bound(table.c.disabled_until, new.disabled_until) if new.disabled_until else None
            for new in entries
        ],
        "created_at": [stamp] * n,
        "updated_at": [stamp] * n,
    }


def _reserve_ids(session: Session, table: Table, count: int) -> Sequence[int]:
    """`count` new primary keys for `table`, taken before inserting so rows can refer to each
    other. SQLite: the write lock is held (transactions begin immediate), so max + 1 onwards is
    free; PostgreSQL: drawn from the table's sequence."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        sequence = conn.exec_driver_sql(
            f"SELECT pg_get_serial_sequence('{table.name}', 'id')"
        ).scalar_one()
        drawn = conn.exec_driver_sql(
            f"SELECT nextval('{sequence}') FROM generate_series(1, {int(count)})"
        )
        return [row[0] for row in drawn]
    start = (conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
    return range(start, start + count)


class _BulkWriter:
    """Rows straight to the driver, values already in the database's form."""

    def __init__(self, session: Session) -> None:
        self.conn = session.connection()
        self.dialect = self.conn.dialect
        self._processors: dict[Column, Any] = {}

    def bound(self, column: Column, value: Any) -> Any:
        """`value` as the driver receives it for `column` (JSON text, UTC timestamps...)."""
        if value is None:
            return None
        if self.dialect.name == "postgresql" and isinstance(column.type, JSON):
            from psycopg.types.json import Jsonb  # COPY would write a list as an array

            return Jsonb(value)
        if column not in self._processors:
            impl = column.type.dialect_impl(self.dialect)  # e.g. SQLite's own timestamp text
            self._processors[column] = impl.bind_processor(self.dialect)
        processor = self._processors[column]
        return processor(value) if processor else value

    def insert(self, table: Table, columns: dict[str, list[Any]]) -> None:
        names = list(columns)
        rows = list(zip(*columns.values(), strict=True))
        if self.dialect.name == "postgresql":
            cursor = self.conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
        for start in range(0, len(rows), _BULK):
            self.conn.exec_driver_sql(sql, rows[start : start + _BULK])


def _record_changes(session: Session, signals: Iterable[EntrySignal], op: str) -> None:
    session.add_all(
        SignalChange(signal_id=s.id, op=op, signal_type=s.signal_type, value=s.value)
        for s in signals
    )
    session.flush()


def get_entry(session: Session, bank: Bank, entry_id: int) -> BankEntry:
    entry = session.scalar(
        select(BankEntry)
        .options(selectinload(BankEntry.signals))
        .where(BankEntry.id == entry_id, BankEntry.bank_id == bank.id)
    )
    if entry is None:
        raise NotFound(f"bank {bank.name!r} has no entry {entry_id}", entry=entry_id)
    return entry


def list_entries(session: Session, bank: Bank, after: int = 0, limit: int = 100) -> list[BankEntry]:
    return list(
        session.scalars(
            select(BankEntry)
            .options(selectinload(BankEntry.signals))
            .where(BankEntry.bank_id == bank.id, BankEntry.id > after)
            .order_by(BankEntry.id)
            .limit(limit)
        )
    )


def set_entry_state(
    session: Session,
    entry: BankEntry,
    enabled: bool | None = None,
    disabled_until: datetime | None = None,
    labels: list[str] | None = None,
    note: str | None = None,
    actor: str = "system",
) -> BankEntry:
    """Enable or disable an entry (a disable may lapse at `disabled_until`); relabel; annotate."""
    if disabled_until is not None and disabled_until.tzinfo is None:
        raise InvalidInput("disabled_until must include a time zone, e.g. 2026-12-01T00:00:00Z")
    if enabled is not None:
        entry.enabled = enabled
        entry.disabled_until = None if enabled else disabled_until
    elif disabled_until is not None:
        entry.enabled, entry.disabled_until = False, disabled_until
    if labels is not None:
        entry.labels = validate_labels(labels)
    if note is not None:
        entry.note = note
    session.flush()
    changes = {"enabled": enabled, "disabled_until": disabled_until, "labels": labels, "note": note}
    audit_record(
        session,
        actor,
        "bank.entry.update",
        f"bank_entry:{entry.id}",
        {k: v for k, v in changes.items() if v is not None},
    )
    return entry


def delete_entry(session: Session, entry: BankEntry, actor: str = "system") -> None:
    _record_changes(session, entry.signals, "remove")
    audit_record(session, actor, "bank.entry.delete", f"bank_entry:{entry.id}", {})
    session.delete(entry)
    session.flush()


def entry_to_dict(entry: BankEntry, bank_name: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "bank": bank_name,
        "labels": entry.labels,
        "enabled": entry.enabled,
        "disabled_until": entry.disabled_until.isoformat() if entry.disabled_until else None,
        "content_type": entry.content_type,
        "signals": {s.signal_type: s.value for s in entry.signals if s.variant == "original"},
        "variants": _variants_of(entry),
        "provenance": {
            "added_by": entry.added_by,
            "source": entry.source,
            "note": entry.note,
            "created_at": entry.created_at.isoformat(),
        },
    }


def _variants_of(entry: BankEntry) -> dict[str, dict[str, str]]:
    variants: dict[str, dict[str, str]] = {}
    for s in entry.signals:
        if s.variant != "original":
            variants.setdefault(s.signal_type, {})[s.variant] = s.value
    return variants


def bank_to_dict(bank: Bank, entry_count: int | None = None) -> dict[str, Any]:
    body = {
        "name": bank.name,
        "description": bank.description,
        "kind": bank.kind,
        "labels": bank.labels,
        "pdq_threshold": bank.pdq_threshold,
        "vpdq_query_match_pct": bank.vpdq_query_match_pct,
        "vpdq_bank_match_pct": bank.vpdq_bank_match_pct,
        "match_dihedral": bank.match_dihedral,
        "match_trimmed": bank.match_trimmed,
        "match_crops": bank.match_crops,
        "match_overlays": bank.match_overlays,
        "text_near_threshold": bank.text_near_threshold,
        "logo_threshold": bank.logo_threshold,
        "enabled": bank.enabled,
        "shared": bank.shared,
        "source": bank.source,
        "created_at": bank.created_at.isoformat(),
        "updated_at": bank.updated_at.isoformat(),
    }
    if entry_count is not None:
        body["entries"] = entry_count
    return body


# --- NDJSON import/export -------------------------------------------------------------------

ENTRY_KEYS = {
    "signals",
    "variants",
    "labels",
    "note",
    "enabled",
    "disabled_until",
    "content_type",
    "provenance",
}


@dataclass
class ImportReport:
    added: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "skipped": self.skipped, "errors": self.errors[:100]}


def parse_ndjson_entry(line: str, source: str) -> NewEntry | None:
    """One NDJSON line -> NewEntry; header lines return None; errors raise InvalidInput."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(record, dict):
        raise InvalidInput("each line must be a JSON object")
    if "format" in record:
        if record["format"] != NDJSON_FORMAT:
            raise InvalidInput(f"unsupported format {record['format']!r}; expected {NDJSON_FORMAT}")
        return None
    if not ENTRY_KEYS.issuperset(record):
        raise InvalidInput("unknown fields", unknown=sorted(set(record) - ENTRY_KEYS))
    signals = record.get("signals")
    if not isinstance(signals, dict) or not all(isinstance(v, str) for v in signals.values()):
        raise InvalidInput('"signals" must be an object of signal type -> string value')
    provenance = record.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise InvalidInput('"provenance" must be an object')
    disabled_until = record.get("disabled_until")
    return NewEntry.validated(
        signals,
        labels=_string_list(record.get("labels", [])),
        note=str(record.get("note") or provenance.get("note") or ""),
        source=str(provenance.get("source") or source),
        content_type=record.get("content_type"),
        enabled=bool(record.get("enabled", True)),
        disabled_until=_parse_time(disabled_until) if disabled_until else None,
        variants=record.get("variants"),
    )


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput('"labels" must be a list of strings')
    return value


def _parse_time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidInput(f"time {value!r} needs a time zone")
    return parsed


Progress = Callable[[int], None]


def validate_lines(
    lines: Iterable[str],
    parse: Callable[[str, str], NewEntry | None],
    source: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> tuple[list[NewEntry], ImportReport]:
    """Parse and validate every line before anything is written; unless `skip_invalid`, one
    bad line rejects the whole file (each bad line is named by its number). `progress` is
    called with the count of lines read, every 10,000 lines."""
    report, valid = ImportReport(), []
    number = 0
    for number, line in enumerate(lines, start=1):
        if progress is not None and number % 10_000 == 0:
            progress(number)
        if not line.strip():
            continue
        try:
            entry = parse(line, source)
        except InvalidInput as exc:
            report.errors.append({"line": number, "message": exc.message, **exc.detail})
            continue
        if entry is not None:
            valid.append(entry)
    if progress is not None:
        progress(number)
    if report.errors and not skip_invalid:
        raise InvalidInput(
            f"{len(report.errors)} invalid line(s); nothing was imported "
            "(fix them, or skip them with --skip-invalid / skip_invalid=true)",
            errors=report.errors[:100],
        )
    report.added, report.skipped = len(valid), len(report.errors)
    return valid, report


def write_import(
    session: Session,
    bank: Bank,
    valid: Sequence[NewEntry],
    report: ImportReport,
    added_by: str,
    source: str,
) -> ImportReport:
    """Store validated entries in the caller's transaction (all of them or, on error, none)."""
    add_entries(session, bank, valid, added_by, return_rows=False)
    audit_record(
        session,
        added_by,
        "bank.import",
        f"bank:{bank.name}",
        {"added": report.added, "skipped": report.skipped, "source": source},
    )
    return report


def import_lines(
    session: Session,
    bank: Bank,
    lines: Iterable[str],
    parse: Callable[[str, str], NewEntry | None],
    added_by: str,
    source: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate every line, then store them all in the caller's transaction."""
    valid, report = validate_lines(lines, parse, source, skip_invalid, progress)
    return write_import(session, bank, valid, report, added_by, source)


def parse_hma_csv_row(line: str, source: str) -> NewEntry | None:
    """HMA-style `signal_type,signal_value[,note]` rows; a header row is skipped."""
    cells = [cell.strip() for cell in line.rstrip("\r\n").split(",", 2)]
    if cells[0].lower() in ("signal_type", "type"):
        return None
    if len(cells) < 2:
        raise InvalidInput("expected signal_type,signal_value[,note]")
    note = cells[2] if len(cells) > 2 else ""
    return NewEntry.validated({cells[0].lower(): cells[1]}, note=note, source=source)


PARSERS = {"ndjson": parse_ndjson_entry, "hma-csv": parse_hma_csv_row}


def export_ndjson(session: Session, bank: Bank) -> Iterator[str]:
    header = {"format": NDJSON_FORMAT, "bank": bank_to_dict(bank)}
    yield json.dumps(header, sort_keys=True) + "\n"
    after = 0
    while batch := list_entries(session, bank, after=after, limit=1000):
        for entry in batch:
            record = entry_to_dict(entry, bank.name)
            del record["id"], record["bank"]
            yield json.dumps(record, sort_keys=True) + "\n"
        after = batch[-1].id
