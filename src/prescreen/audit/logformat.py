"""The audit log's wire formats: how an entry becomes leaf bytes, how tree heads and entries are
signed, and the lines of an export. Shared by the service and the offline verifier, and free of
any database or configuration, so an auditor can reimplement or run it anywhere.

Leaf data is the canonical JSON (keys sorted, no spaces, non-ASCII escaped as \\uXXXX) of
`{"v": 1, "index", "time", "actor", "action", "target", "details"}`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from prescreen.audit import merkle

EXPORT_FORMAT = "prescreen-audit/1"
ENTRY_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
ENTRY_FIELDS = ("index", "time", "actor", "action", "target", "details")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot record a {type(value).__name__} in the audit log")


def canonical_json(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=_plain,
        allow_nan=False,
    )


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def entry_leaf_data(entry: dict[str, Any]) -> bytes:
    """The leaf bytes of an entry given as a dict with ENTRY_FIELDS (details as an object)."""
    body = {field: entry[field] for field in ENTRY_FIELDS}
    body["v"] = ENTRY_VERSION
    return canonical_json(body).encode("ascii")


def entry_leaf_hash(entry: dict[str, Any]) -> bytes:
    return merkle.leaf_hash(entry_leaf_data(entry))


def key_id(public_key: bytes) -> str:
    """A public key's id: the hex SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(public_key).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def head_message(head: dict[str, Any]) -> bytes:
    return merkle.tree_head_message(
        int(head["timestamp"]), int(head["tree_size"]), bytes.fromhex(head["root_hash"])
    )


def verify_head(public_key: bytes, head: dict[str, Any]) -> bool:
    try:
        return verify_signature(public_key, unb64(head["signature"]), head_message(head))
    except (KeyError, ValueError, TypeError):
        return False
