"""Offline verification of an audit log export, with no database and no trust in the operator.

Given the export (NDJSON: a header, the entries, the signed tree heads), any further tree heads
collected elsewhere (from witnesses, or earlier exports) and the log's public key, check that:

1. entries are numbered 0, 1, 2 ... with none missing, repeated or out of place;
2. each entry's contents hash to its leaf hash, and carry a valid signature once a tree head
   covers them (an entry changed, inserted or moved in the database fails here, by name);
3. every tree head's signature is valid and its root is the root of that many entries;
4. heads of the same size agree, and no head is larger than the export (a truncated log).

The first bad entry is named; when only a tree head can tell (the leaf hashes were rewritten
too), the verifier names the range between the last head that matches and the first that fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prescreen.audit import merkle
from prescreen.audit.logformat import (
    ENTRY_FIELDS,
    EXPORT_FORMAT,
    entry_leaf_hash,
    key_id,
    unb64,
    verify_head,
    verify_signature,
)


@dataclass
class Problem:
    kind: str
    message: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "message": self.message}


@dataclass
class Report:
    entries: int = 0
    heads: int = 0
    covered: int = 0  # entries covered by a valid signed tree head
    key_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_entry(self) -> int | None:
        indexes = [p.index for p in self.problems if p.index is not None]
        return min(indexes) if indexes else None

    @property
    def first_problem(self) -> Problem | None:
        if not self.problems:
            return None
        bad = self.first_bad_entry
        return next((p for p in self.problems if p.index == bad), self.problems[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "tree_heads": self.heads,
            "covered_by_tree_heads": self.covered,
            "key_id": self.key_id,
            "first_bad_entry": self.first_bad_entry,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": self.warnings,
        }


class ExportError(ValueError):
    """The export cannot be read at all."""


def parse_export(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict], list[dict]]:
    header: dict[str, Any] = {}
    entries: list[dict] = []
    heads: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExportError(f"line {number} is not JSON: {exc.msg}") from exc
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "header":
            header = record
        elif kind == "entry":
            record["_line"] = number
            entries.append(record)
        elif kind == "tree_head":
            heads.append(record)
        else:
            raise ExportError(f"line {number} is not a header, entry or tree_head record")
    if header and header.get("format") != EXPORT_FORMAT:
        raise ExportError(f"unsupported export format {header.get('format')!r}")
    return header, entries, heads


def parse_heads(lines: Iterable[str]) -> list[dict]:
    """Tree heads from a file: a JSON list, one JSON object, or NDJSON (export lines welcome)."""
    text = "".join(lines).strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    items = parsed if isinstance(parsed, list) else [parsed]
    heads = []
    for item in items:
        if isinstance(item, dict) and "tree_head" in item and isinstance(item["tree_head"], dict):
            item = item["tree_head"]
        if isinstance(item, dict) and {"tree_size", "root_hash", "signature"} <= set(item):
            heads.append(item)
    return heads


def _leaf(entry: dict) -> bytes | None:
    try:
        return entry_leaf_hash({name: entry[name] for name in ENTRY_FIELDS})
    except (KeyError, TypeError, ValueError):
        return None


def verify_export(
    lines: Iterable[str],
    extra_heads: Iterable[dict] = (),
    public_key: bytes | None = None,
) -> Report:
    header, entries, heads = parse_export(lines)
    report = Report(entries=len(entries))
    if public_key is None:
        if "public_key" not in header:
            raise ExportError("no public key: give one, or an export with its header")
        public_key = unb64(header["public_key"])
        report.warnings.append(
            "the public key was taken from the export itself; pin the key you obtained from "
            "the operator out of band with --public-key"
        )
    elif header.get("public_key") and unb64(header["public_key"]) != public_key:
        report.warnings.append("the export names a different public key than the pinned one")
    report.key_id = key_id(public_key)

    all_heads = [*heads, *extra_heads]
    valid_heads: list[dict] = []
    for head in all_heads:
        if verify_head(public_key, head):
            valid_heads.append(head)
        else:
            report.problems.append(
                Problem(
                    "bad_tree_head_signature",
                    f"the tree head of size {head.get('tree_size')} (timestamp "
                    f"{head.get('timestamp')}) does not carry a valid signature of this key",
                )
            )
    report.heads = len(valid_heads)
    covered = max((int(h["tree_size"]) for h in valid_heads), default=0)

    # 1 and 2: numbering, contents against leaf hashes, entry signatures.
    leaves: list[bytes] = []
    position, numbered = 0, True
    for entry in entries:
        index = entry.get("index")
        if not isinstance(index, int):
            report.problems.append(
                Problem("malformed", f"line {entry['_line']}: entry without an index", position)
            )
            numbered = False
            break
        if index > position:
            missing = f"{position}" if index == position + 1 else f"{position} to {index - 1}"
            before = f"from entry {position - 1}" if position else "from the start"
            report.problems.append(
                Problem(
                    "missing",
                    f"entry {missing} is missing: the export goes {before} to entry {index} "
                    "(deleted)",
                    position,
                )
            )
            numbered = False
            break
        if index < position:
            report.problems.append(
                Problem(
                    "out_of_order",
                    f"entry {position}: found entry {index} again at line {entry['_line']} "
                    "(inserted or reordered)",
                    position,
                )
            )
            numbered = False
            break
        leaf = _leaf(entry)
        if leaf is None:
            report.problems.append(
                Problem("malformed", f"entry {index} lacks fields to compute its leaf", index)
            )
            numbered = False
            break
        claimed = entry.get("leaf_hash")
        if claimed is not None and claimed != leaf.hex():
            report.problems.append(
                Problem(
                    "altered",
                    f"entry {index}: its contents do not hash to its recorded leaf hash "
                    "(altered, or inserted by hand)",
                    index,
                )
            )
        signature = entry.get("signature")
        if signature:
            try:
                good = verify_signature(
                    public_key, unb64(signature), merkle.entry_signature_message(leaf)
                )
            except ValueError:
                good = False
            if not good:
                report.problems.append(
                    Problem(
                        "bad_entry_signature",
                        f"entry {index}: its signature does not match its contents (altered, "
                        "moved or inserted)",
                        index,
                    )
                )
        elif index < covered:
            report.problems.append(
                Problem(
                    "unsigned",
                    f"entry {index} has no signature although a signed tree head covers it "
                    "(inserted, or altered before it was signed)",
                    index,
                )
            )
        leaves.append(leaf)
        position += 1  # noqa: SIM113 (stops at the first numbering problem)

    # 3 and 4: every valid head against the entries as exported.
    frontier: list[bytes] = []
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    for size, leaf in enumerate(leaves, start=1):
        frontier = merkle.frontier_append(frontier, size - 1, leaf)
        roots[size] = merkle.frontier_root(frontier)
    seen: dict[int, str] = {}
    good_sizes = [0]
    for head in sorted(valid_heads, key=lambda h: (int(h["tree_size"]), int(h["timestamp"]))):
        size = int(head["tree_size"])
        if size in seen and seen[size] != head["root_hash"]:
            report.problems.append(
                Problem(
                    "fork",
                    f"two signed tree heads of size {size} have different roots: the log was "
                    "rewritten after it was signed",
                    max(size - 1, 0),
                )
            )
        seen.setdefault(size, head["root_hash"])
        if size > len(leaves):
            if numbered:  # no earlier problem explains the shortfall
                report.problems.append(
                    Problem(
                        "truncated",
                        f"entry {len(leaves)} is missing: a signed tree head covers {size} "
                        f"entries but the export has {len(leaves)} (deleted)",
                        len(leaves),
                    )
                )
            continue
        if roots[size].hex() == head["root_hash"]:
            good_sizes.append(size)
            continue
        last_good = max(s for s in good_sizes if s <= size)
        named = any(
            p.index is not None and last_good <= p.index < size for p in report.problems
        )  # an entry in the range already explains the mismatch
        report.problems.append(
            Problem(
                "root_mismatch",
                f"the signed tree head of size {size} does not match entries 0 to {size - 1}: "
                f"the first changed entry is between entry {last_good} and entry {size - 1} "
                f"(the head of size {last_good} still matches)",
                None if named else last_good,
            )
        )
    report.covered = max(good_sizes)
    if len(leaves) > covered:
        report.warnings.append(
            f"entries {covered} to {len(leaves) - 1} are not yet covered by a signed tree head"
        )
    return report
