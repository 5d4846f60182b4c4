"""Import and export of the lists platforms receive: HMA bank CSV and JSON, ThreatExchange
signal files (text and JSON), and prescreen's NDJSON. Every parser turns one record into a
`NewEntry`, so imports go through the banks service (all-or-nothing, audited, indexed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.orm import Session

from prescreen.banks import service as banks
from prescreen.banks.models import Bank
from prescreen.core.errors import InvalidInput

# ThreatExchange indicator types -> prescreen signal types (and the content they hash).
TE_TYPES = {
    "HASH_PDQ": ("pdq", "photo"),
    "HASH_MD5": ("md5", None),
    "HASH_SHA256": ("sha256", None),
    "HASH_VIDEO_MD5": ("md5", "video"),
    "VIDEO_MD5": ("md5", "video"),
    "URI": ("url", "url"),
}
# Signal type names as HMA and python-threatexchange spell them.
SIGNAL_ALIASES = {"video_md5": "md5", "photo_md5": "md5", "pdq_ocr": "pdq", "url_md5": None}
NOT_A_LABEL = re.compile(r"[^a-z0-9_.:-]+")
TE_NOT_VIOLATING = {"NON_MALICIOUS", "FALSE_POSITIVE", "BENIGN"}


def _signal_type(name: str) -> str:
    name = name.strip().lower()
    mapped = SIGNAL_ALIASES.get(name, name)
    if mapped is None:
        raise InvalidInput(f"signal type {name!r} cannot be imported")
    return mapped


def _labels(tags: Any) -> list[str]:
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list):
        return []
    cleaned = (NOT_A_LABEL.sub("_", str(t).strip().lower()).strip("_.:-") for t in tags)
    return [t[:64] for t in cleaned if t]


def _json_record(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc


def parse_hma_csv(line: str, source: str) -> banks.NewEntry | None:
    """HMA's signal CSV, `signal_type,signal_value[,note]`, with HMA's type names."""
    cells = [cell.strip() for cell in line.rstrip("\r\n").split(",", 2)]
    if cells[0].lower() in ("signal_type", "type"):
        return None
    if len(cells) < 2:
        raise InvalidInput("expected signal_type,signal_value[,note]")
    note = cells[2] if len(cells) > 2 else ""
    return _entry(cells[0], cells[1], source, note=note)


def _entry(hma_type: str, value: str, source: str, **fields: Any) -> banks.NewEntry:
    """One signal under HMA's or python-threatexchange's type name (video_md5: a video's MD5)."""
    video = hma_type.strip().lower() == "video_md5"
    if video:
        fields.setdefault("content_type", "video")
    return banks.NewEntry.validated({_signal_type(hma_type): value}, source=source, **fields)


def parse_hma_json(line: str, source: str) -> banks.NewEntry | None:
    """HMA's shapes: a bank content object (`{"signals": {...}, "note", "metadata", ...}`, as
    GET /c/bank/B/content/N?include_signals=true returns) or a signal body (`{"pdq": hex}`)."""
    record = _json_record(line)
    if not isinstance(record, dict):
        raise InvalidInput("each record is a JSON object")
    signals = record.get("signals")
    if not isinstance(signals, dict):
        signals = {k: v for k, v in record.items() if k not in ("note", "metadata", "id", "bank")}
    note = str(record.get("note") or "")
    enabled = record.get("disable_until_ts") != 0
    if len(signals) == 1:
        ((hma_type, value),) = signals.items()
        return _entry(str(hma_type), str(value), source, note=note, enabled=enabled)
    return banks.NewEntry.validated(
        {_signal_type(k): str(v) for k, v in signals.items()},
        note=note,
        source=source,
        enabled=enabled,
    )


def parse_te_json(line: str, source: str) -> banks.NewEntry | None:
    """A ThreatExchange threat descriptor: `raw_indicator`, `type`, `tags`, `status`.
    Descriptors marked non-malicious are skipped (import them into an allow bank instead)."""
    record = _json_record(line)
    if not isinstance(record, dict) or "raw_indicator" not in record:
        raise InvalidInput('a ThreatExchange descriptor has "raw_indicator" and "type"')
    kind = str(record.get("type") or "").upper()
    if kind not in TE_TYPES:
        raise InvalidInput(f"unsupported ThreatExchange type {kind!r}", known=sorted(TE_TYPES))
    if str(record.get("status") or "").upper() in TE_NOT_VIOLATING:
        return None
    signal_type, content_type = TE_TYPES[kind]
    tags = record.get("tags")
    if isinstance(tags, dict):  # the Graph API's {"data": [{"text": ...}]}
        tags = [t.get("text", "") for t in tags.get("data", []) if isinstance(t, dict)]
    note = f"threatexchange:{record['id']}" if record.get("id") else ""
    return banks.NewEntry.validated(
        {signal_type: str(record["raw_indicator"])},
        labels=_labels(tags),
        note=note,
        source=source,
        content_type=content_type,
    )


def parse_te_signals(line: str, source: str) -> banks.NewEntry | None:
    """python-threatexchange's signal files: `<signal_type> <value> [tag,tag...]`; `#` comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    cells = text.split(None, 2)
    if len(cells) < 2:
        raise InvalidInput("expected: signal_type value [tags]")
    labels = _labels(cells[2]) if len(cells) > 2 else []
    return _entry(cells[0], cells[1], source, labels=labels)


def _json_document_lines(text: str, key: str | None = None) -> list[str]:
    """A JSON array (or `{key: [...]}`) as one line per record; NDJSON passes through."""
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        return text.splitlines()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return text.splitlines()  # NDJSON: each line parsed on its own
    if isinstance(document, dict) and key and isinstance(document.get(key), list):
        document = document[key]
    if isinstance(document, list):
        return [json.dumps(record) for record in document]
    return [json.dumps(document)]


FORMATS: dict[str, tuple[Callable[[str, str], banks.NewEntry | None], Callable]] = {
    "ndjson": (banks.parse_ndjson_entry, str.splitlines),
    "hma-csv": (parse_hma_csv, str.splitlines),
    "hma-json": (parse_hma_json, _json_document_lines),
    "te-json": (parse_te_json, lambda text: _json_document_lines(text, "data")),
    "te-signals": (parse_te_signals, str.splitlines),
}


def import_text(
    session: Session,
    bank: Bank,
    text: str,
    fmt: str,
    actor: str,
    skip_invalid: bool = False,
) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}", formats=sorted(FORMATS))
    parse, split = FORMATS[fmt]
    report = banks.import_lines(
        session,
        bank,
        split(text),
        parse,
        added_by=actor,
        source=f"import:{fmt}",
        skip_invalid=skip_invalid,
    )
    return {"format": fmt, **report.to_dict()}


EXPORT_FORMATS = ("ndjson", "hma-csv", "te-signals")


def _export_name(signal_type: str, content_type: str | None) -> str:
    return "video_md5" if (signal_type, content_type) == ("md5", "video") else signal_type


def export_lines(session: Session, bank: Bank, fmt: str) -> Iterator[str]:
    """A bank in one of EXPORT_FORMATS (disabled entries are left out of the flat formats)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}", formats=list(EXPORT_FORMATS))
    if fmt == "ndjson":
        yield from banks.export_ndjson(session, bank)
        return
    if fmt == "hma-csv":
        yield "signal_type,signal_value,note\n"
    after = 0
    while batch := banks.list_entries(session, bank, after=after, limit=1000):
        for entry in batch:
            if not entry.enabled:
                continue
            for s in entry.signals:
                if s.variant != "original":
                    continue
                name = (
                    "video_md5"
                    if (s.signal_type, entry.content_type) == ("md5", "video")
                    else s.signal_type
                )
                if fmt == "hma-csv":
                    note = entry.note.replace("\n", " ").replace(",", ";")
                    yield f"{name},{s.value},{note}\n"
                else:
                    tags = ",".join(entry.labels or bank.labels or [])
                    yield f"{name} {s.value} {tags}".rstrip() + "\n"
        after = batch[-1].id
