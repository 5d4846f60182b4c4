"""The client library on its own: franking, the example E2EE layer, the recipient's checks,
and strict encodings. No server or database."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os

import pytest

from prescreen.franking import (
    ExampleE2EE,
    FrankingError,
    MessageBody,
    Recipient,
    Sender,
    Stamp,
    StampContext,
    decrypt_attachment,
    encrypt_attachment,
    frank,
    protocol,
    verify_received,
)
from prescreen.franking.protocol import DecodeError

PLATFORM_KEY = os.urandom(32)
SEED = os.urandom(32)


def _stamp(tag: bytes, sender: str, conversation: str, key_id: int = 1) -> Stamp:
    context = StampContext(key_id, sender, conversation, 1_700_000_000_000).encode()
    mac = protocol.stamp_mac(PLATFORM_KEY, tag, context)
    return Stamp(context, mac, protocol.sign_stamp(SEED, mac, context))


def _deliver(text: str = "hello", sender: str = "alice", conversation: str = "c1"):
    e2ee = ExampleE2EE(os.urandom(32))
    franked = Sender(sender).compose(conversation, text)
    envelope = e2ee.seal(franked, header=b"hdr")
    return e2ee, envelope, _stamp(envelope.tag, sender, conversation)


def test_round_trip_and_fresh_keys() -> None:
    e2ee, envelope, stamp = _deliver("hi there")
    public = {1: protocol.public_key_of(SEED)}
    message = Recipient("bob", public).receive(e2ee, envelope, stamp, "alice", "c1")
    assert message.body.content == "hi there"
    assert message.context.sender_id == "alice"
    # the same content franked twice gives unrelated tags (fresh kf, fresh message id)
    a, b = (Sender("alice").compose("c1", "same") for _ in range(2))
    assert a.tag != b.tag and a.franking_key != b.franking_key
    assert len(a.franking_key) == 32 and len(a.tag) == 32


def test_recipient_drops_anything_altered() -> None:
    e2ee, envelope, stamp = _deliver()
    recipient = Recipient("bob")
    with pytest.raises(FrankingError, match="decrypt"):  # tag swapped: AD no longer matches
        recipient.receive(
            e2ee, dataclasses.replace(envelope, tag=os.urandom(32)), stamp, "alice", "c1"
        )
    with pytest.raises(FrankingError, match="decrypt"):
        flipped = bytes([envelope.ciphertext[0] ^ 1]) + envelope.ciphertext[1:]
        recipient.receive(
            e2ee, dataclasses.replace(envelope, ciphertext=flipped), stamp, "alice", "c1"
        )
    with pytest.raises(FrankingError, match="authenticated peer"):
        recipient.receive(e2ee, envelope, stamp, "mallory", "c1")
    with pytest.raises(FrankingError, match="another conversation"):
        recipient.receive(e2ee, envelope, _stamp(envelope.tag, "alice", "c2"), "alice", "c1")
    with pytest.raises(FrankingError, match="signature"):
        other = {1: protocol.public_key_of(os.urandom(32))}
        Recipient("bob", other).receive(e2ee, envelope, stamp, "alice", "c1")


def test_a_sender_who_lies_about_the_tag_is_caught_before_display() -> None:
    """A malicious sender encrypts kf || B but binds a tag for another body: the AEAD opens
    (the tag is the one in AD), the HMAC check does not."""
    e2ee = ExampleE2EE(os.urandom(32))
    real = Sender("alice").compose("c1", "abusive text")
    decoy = Sender("alice").compose("c1", "innocent text")
    lying = dataclasses.replace(real, tag=decoy.tag)
    envelope = e2ee.seal(lying)
    with pytest.raises(FrankingError, match="franking tag does not match"):
        Recipient("bob").receive(e2ee, envelope, _stamp(decoy.tag, "alice", "c1"), "alice", "c1")


def test_franking_keys_are_exactly_32_bytes() -> None:
    """HMAC pads short keys with zeros, so k and k || 00 give the same tag: the length is fixed."""
    body = Sender("a").body("c", "x").encode()
    short = os.urandom(16)
    padded = short + b"\x00"
    assert (
        hmac.new(short, body, hashlib.sha256).digest()
        == hmac.new(padded, body, hashlib.sha256).digest()
    )
    for key in (short, padded, os.urandom(33)):
        with pytest.raises(ValueError, match="exactly 32"):
            frank(body, key)
        assert not protocol.check_franking_tag(key, body, hmac.new(key, body, "sha256").digest())


def test_encodings_are_strict_and_unambiguous() -> None:
    body = Sender("ab").body("c", "text", message_id=bytes(16), client_ts_ms=1)
    encoded = body.encode()
    assert MessageBody.decode(encoded) == body
    # moving a byte between adjacent fields changes the encoding (length prefixes)
    shifted = dataclasses.replace(body, sender_id="a", conversation_id="bc").encode()
    assert shifted != encoded
    with pytest.raises(DecodeError, match="trailing"):
        MessageBody.decode(encoded + b"\x00")
    with pytest.raises(DecodeError, match="ends early"):
        MessageBody.decode(encoded[:-1])
    with pytest.raises(DecodeError, match="version"):
        MessageBody.decode(b"\x02" + encoded[1:])
    bad_utf8 = encoded.replace(b"\x00\x00\x00\x04text", b"\x00\x00\x00\x04\xff\xfe\xfd\xfc")
    with pytest.raises(DecodeError, match="UTF-8"):
        MessageBody.decode(bad_utf8)
    context = StampContext(3, "ab", "c", 5)
    assert StampContext.decode(context.encode()) == context
    with pytest.raises(DecodeError):
        StampContext.decode(context.encode() + b"x")


def test_attachments_are_committed_by_plaintext_hash() -> None:
    data = os.urandom(1000)
    ref, blob = encrypt_attachment(data, "application/octet-stream")
    assert ref.sha256 == hashlib.sha256(data).digest() and ref.size == 1000
    assert decrypt_attachment(ref, blob) == data
    with pytest.raises(FrankingError, match="does not decrypt"):
        decrypt_attachment(dataclasses.replace(ref, file_key=os.urandom(32)), blob)
    other_ref, _ = encrypt_attachment(b"other", "text/plain")
    with pytest.raises(FrankingError, match="committed"):
        decrypt_attachment(dataclasses.replace(ref, sha256=other_ref.sha256), blob)


def test_report_item_needs_every_committed_attachment() -> None:
    data = b"file"
    ref, _ = encrypt_attachment(data, "text/plain")
    franked = Sender("alice").compose("c1", "see file", [ref])
    message = verify_received(franked, _stamp(franked.tag, "alice", "c1"), "alice", "c1")
    with pytest.raises(ValueError, match="all 1"):
        message.report_item([])
    with pytest.raises(FrankingError):
        message.report_item([b"another file"])
    item = message.report_item([data])
    assert set(item) == {"body", "franking_key", "tag", "context", "stamp", "attachments"}
