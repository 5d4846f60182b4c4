"""The franking wire formats and MACs, shared by the client library and the server.

Every variable-length field is length-prefixed (u32, big-endian), integers are fixed-width
big-endian, timestamps are milliseconds since the Unix epoch (u64), and every MAC or signature
input starts with its own ASCII label. Decoders are strict: a wrong version, a length that runs
past the end, invalid UTF-8 or trailing bytes are all refused, so one byte string has exactly one
meaning. See docs/franking.md for the protocol around these pieces.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VERSION = 1
FRANKING_KEY_BYTES = 32  # always exactly 32: HMAC pads short keys, so lengths must not vary
TAG_BYTES = 32
STAMP_BYTES = 32
SIGNATURE_BYTES = 64
MESSAGE_ID_BYTES = 16
PLATFORM_KEY_BYTES = 32

LABEL_FRANK = b"prescreen/frank/v1"  # franking tag: HMAC(kf, label || body)
LABEL_STAMP = b"prescreen/srvfrank/v1"  # platform stamp: HMAC(K_plat, label || tag || context)
LABEL_SIGNATURE = b"prescreen/franksig/v1"  # optional Ed25519 over label || stamp || context
LABEL_E2EE_AD = b"prescreen/e2ee/v1"  # associated data of the example E2EE layer
LABEL_ATTACHMENT = b"prescreen/attachment/v1"  # associated data of attachment encryption

MAX_FIELD_BYTES = 64 * 1024 * 1024
MAX_ID_BYTES = 256
MAX_ATTACHMENTS = 64
U64_MAX = 2**64 - 1


class DecodeError(ValueError):
    """A byte string is not a well-formed body or context."""


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{value} does not fit in an unsigned 64-bit integer")
    return struct.pack(">Q", value)


def lp(data: bytes) -> bytes:
    """A length-prefixed field: u32 big-endian length, then the bytes."""
    if len(data) > MAX_FIELD_BYTES:
        raise ValueError(f"field of {len(data):,} bytes is over {MAX_FIELD_BYTES:,}")
    return u32(len(data)) + data


def _text(value: str, what: str, max_bytes: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    raw = value.encode("utf-8")
    if max_bytes is not None and not 0 < len(raw) <= max_bytes:
        raise ValueError(f"{what} must be 1 to {max_bytes} bytes of UTF-8")
    return raw


class Reader:
    """Strict sequential decoding of the formats above."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"{self.what} ends early (wanted {n} bytes at offset {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def lp(self, max_bytes: int = MAX_FIELD_BYTES) -> bytes:
        n = self.u32()
        if n > max_bytes:
            raise DecodeError(f"{self.what}: a field of {n:,} bytes is over {max_bytes:,}")
        return self.take(n)

    def text(self, what: str, max_bytes: int = MAX_FIELD_BYTES, required: bool = False) -> str:
        raw = self.lp(max_bytes)
        if required and not raw:
            raise DecodeError(f"{self.what}: {what} is empty")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{self.what}: {what} is not valid UTF-8") from exc

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{self.what} has {len(self.data) - self.pos} trailing bytes")


@dataclass(frozen=True)
class AttachmentRef:
    """What a message commits to about one attached file: the SHA-256 of its *plaintext*
    (the commitment that survives a non-committing cipher), its size and type, and what a
    recipient needs to fetch and decrypt it."""

    sha256: bytes
    size: int
    mime: str
    file_key: bytes = b""
    locator: str = ""

    def encode(self) -> bytes:
        if len(self.sha256) != 32:
            raise ValueError("an attachment's sha256 is 32 bytes")
        return (
            self.sha256
            + u64(self.size)
            + lp(_text(self.mime, "mime", 255))
            + lp(self.file_key)
            + lp(_text(self.locator, "locator"))
        )

    @classmethod
    def read(cls, reader: Reader) -> AttachmentRef:
        sha = reader.take(32)
        size = reader.u64()
        mime = reader.text("mime", 255, required=True)
        file_key = reader.lp(1024)
        locator = reader.text("locator", 4096)
        return cls(sha, size, mime, file_key, locator)


@dataclass(frozen=True)
class MessageBody:
    """The franked message body B: what the sender commits to and a reporter reveals."""

    message_id: bytes
    sender_id: str
    conversation_id: str
    client_ts_ms: int
    content: str
    content_type: str = "text/plain"
    attachments: tuple[AttachmentRef, ...] = field(default_factory=tuple)
    version: int = VERSION

    def encode(self) -> bytes:
        if self.version != VERSION:
            raise ValueError(f"only body version {VERSION} can be written")
        if len(self.message_id) != MESSAGE_ID_BYTES:
            raise ValueError(f"message_id is {MESSAGE_ID_BYTES} bytes")
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise ValueError(f"at most {MAX_ATTACHMENTS} attachments")
        return b"".join(
            [
                bytes([self.version]),
                self.message_id,
                lp(_text(self.sender_id, "sender_id", MAX_ID_BYTES)),
                lp(_text(self.conversation_id, "conversation_id", MAX_ID_BYTES)),
                u64(self.client_ts_ms),
                lp(_text(self.content_type, "content_type", 255)),
                lp(_text(self.content, "content")),
                u32(len(self.attachments)),
                *(a.encode() for a in self.attachments),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> MessageBody:
        reader = Reader(data, "message body")
        version = reader.u8()
        if version != VERSION:
            raise DecodeError(f"message body version {version} is not supported")
        message_id = reader.take(MESSAGE_ID_BYTES)
        sender = reader.text("sender_id", MAX_ID_BYTES, required=True)
        conversation = reader.text("conversation_id", MAX_ID_BYTES, required=True)
        client_ts = reader.u64()
        content_type = reader.text("content_type", 255, required=True)
        content = reader.text("content")
        count = reader.u32()
        if count > MAX_ATTACHMENTS:
            raise DecodeError(f"message body has {count} attachments, over {MAX_ATTACHMENTS}")
        attachments = tuple(AttachmentRef.read(reader) for _ in range(count))
        reader.end()
        return cls(message_id, sender, conversation, client_ts, content, content_type, attachments)


@dataclass(frozen=True)
class StampContext:
    """ctx: what the platform itself observed when it accepted the message. Only these values
    are authoritative; the body's client timestamp is the sender's claim."""

    key_id: int
    sender_id: str
    conversation_id: str
    server_ts_ms: int
    version: int = VERSION

    def encode(self) -> bytes:
        if not 0 < self.key_id < 2**32:
            raise ValueError("key_id is an unsigned 32-bit integer above 0")
        return (
            bytes([self.version])
            + u32(self.key_id)
            + lp(_text(self.sender_id, "sender_id", MAX_ID_BYTES))
            + lp(_text(self.conversation_id, "conversation_id", MAX_ID_BYTES))
            + u64(self.server_ts_ms)
        )

    @classmethod
    def decode(cls, data: bytes) -> StampContext:
        reader = Reader(data, "context")
        version = reader.u8()
        if version != VERSION:
            raise DecodeError(f"context version {version} is not supported")
        key_id = reader.u32()
        sender = reader.text("sender_id", MAX_ID_BYTES, required=True)
        conversation = reader.text("conversation_id", MAX_ID_BYTES, required=True)
        server_ts = reader.u64()
        reader.end()
        return cls(key_id, sender, conversation, server_ts)


def franking_tag(franking_key: bytes, body: bytes) -> bytes:
    """tag_f = HMAC-SHA256(kf, "prescreen/frank/v1" || B), with kf exactly 32 bytes."""
    if len(franking_key) != FRANKING_KEY_BYTES:
        raise ValueError(f"a franking key is exactly {FRANKING_KEY_BYTES} bytes")
    return hmac.new(franking_key, LABEL_FRANK + body, hashlib.sha256).digest()


def check_franking_tag(franking_key: bytes, body: bytes, tag: bytes) -> bool:
    """Constant-time comparison of the recomputed tag with the one given."""
    if len(franking_key) != FRANKING_KEY_BYTES or len(tag) != TAG_BYTES:
        return False
    return hmac.compare_digest(franking_tag(franking_key, body), tag)


def stamp_mac(platform_key: bytes, tag: bytes, context: bytes) -> bytes:
    """server_frank = HMAC-SHA256(K_plat[key_id], "prescreen/srvfrank/v1" || tag || ctx)."""
    if len(platform_key) != PLATFORM_KEY_BYTES:
        raise ValueError(f"a platform key is exactly {PLATFORM_KEY_BYTES} bytes")
    if len(tag) != TAG_BYTES:
        raise ValueError(f"a franking tag is exactly {TAG_BYTES} bytes")
    return hmac.new(platform_key, LABEL_STAMP + tag + context, hashlib.sha256).digest()


def signature_input(stamp: bytes, context: bytes) -> bytes:
    return LABEL_SIGNATURE + stamp + context


def sign_stamp(signing_seed: bytes, stamp: bytes, context: bytes) -> bytes:
    """Ed25519 over "prescreen/franksig/v1" || stamp || ctx (deterministic)."""
    key = Ed25519PrivateKey.from_private_bytes(signing_seed)
    return key.sign(signature_input(stamp, context))


def public_key_of(signing_seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(signing_seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_stamp_signature(public_key: bytes, stamp: bytes, context: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, signature_input(stamp, context))
    except (InvalidSignature, ValueError):
        return False
    return True


def e2ee_associated_data(header: bytes, tag: bytes) -> bytes:
    """AD of the E2EE layer: the franking tag is bound into it, so a ciphertext cannot be
    re-paired with another message's tag (and stamp)."""
    return LABEL_E2EE_AD + lp(header) + tag
