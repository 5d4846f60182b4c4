"""Message franking: verifiable reports of end-to-end-encrypted messages.

The client library (`prescreen.franking.client`) franks messages on send and verifies them on
receive; the server (`prescreen.franking.service`, routes in `.api`) stamps franking tags
without seeing content and verifies a participant's report. See docs/franking.md.
"""

from prescreen.franking.client import (
    Envelope,
    ExampleE2EE,
    FrankedMessage,
    FrankingError,
    ReceivedMessage,
    Recipient,
    Sender,
    Stamp,
    build_report,
    check_attachment,
    decrypt_attachment,
    encrypt_attachment,
    frank,
    verify_received,
)
from prescreen.franking.protocol import AttachmentRef, MessageBody, StampContext

__all__ = [
    "AttachmentRef",
    "Envelope",
    "ExampleE2EE",
    "FrankedMessage",
    "FrankingError",
    "MessageBody",
    "ReceivedMessage",
    "Recipient",
    "Sender",
    "Stamp",
    "StampContext",
    "build_report",
    "check_attachment",
    "decrypt_attachment",
    "encrypt_attachment",
    "frank",
    "verify_received",
]
