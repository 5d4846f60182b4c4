"""Test vectors for the franking protocol, made by the library from fixed keys, nonces and ids.

`python -m tests.franking.vectors` rewrites tests/franking/vectors.json; the tests check that
the file reproduces byte for byte and recompute each value from the primitives directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prescreen.franking import protocol
from prescreen.franking.client import ExampleE2EE, Sender, encrypt_attachment, frank

PATH = Path(__file__).with_name("vectors.json")


def _bytes(seed: int, n: int) -> bytes:
    """Fixed, recognisable key material: seed, seed+1, ... mod 256."""
    return bytes((seed + i) % 256 for i in range(n))


CASES: list[dict[str, Any]] = [
    {
        "name": "text message",
        "message_id": _bytes(0x10, 16),
        "sender_id": "alice",
        "conversation_id": "room-42",
        "client_ts_ms": 1_767_225_600_000,
        "content_type": "text/plain",
        "content": "Meet at the usual place. \u00e9\u00e8 \U0001f600",
        "attachments": [],
        "franking_key": _bytes(0x20, 32),
        "session_key": _bytes(0x40, 32),
        "e2ee_nonce": _bytes(0x60, 12),
        "header": b"to:bob",
        "platform_key": _bytes(0x80, 32),
        "signing_seed": _bytes(0xA0, 32),
        "key_id": 1,
        "server_ts_ms": 1_767_225_600_123,
    },
    {
        "name": "message with an attachment",
        "message_id": _bytes(0x11, 16),
        "sender_id": "user:7f3a",
        "conversation_id": "group/\u00fcber",
        "client_ts_ms": 1_767_312_000_000,
        "content_type": "text/plain",
        "content": "",
        "attachments": [
            {
                "plaintext": b"\x89PNG\r\n\x1a\n not really an image, but bytes all the same",
                "mime": "image/png",
                "locator": "cdn://blobs/0001",
                "file_key": _bytes(0xC0, 32),
                "nonce": _bytes(0xE0, 12),
            }
        ],
        "franking_key": _bytes(0x21, 32),
        "session_key": _bytes(0x41, 32),
        "e2ee_nonce": _bytes(0x61, 12),
        "header": b"",
        "platform_key": _bytes(0x81, 32),
        "signing_seed": _bytes(0xA1, 32),
        "key_id": 7,
        "server_ts_ms": 1_767_312_000_999,
    },
]


def _hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_hex(v) for v in value]
    if isinstance(value, dict):
        return {k: _hex(v) for k, v in value.items()}
    return value


def make_case(case: dict[str, Any]) -> dict[str, Any]:
    refs, blobs = [], []
    for a in case["attachments"]:
        ref, blob = encrypt_attachment(
            a["plaintext"], a["mime"], a["locator"], file_key=a["file_key"], nonce=a["nonce"]
        )
        refs.append(ref)
        blobs.append(blob)
    body = Sender(case["sender_id"]).body(
        case["conversation_id"],
        case["content"],
        refs,
        content_type=case["content_type"],
        message_id=case["message_id"],
        client_ts_ms=case["client_ts_ms"],
    )
    franked = frank(body, case["franking_key"])
    envelope = ExampleE2EE(case["session_key"]).seal(
        franked, case["header"], nonce=case["e2ee_nonce"]
    )
    context = protocol.StampContext(
        case["key_id"], case["sender_id"], case["conversation_id"], case["server_ts_ms"]
    ).encode()
    stamp = protocol.stamp_mac(case["platform_key"], franked.tag, context)
    return {
        "name": case["name"],
        "inputs": _hex({k: v for k, v in case.items() if k != "name"}),
        "outputs": {
            "attachment_sha256": [ref.sha256.hex() for ref in refs],
            "attachment_blobs": [blob.hex() for blob in blobs],
            "body": franked.body.hex(),
            "tag": franked.tag.hex(),
            "e2ee_associated_data": protocol.e2ee_associated_data(
                case["header"], franked.tag
            ).hex(),
            "e2ee_ciphertext": envelope.ciphertext.hex(),
            "context": context.hex(),
            "stamp": stamp.hex(),
            "public_key": protocol.public_key_of(case["signing_seed"]).hex(),
            "signature": protocol.sign_stamp(case["signing_seed"], stamp, context).hex(),
        },
    }


def generate() -> dict[str, Any]:
    return {
        "protocol": "prescreen message franking v1 (docs/franking.md)",
        "encoding": "all byte strings are lowercase hex; text is UTF-8",
        "labels": {
            "frank": protocol.LABEL_FRANK.decode(),
            "stamp": protocol.LABEL_STAMP.decode(),
            "signature": protocol.LABEL_SIGNATURE.decode(),
            "e2ee_ad": protocol.LABEL_E2EE_AD.decode(),
            "attachment_ad": protocol.LABEL_ATTACHMENT.decode(),
        },
        "cases": [make_case(case) for case in CASES],
    }


def render() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {PATH}\n")
