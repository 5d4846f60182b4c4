"""The published test vectors reproduce byte for byte, and agree with the primitives computed
directly (stdlib HMAC and SHA-256, raw ChaCha20-Poly1305 and Ed25519), not via the library."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from tests.franking.vectors import PATH, render

from prescreen.franking import MessageBody, StampContext
from prescreen.franking.client import FrankedMessage, Stamp, verify_received

VECTORS = json.loads(PATH.read_text(encoding="utf-8"))
CASES = VECTORS["cases"]


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def test_the_file_reproduces_byte_for_byte() -> None:
    assert PATH.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_value_from_the_primitives(case) -> None:
    i = {
        k: bytes.fromhex(v) if isinstance(v, str) and k not in _TEXT else v
        for k, v in case["inputs"].items()
    }
    out = {k: bytes.fromhex(v) if isinstance(v, str) else v for k, v in case["outputs"].items()}
    refs = b""
    for n, a in enumerate(case["inputs"]["attachments"]):
        plaintext, file_key, nonce = (
            bytes.fromhex(a[k]) for k in ("plaintext", "file_key", "nonce")
        )
        digest = hashlib.sha256(plaintext).digest()
        assert digest.hex() == case["outputs"]["attachment_sha256"][n]
        blob = nonce + ChaCha20Poly1305(file_key).encrypt(
            nonce, plaintext, VECTORS["labels"]["attachment_ad"].encode()
        )
        assert blob.hex() == case["outputs"]["attachment_blobs"][n]
        refs += (
            digest
            + struct.pack(">Q", len(plaintext))
            + _lp(a["mime"].encode())
            + _lp(file_key)
            + _lp(a["locator"].encode())
        )
    body = (
        b"\x01"
        + i["message_id"]
        + _lp(i["sender_id"].encode())
        + _lp(i["conversation_id"].encode())
        + struct.pack(">Q", i["client_ts_ms"])
        + _lp(i["content_type"].encode())
        + _lp(i["content"].encode())
        + struct.pack(">I", len(case["inputs"]["attachments"]))
        + refs
    )
    assert body == out["body"]
    tag = hmac.new(i["franking_key"], b"prescreen/frank/v1" + body, hashlib.sha256).digest()
    assert tag == out["tag"]
    ad = b"prescreen/e2ee/v1" + _lp(i["header"]) + tag
    assert ad == out["e2ee_associated_data"]
    ciphertext = ChaCha20Poly1305(i["session_key"]).encrypt(
        i["e2ee_nonce"], i["franking_key"] + body, ad
    )
    assert ciphertext == out["e2ee_ciphertext"]
    context = (
        b"\x01"
        + struct.pack(">I", i["key_id"])
        + _lp(i["sender_id"].encode())
        + _lp(i["conversation_id"].encode())
        + struct.pack(">Q", i["server_ts_ms"])
    )
    assert context == out["context"]
    stamp = hmac.new(
        i["platform_key"], b"prescreen/srvfrank/v1" + tag + context, hashlib.sha256
    ).digest()
    assert stamp == out["stamp"]
    signing = Ed25519PrivateKey.from_private_bytes(i["signing_seed"])
    signature = signing.sign(b"prescreen/franksig/v1" + stamp + context)
    assert signature == out["signature"]
    # and the library reads them back
    decoded = MessageBody.decode(body)
    assert (decoded.sender_id, decoded.content) == (i["sender_id"], i["content"])
    assert StampContext.decode(context).server_ts_ms == i["server_ts_ms"]
    received = verify_received(
        FrankedMessage(body, i["franking_key"], tag),
        Stamp(context, stamp, signature),
        i["sender_id"],
        i["conversation_id"],
        platform_public_keys={i["key_id"]: out["public_key"]},
    )
    assert received.context.key_id == i["key_id"]


_TEXT = {"sender_id", "conversation_id", "content_type", "content", "attachments"}
