"""Message franking for messaging apps: frank on send, verify on receive, report later.

The sender builds a message body (`MessageBody`), franks it with a fresh 32-byte key and puts
key and body *inside* the end-to-end encryption, with the franking tag bound into the AEAD's
associated data. The platform sees only the tag, stamps it (`POST /v1/franking/stamp`) and
delivers ciphertext, tag, context and stamp. The recipient decrypts, checks the tag before
showing anything, and keeps what a report needs (`ReceivedMessage`).

    sender = Sender("alice")
    ref, blob = encrypt_attachment(photo_bytes, "image/jpeg")      # upload `blob` to storage
    franked = sender.compose("room-1", "look at this", attachments=[ref])
    envelope = ExampleE2EE(session_key).seal(franked, header=b"to:bob")
    stamped = platform.stamp(franked.tag, ...)                      # the platform backend
    message = Recipient("bob").receive(ExampleE2EE(session_key), envelope, stamped, "alice",
                                       "room-1")
    report = build_report("bob", [message.report_item([photo_bytes])], reason="terrorism")

`ExampleE2EE` is a stand-in for a real end-to-end protocol (Signal, MLS) in tests and docs; it
shows where the franking key, body and tag go, nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from prescreen.franking.protocol import (
    FRANKING_KEY_BYTES,
    LABEL_ATTACHMENT,
    MESSAGE_ID_BYTES,
    STAMP_BYTES,
    TAG_BYTES,
    AttachmentRef,
    DecodeError,
    MessageBody,
    StampContext,
    check_franking_tag,
    check_stamp_signature,
    e2ee_associated_data,
    franking_tag,
)

NONCE_BYTES = 12
FILE_KEY_BYTES = 32


class FrankingError(Exception):
    """A message, attachment or stamp failed a check; never display such a message."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Attachments: encrypted separately, committed to by the SHA-256 of their plaintext


def encrypt_attachment(
    data: bytes,
    mime: str,
    locator: str = "",
    *,
    file_key: bytes | None = None,
    nonce: bytes | None = None,
) -> tuple[AttachmentRef, bytes]:
    """Encrypt a file for upload: returns the reference to put in the message body and the
    blob (nonce || ChaCha20-Poly1305 ciphertext) to store. The reference carries the SHA-256 of
    the plaintext, so whatever key a recipient or reporter decrypts with, only the committed
    plaintext can be shown or reported (the cipher alone does not commit to its key)."""
    file_key = file_key if file_key is not None else os.urandom(FILE_KEY_BYTES)
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    if len(file_key) != FILE_KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("file keys are 32 bytes and nonces 12")
    blob = nonce + ChaCha20Poly1305(file_key).encrypt(nonce, data, LABEL_ATTACHMENT)
    ref = AttachmentRef(hashlib.sha256(data).digest(), len(data), mime, file_key, locator)
    return ref, blob


def check_attachment(ref: AttachmentRef, plaintext: bytes) -> bytes:
    """The plaintext if it is the committed one (SHA-256 and size), else FrankingError."""
    digest = hashlib.sha256(plaintext).digest()
    if len(plaintext) != ref.size or not hmac.compare_digest(digest, ref.sha256):
        raise FrankingError("attachment does not match the SHA-256 the sender committed to")
    return plaintext


def decrypt_attachment(ref: AttachmentRef, blob: bytes) -> bytes:
    """Decrypt a fetched blob with the key from the body and check the committed SHA-256."""
    if len(blob) < NONCE_BYTES + 16 or len(ref.file_key) != FILE_KEY_BYTES:
        raise FrankingError("attachment blob or key is malformed")
    try:
        plaintext = ChaCha20Poly1305(ref.file_key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], LABEL_ATTACHMENT
        )
    except InvalidTag as exc:
        raise FrankingError("attachment does not decrypt") from exc
    return check_attachment(ref, plaintext)


