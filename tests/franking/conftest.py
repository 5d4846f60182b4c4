"""Helpers for franking tests: a chat between clients through the real API, and a platform
membership table the server asks about reporters."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from prescreen.franking import (
    ExampleE2EE,
    ReceivedMessage,
    Recipient,
    Sender,
    Stamp,
    encrypt_attachment,
)
from prescreen.franking.service import set_membership_check


@dataclass
class Members:
    """Who is in which conversation (from the platform's records), for the membership check."""

    rows: set[tuple[str, str]] = field(default_factory=set)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def add(self, conversation_id: str, *users: str) -> None:
        self.rows.update((conversation_id, user) for user in users)

    def check(self, conversation_id: str, user_id: str, at) -> bool:
        self.asked.append((conversation_id, user_id))
        return (conversation_id, user_id) in self.rows


@pytest.fixture
def members() -> Iterator[Members]:
    table = Members()
    previous = set_membership_check(table.check)
    yield table
    set_membership_check(previous)


@dataclass
class Sent:
    """A message as the recipient holds it, plus the attachments' plaintext."""

    received: ReceivedMessage
    attachments: list[bytes]
    stamp_json: dict

    def item(self, **changes) -> dict:
        item = self.received.report_item(self.attachments)
        item.update(changes)
        return item


@dataclass
class Chat:
    """Clients exchanging franked messages, stamped by the platform through the API."""

    client: TestClient
    headers: dict[str, str]
    session_key: bytes = field(default_factory=lambda: os.urandom(32))

    def stamp(self, tag: bytes, sender: str, conversation: str, sign: bool = False) -> dict:
        response = self.client.post(
            "/v1/franking/stamp",
            json={
                "tag": base64.b64encode(tag).decode(),
                "sender_id": sender,
                "conversation_id": conversation,
                "sign": sign,
            },
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def send(
        self,
        sender: str,
        recipient: str,
        conversation: str,
        text: str,
        attachments: list[tuple[bytes, str]] = (),  # type: ignore[assignment]
    ) -> Sent:
        refs, blobs = [], []
        for data, mime in attachments:
            ref, blob = encrypt_attachment(data, mime, locator=f"blob-{len(blobs)}")
            refs.append(ref)
            blobs.append(blob)
        franked = Sender(sender).compose(conversation, text, refs)
        envelope = ExampleE2EE(self.session_key).seal(franked, header=recipient.encode())
        stamped = self.stamp(envelope.tag, sender, conversation)
        received = Recipient(recipient).receive(
            ExampleE2EE(self.session_key), envelope, Stamp.from_json(stamped), sender, conversation
        )
        return Sent(received, [data for data, _ in attachments], stamped)

    def report(self, reporter: str, *items: dict, **fields):
        return self.client.post(
            "/v1/reports/e2e",
            json={"reporter_id": reporter, "messages": list(items), **fields},
            headers=self.headers,
        )


@pytest.fixture
def chat(client, auth) -> Chat:
    return Chat(client, auth("integrator"))
