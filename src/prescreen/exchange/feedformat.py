"""The feed's wire format and its verification, free of database and configuration so a peer
(or anyone) can check a page with nothing but the publisher's public key.

An item is `{"body", "hash", "key_id", "signature"}`: `hash` is the SHA-256 of the body's
canonical JSON, and the body carries the bank, its sequence number and the hash of the item
before (`prev`), so the feed is a hash chain. The Ed25519 signature covers
`prescreen-feed-item/1\\n` + the canonical body. Each page also carries a signed head (the
feed's latest sequence number and hash) and the chain of identity keys: a new key is endorsed
by the key it replaces, so a follower that trusts the first key learns the next.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from prescreen.audit.logformat import canonical_json

FEED_FORMAT = "prescreen-feed/1"
ITEM_CONTEXT = b"prescreen-feed-item/1\n"
HEAD_CONTEXT = b"prescreen-feed-head/1\n"
ENDORSE_CONTEXT = b"prescreen-key-endorsement/1\n"
OPS = ("add", "remove", "opinion")


class FeedRejected(Exception):
    """A page that must not be applied: `reason` is stable, `detail` says what was expected."""

    def __init__(self, reason: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason, self.message, self.detail = reason, message, detail


def canonical(value: Any) -> bytes:
    return canonical_json(value).encode()


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_key_b64: str) -> str:
    """A key's id: the first 32 hex digits of the SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(decode_public_key(public_key_b64)).hexdigest()[:32]


def decode_public_key(public_key_b64: str) -> bytes:
    try:
        raw = base64.b64decode(public_key_b64.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError("a public key is the base64 of its 32 raw bytes") from exc
    if len(raw) != 32:
        raise ValueError("a public key is the base64 of its 32 raw bytes")
    return raw


def sign(key: Ed25519PrivateKey, context: bytes, value: Any) -> str:
    return base64.b64encode(key.sign(context + canonical(value))).decode()


def verify(public_key_b64: str, context: bytes, value: Any, signature: Any) -> bool:
    try:
        public = Ed25519PublicKey.from_public_bytes(decode_public_key(public_key_b64))
        public.verify(base64.b64decode(str(signature), validate=True), context + canonical(value))
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False


def sign_item(key: Ed25519PrivateKey, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "body": body,
        "hash": body_hash(body),
        "key_id": key_id,
        "signature": sign(key, ITEM_CONTEXT, body),
    }


def head_fields(bank: str, seq: int, item_hash: str, time: str) -> dict[str, Any]:
    return {"bank": bank, "seq": seq, "hash": item_hash, "time": time}


def endorsement_fields(key_id: str, public_key: str) -> dict[str, str]:
    return {"key_id": key_id, "public_key": public_key}


@dataclass
class VerifiedPage:
    """A page that checked out: its items in order, and keys learnt from signed rotations."""

    items: list[dict[str, Any]]
    learnt_keys: dict[str, str] = field(default_factory=dict)
    head_seq: int = 0
    next_after: int | None = None


def verify_page(
    page: Any, bank: str, cursor_seq: int, cursor_hash: str, keys: dict[str, str]
) -> VerifiedPage:
    """Check a whole page against what was applied before (`cursor_seq`, `cursor_hash`) and the
    keys trusted for this peer; raise FeedRejected at the first problem."""
    if not isinstance(page, dict) or page.get("format") != FEED_FORMAT:
        raise FeedRejected("malformed", f"not a {FEED_FORMAT} page")
    if page.get("bank") != bank:
        raise FeedRejected("malformed", "the page is for another bank", bank=page.get("bank"))
    items, head = page.get("items"), page.get("head")
    if not isinstance(items, list) or not isinstance(head, dict):
        raise FeedRejected("malformed", "a page has a list of items and a head")
    known = dict(keys)
    learnt = _learn_keys(page.get("keys") or [], known)
    _verify_head(head, bank, cursor_seq, cursor_hash, known)
    expected_seq, prev = cursor_seq + 1, cursor_hash
    for item in items:
        _verify_item(item, bank, expected_seq, prev, known)
        expected_seq, prev = expected_seq + 1, item["hash"]
    last_seq = expected_seq - 1
    if last_seq > head["seq"] or (last_seq == head["seq"] and prev != head["hash"]):
        raise FeedRejected(
            "history_rewritten", "the items do not lead to the signed head", head=head["seq"]
        )
    if not items and head["seq"] > cursor_seq:
        raise FeedRejected(
            "history_skipped", "the head is ahead but the page has no items", head=head["seq"]
        )
    next_after = page.get("next_after")
    return VerifiedPage(
        items=items,
        learnt_keys=learnt,
        head_seq=head["seq"],
        next_after=next_after if isinstance(next_after, int) else None,
    )


def _learn_keys(offered: Any, known: dict[str, str]) -> dict[str, str]:
    """Accept offered keys endorsed by a key already trusted (rotations, in any order)."""
    learnt: dict[str, str] = {}
    pending = [k for k in offered if isinstance(k, dict)] if isinstance(offered, list) else []
    progress = True
    while progress:
        progress = False
        for key in list(pending):
            key_id, public = key.get("key_id"), key.get("public_key")
            endorser = key.get("endorsed_by")
            if key_id in known or not isinstance(public, str) or endorser not in known:
                continue
            try:
                if key_id_of(public) != key_id:
                    continue
            except ValueError:
                continue
            fields = endorsement_fields(key_id, public)
            if verify(known[endorser], ENDORSE_CONTEXT, fields, key.get("endorsement")):
                known[key_id] = learnt[key_id] = public
                pending.remove(key)
                progress = True
    return learnt


def _check_signature(signed: dict[str, Any], value: Any, context: bytes, known: dict) -> None:
    key_id = signed.get("key_id")
    if key_id not in known:
        raise FeedRejected(
            "unknown_key", "signed by a key this peer is not trusted with", key_id=str(key_id)
        )
    if not verify(known[key_id], context, value, signed.get("signature")):
        raise FeedRejected("bad_signature", "a signature does not verify", key_id=key_id)


def _verify_head(
    head: dict[str, Any], bank: str, cursor_seq: int, cursor_hash: str, known: dict
) -> None:
    seq, item_hash, time = head.get("seq"), head.get("hash"), head.get("time")
    if not (isinstance(seq, int) and isinstance(item_hash, str) and isinstance(time, str)):
        raise FeedRejected("malformed", "the head has seq, hash and time")
    _check_signature(head, head_fields(bank, seq, item_hash, time), HEAD_CONTEXT, known)
    if seq < cursor_seq or (seq == cursor_seq and item_hash != cursor_hash):
        raise FeedRejected(
            "history_rewritten",
            "the feed's signed head contradicts what was already applied",
            head=seq,
            applied=cursor_seq,
        )


def _verify_item(item: Any, bank: str, expected_seq: int, prev: str, known: dict) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
        raise FeedRejected("malformed", "an item has a body")
    body = item["body"]
    seq = body.get("seq")
    if body.get("bank") != bank or body.get("op") not in OPS or not isinstance(seq, int):
        raise FeedRejected("malformed", "an item names its bank, op and seq", seq=seq)
    if body_hash(body) != item.get("hash"):
        raise FeedRejected("bad_signature", "an item does not match its hash", seq=seq)
    _check_signature(item, body, ITEM_CONTEXT, known)
    if seq > expected_seq:
        raise FeedRejected("history_skipped", "items are missing", expected=expected_seq, got=seq)
    if seq < expected_seq or body.get("prev") != prev:
        raise FeedRejected(
            "history_rewritten",
            "an item does not follow the one applied before it",
            expected=expected_seq,
            got=seq,
        )