# ---------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class FrankedMessage:
    """A franked message: the encoded body B, its franking key kf and tag HMAC(kf, label || B).
    `body` and `franking_key` travel only inside the end-to-end encryption; `tag` goes to the
    platform too."""

    body: bytes
    franking_key: bytes
    tag: bytes

    @property
    def plaintext(self) -> bytes:
        """What the E2EE layer encrypts: kf || B."""
        return self.franking_key + self.body


def frank(body: MessageBody | bytes, franking_key: bytes | None = None) -> FrankedMessage:
    """Frank a body with a fresh 32-byte key (or the one given, for test vectors)."""
    encoded = body.encode() if isinstance(body, MessageBody) else bytes(body)
    key = franking_key if franking_key is not None else os.urandom(FRANKING_KEY_BYTES)
    return FrankedMessage(encoded, key, franking_tag(key, encoded))


class Sender:
    """Composes franked messages for one sender account."""

    def __init__(self, sender_id: str) -> None:
        self.sender_id = sender_id

    def body(
        self,
        conversation_id: str,
        content: str,
        attachments: Iterable[AttachmentRef] = (),
        *,
        content_type: str = "text/plain",
        message_id: bytes | None = None,
        client_ts_ms: int | None = None,
    ) -> MessageBody:
        return MessageBody(
            message_id=message_id if message_id is not None else os.urandom(MESSAGE_ID_BYTES),
            sender_id=self.sender_id,
            conversation_id=conversation_id,
            client_ts_ms=client_ts_ms if client_ts_ms is not None else now_ms(),
            content=content,
            content_type=content_type,
            attachments=tuple(attachments),
        )

    def compose(
        self,
        conversation_id: str,
        content: str,
        attachments: Iterable[AttachmentRef] = (),
        *,
        franking_key: bytes | None = None,
        **fields: Any,
    ) -> FrankedMessage:
        return frank(self.body(conversation_id, content, attachments, **fields), franking_key)


# ---------------------------------------------------------------------------------------------
# The example end-to-end layer (a stand-in for Signal or MLS; not a messaging protocol)


@dataclass(frozen=True)
class Envelope:
    """What the sender uploads and the platform fans out: header, AEAD ciphertext, tag."""

    header: bytes
    nonce: bytes
    ciphertext: bytes
    tag: bytes


class ExampleE2EE:
    """ChaCha20-Poly1305 under one shared session key, with the franking tag in the associated
    data. A STAND-IN for the real end-to-end protocol (Signal, MLS) in tests and documentation:
    it has no ratchet, no forward secrecy and no authentication of who holds the key."""

    def __init__(self, session_key: bytes) -> None:
        self.aead = ChaCha20Poly1305(session_key)

    def seal(
        self, franked: FrankedMessage, header: bytes = b"", *, nonce: bytes | None = None
    ) -> Envelope:
        nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        ad = e2ee_associated_data(header, franked.tag)
        return Envelope(header, nonce, self.aead.encrypt(nonce, franked.plaintext, ad), franked.tag)

    def open(self, envelope: Envelope) -> FrankedMessage:
        """Decrypt (the AD includes the tag) and split kf || B; checks nothing else."""
        if len(envelope.tag) != TAG_BYTES:
            raise FrankingError("franking tag is malformed")
        ad = e2ee_associated_data(envelope.header, envelope.tag)
        try:
            plaintext = self.aead.decrypt(envelope.nonce, envelope.ciphertext, ad)
        except InvalidTag as exc:
            raise FrankingError("message does not decrypt with this tag") from exc
        if len(plaintext) < FRANKING_KEY_BYTES:
            raise FrankingError("decrypted message is too short")
        return FrankedMessage(
            plaintext[FRANKING_KEY_BYTES:], plaintext[:FRANKING_KEY_BYTES], envelope.tag
        )


# ---------------------------------------------------------------------------------------------
# Receiving and reporting


@dataclass(frozen=True)
class Stamp:
    """The platform's stamp as delivered with a message (the JSON of `/v1/franking/stamp`)."""

    context: bytes
    stamp: bytes
    signature: bytes | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stamp:
        sig = data.get("signature")
        return cls(unb64(data["context"]), unb64(data["stamp"]), unb64(sig) if sig else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "context": b64(self.context),
            "stamp": b64(self.stamp),
            "signature": b64(self.signature) if self.signature is not None else None,
        }


@dataclass(frozen=True)
class ReceivedMessage:
    """A verified incoming message and everything a later report needs. Keep it for as long
    as the message is kept; never send session keys or ratchet state with a report."""

    body: MessageBody
    franked: FrankedMessage
    stamp: Stamp
    context: StampContext

    def report_item(self, attachments: Sequence[bytes] = ()) -> dict[str, Any]:
        """One entry of `messages` in `POST /v1/reports/e2e`: the opening (body and franking
        key), the platform's context and stamp, and each attachment's plaintext, in order."""
        if len(attachments) != len(self.body.attachments):
            raise ValueError(
                f"give all {len(self.body.attachments)} attachments' plaintext, in order"
            )
        for ref, data in zip(self.body.attachments, attachments, strict=True):
            check_attachment(ref, data)
        return {
            "body": b64(self.franked.body),
            "franking_key": b64(self.franked.franking_key),
            "tag": b64(self.franked.tag),
            "context": b64(self.stamp.context),
            "stamp": b64(self.stamp.stamp),
            "attachments": [b64(data) for data in attachments],
        }


def verify_received(
    franked: FrankedMessage,
    stamp: Stamp,
    peer_id: str,
    conversation_id: str,
    *,
    platform_public_keys: Mapping[int, bytes] | None = None,
) -> ReceivedMessage:
    """The recipient's checks after decryption, before display: the tag opens to this body
    under this key; the body names the authenticated peer and this conversation; the platform
    context agrees; and, when the platform's public keys are given, the stamp's signature."""
    if len(stamp.stamp) != STAMP_BYTES:
        raise FrankingError("stamp is malformed")
    if not check_franking_tag(franked.franking_key, franked.body, franked.tag):
        raise FrankingError("franking tag does not match the body: drop the message")
    try:
        body = MessageBody.decode(franked.body)
        context = StampContext.decode(stamp.context)
    except DecodeError as exc:
        raise FrankingError(str(exc)) from exc
    if body.sender_id != peer_id or context.sender_id != peer_id:
        raise FrankingError("message does not come from the authenticated peer")
    if body.conversation_id != conversation_id or context.conversation_id != conversation_id:
        raise FrankingError("message belongs to another conversation")
    if platform_public_keys is not None:
        public_key = platform_public_keys.get(context.key_id)
        if (
            public_key is None
            or stamp.signature is None
            or not check_stamp_signature(public_key, stamp.stamp, stamp.context, stamp.signature)
        ):
            raise FrankingError("platform signature on the stamp does not verify")
    return ReceivedMessage(body, franked, stamp, context)


class Recipient:
    """Receives messages for one account: decrypt, verify, keep the opening."""

    def __init__(
        self, account_id: str, platform_public_keys: Mapping[int, bytes] | None = None
    ) -> None:
        self.account_id = account_id
        self.platform_public_keys = platform_public_keys

    def receive(
        self,
        e2ee: ExampleE2EE,
        envelope: Envelope,
        stamp: Stamp,
        peer_id: str,
        conversation_id: str,
    ) -> ReceivedMessage:
        franked = e2ee.open(envelope)
        return verify_received(
            franked,
            stamp,
            peer_id,
            conversation_id,
            platform_public_keys=self.platform_public_keys,
        )


def build_report(
    reporter_id: str,
    items: Sequence[Mapping[str, Any]],
    *,
    reason: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """The JSON body of `POST /v1/reports/e2e` from `ReceivedMessage.report_item(...)`s."""
    report: dict[str, Any] = {"reporter_id": reporter_id, "messages": list(items), "note": note}
    if reason is not None:
        report["reason"] = reason
    return report
