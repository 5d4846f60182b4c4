"""Stamping and end-to-end reports through the HTTP API, as a messaging platform's backend
uses them: honest reports verify and are screened; every alteration, forgery, replay and
outsider is refused with a clear 4xx."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from tests.franking.conftest import Chat
from tests.media import jpeg
from typer.testing import CliRunner

from prescreen.app import create_app
from prescreen.core import cli_context
from prescreen.core.db import utcnow
from prescreen.franking import MessageBody, StampContext, protocol, service
from prescreen.franking.client import ExampleE2EE, Sender, Stamp, verify_received
from prescreen.franking.models import E2EReport, FrankingKey
from prescreen.franking.service import (
    get_report,
    master_key,
    rotate_key,
    unwrap_material,
    verified_report_listener,
    verified_reports_for,
)
from prescreen.screening.models import Content, Decision


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _code(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["message"]
    return body["error"]["code"]


def _count(db, model) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_an_honest_report_verifies_is_screened_and_replays_are_the_same_report(
    chat, members, db
) -> None:
    members.add("room-1", "alice", "bob")
    first = chat.send("alice", "bob", "room-1", "Join us, brothers, the day is coming")
    second = chat.send("alice", "bob", "room-1", "bring your own gear")
    response = chat.report(
        "bob", first.item(), second.item(), reason="terrorism", note="recruiting"
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["status"] == "verified" and report["duplicate"] is False
    assert report["reporter_id"] == "bob" and report["reason"] == "terrorism"
    messages = report["messages"]
    assert [m["content"] for m in messages] == [
        "Join us, brothers, the day is coming",
        "bring your own gear",
    ]
    assert messages[0]["sender_id"] == "alice" and messages[0]["conversation_id"] == "room-1"
    assert messages[0]["server_ts_ms"] == first.stamp_json["server_ts_ms"]
    decision_id = messages[0]["screening"][0]["decision_id"]
    screened = messages[0]["screening"][0]
    assert screened["decision"] in ("hold", "block")  # the revealed text reads as recruitment
    assert {r["kind"] for r in screened["reasons"]} == {"classifier"}
    stored = chat.client.get(f"/v1/decisions/{decision_id}", headers=chat.headers).json()
    assert stored["user_id"] == "alice"  # the reported user is the sender, not the reporter
    with db.session() as session:
        content = session.get(Decision, decision_id).content
        assert content.meta["source"] == "e2e_report"
        assert content.meta["report_id"] == report["id"]
        assert content.meta["conversation_id"] == "room-1"
        assert [r.id for r in verified_reports_for(session, decision_id)] == [report["id"]]
    assert members.asked == [("room-1", "bob"), ("room-1", "bob")]

    decisions = _count(db, Decision)
    replay = chat.report("bob", second.item(), first.item(), reason="other")
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == report["id"] and replay.json()["duplicate"] is True
    assert _count(db, E2EReport) == 1 and _count(db, Decision) == decisions
    read = chat.client.get(f"/v1/reports/e2e/{report['id']}", headers=chat.headers)
    assert read.status_code == 200 and read.json()["messages"] == messages
    # another participant reporting the same message is a report of its own
    members.add("room-1", "carol")
    assert chat.report("carol", first.item()).status_code == 201
    assert _count(db, E2EReport) == 2


def _altered(sent, other, alteration: str) -> dict:
    item = sent.item()
    body, context = sent.received.body, sent.received.context
    if alteration == "content":
        item["body"] = b64(dataclasses.replace(body, content="words never sent").encode())
    elif alteration == "client_timestamp":
        changed = dataclasses.replace(body, client_ts_ms=body.client_ts_ms - 1)
        item["body"] = b64(changed.encode())
    elif alteration == "franking_key":
        item["franking_key"] = b64(os.urandom(32))
    elif alteration == "context_conversation":
        item["context"] = b64(dataclasses.replace(context, conversation_id="room-2").encode())
    elif alteration == "context_sender":
        item["context"] = b64(dataclasses.replace(context, sender_id="carol").encode())
    elif alteration == "server_timestamp":
        earlier = dataclasses.replace(context, server_ts_ms=context.server_ts_ms - 60_000)
        item["context"] = b64(earlier.encode())
    elif alteration == "forged_stamp":  # a stamp under a key of the reporter's own choosing
        forged = protocol.stamp_mac(os.urandom(32), unb64(item["tag"]), unb64(item["context"]))
        item["stamp"] = b64(forged)
    elif alteration == "other_message_stamp":
        item["stamp"] = other.item()["stamp"]
    elif alteration == "unknown_key":
        item["context"] = b64(dataclasses.replace(context, key_id=99).encode())
    return item


ALTERATIONS = [
    ("content", True, "body_mismatch"),
    ("content", False, "stamp_mismatch"),
    ("client_timestamp", True, "body_mismatch"),
    ("client_timestamp", False, "stamp_mismatch"),
    ("franking_key", True, "body_mismatch"),
    ("franking_key", False, "stamp_mismatch"),
    ("context_conversation", True, "stamp_mismatch"),
    ("context_sender", True, "stamp_mismatch"),
    ("server_timestamp", True, "stamp_mismatch"),
    ("forged_stamp", True, "stamp_mismatch"),
    ("other_message_stamp", True, "stamp_mismatch"),
    ("unknown_key", True, "unknown_key"),
]


def test_every_alteration_is_refused(chat, members, db) -> None:
    members.add("room-1", "alice", "bob")
    sent = chat.send("alice", "bob", "room-1", "the original words")
    other = chat.send("alice", "bob", "room-1", "another message")
    for alteration, with_tag, code in ALTERATIONS:
        item = _altered(sent, other, alteration)
        if not with_tag:
            item.pop("tag")
        response = chat.report("bob", item)
        assert (alteration, with_tag, _code(response)) == (alteration, with_tag, code)
        assert response.json()["error"]["detail"]["message_index"] == 0
        if alteration != "other_message_stamp":  # one altered message fails the report
            assert _code(chat.report("bob", other.item(), item)) == code
    assert _count(db, E2EReport) == 0
    assert members.asked == []  # nothing is asked before the report verifies
    assert chat.report("bob", sent.item()).status_code == 201


def test_a_body_that_names_someone_else_is_refused(chat, members) -> None:
    """The platform stamps what it observed; a body claiming another sender or conversation
    does not match that context."""
    members.add("room-1", "mallory", "bob")
    e2ee = ExampleE2EE(chat.session_key)
    for field, value in (("sender_id", "alice"), ("conversation_id", "room-9")):
        body = dataclasses.replace(Sender("mallory").body("room-1", "framed"), **{field: value})
        franked = Sender("mallory").compose("room-1", "x")
        franked = dataclasses.replace(franked, body=body.encode())
        franked = dataclasses.replace(
            franked, tag=protocol.franking_tag(franked.franking_key, franked.body)
        )
        envelope = e2ee.seal(franked)
        stamped = Stamp.from_json(chat.stamp(envelope.tag, "mallory", "room-1"))
        item = {
            "body": b64(franked.body),
            "franking_key": b64(franked.franking_key),
            "tag": b64(franked.tag),
            "context": b64(stamped.context),
            "stamp": b64(stamped.stamp),
            "attachments": [],
        }
        assert _code(chat.report("bob", item)) == "context_mismatch"


def test_a_reporter_outside_the_conversation_is_refused(chat, members, db) -> None:
    members.add("room-1", "alice", "bob")
    sent = chat.send("alice", "bob", "room-1", "only for bob")
    # bob forwards the opening to an accomplice, who tries to report it
    assert _code(chat.report("eve", sent.item()), 403) == "not_a_member"
    assert _count(db, E2EReport) == 0 and _count(db, Content) == 0
    assert chat.report("bob", sent.item()).status_code == 201


def test_rotation_keeps_old_keys_verifying_until_they_retire(chat, members, db, settings) -> None:
    members.add("room-1", "alice", "bob")
    old = chat.send("alice", "bob", "room-1", "under key 1")
    assert old.stamp_json["key_id"] == 1
    rotated = chat.client.post(
        "/v1/franking/keys/rotate", json={"retire_after_days": 30}, headers=chat.headers
    )
    assert rotated.status_code == 403  # integrators stamp and report; leads rotate
    with db.session() as session:
        rotate_key(session, settings, retire_after_days=30)
    new = chat.send("alice", "bob", "room-1", "under key 2")
    assert new.stamp_json["key_id"] == 2
    assert chat.report("bob", old.item()).status_code == 201  # key 1 still verifies
    keys = chat.client.get("/v1/franking/keys", headers=chat.headers).json()
    assert [(k["key_id"], k["stamping"], k["verifying"]) for k in keys] == [
        (1, False, True),
        (2, True, True),
    ]
    assert all("material" not in k for k in keys)
    with db.session() as session:  # thirty days later key 1 retires
        session.get(FrankingKey, 1).retired_at = utcnow() - timedelta(seconds=1)
    assert _code(chat.report("bob", old.item(), new.item())) == "key_retired"


def test_cli_and_api_rotation(client, auth, db, settings, monkeypatch, tmp_path) -> None:
    rotated = client.post("/v1/franking/keys/rotate", headers=auth("lead"))
    assert rotated.status_code == 201 and rotated.json()["key_id"] == 1
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PRESCREEN_LOG_JSON", "false")
    cli_context.reset()
    try:
        from prescreen.cli import app

        runner = CliRunner()
        result = runner.invoke(app, ["franking", "rotate-key", "--retire-after-days", "0"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["key_id"] == 2
        listed = runner.invoke(app, ["franking", "keys"])
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(r["key_id"], r["verifying"]) for r in rows] == [(1, False), (2, True)]
        retired = runner.invoke(app, ["franking", "retire-key", "2"])
        assert retired.exit_code == 0 and json.loads(retired.stdout)["verifying"] is False
        assert runner.invoke(app, ["franking", "retire-key", "9"]).exit_code == 1
    finally:
        cli_context.reset()
    # with every key retired, the next stamp starts a new one
    stamped = client.post(
        "/v1/franking/stamp",
        json={"tag": b64(os.urandom(32)), "sender_id": "a", "conversation_id": "c"},
        headers=auth("integrator"),
    )
    assert stamped.json()["key_id"] == 3


def test_keys_are_encrypted_at_rest_under_the_master_key(chat, db, settings) -> None:
    stamped = chat.stamp(os.urandom(32), "alice", "room-1", sign=True)
    path = settings.data_dir / "franking_master_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    master = master_key(settings)
    with db.session() as session:
        row = session.get(FrankingKey, stamped["key_id"])
        material = unwrap_material(master, row.key_id, row.material)
        assert material[:32] not in row.material and len(material) == 64
    # the signature verifies with the published public key
    keys = chat.client.get("/v1/franking/keys", headers=chat.headers).json()
    public = unb64(keys[0]["public_key"])
    assert protocol.check_stamp_signature(
        public, unb64(stamped["stamp"]), unb64(stamped["context"]), unb64(stamped["signature"])
    )
    # another master key cannot use the stored keys: a clear 503, never a silent new key
    wrong = settings.model_copy(update={"franking_master_key": _secret(os.urandom(32).hex())})
    with TestClient(create_app(wrong, db), raise_server_exceptions=False) as other:
        response = other.post(
            "/v1/franking/stamp",
            json={"tag": b64(os.urandom(32)), "sender_id": "a", "conversation_id": "c"},
            headers=chat.headers,
        )
    assert _code(response, 503) == "franking_unavailable"


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


def test_a_verified_report_of_a_banked_image_is_matched(chat, members, db, auth) -> None:
    client = chat.client
    assert (
        client.post(
            "/v1/banks", json={"name": "terror", "labels": ["terrorism"]}, headers=auth("lead")
        ).status_code
        == 201
    )
    image = jpeg(7)
    entry = client.post(
        "/v1/banks/terror/content",
        files={"file": ("x.jpg", image, "image/jpeg")},
        data={"labels": "terrorism"},
        headers=auth("lead"),
    ).json()
    members.add("room-9", "recruiter", "victim")
    sent = chat.send("recruiter", "victim", "room-9", "watch this", [(image, "image/jpeg")])
    told: list[tuple[str, list[str | None]]] = []

    @verified_report_listener
    def listen(session, report) -> None:
        told.append((report.id, [link.decision_id for link in report.links]))

    try:
        response = chat.report("victim", sent.item(), reason="terrorism")
        again = chat.report("victim", sent.item(), reason="terrorism")
    finally:
        service._report_listeners.remove(listen)
    assert response.status_code == 201, response.text
    assert again.status_code == 200
    parts = {p["part"]: p for p in response.json()["messages"][0]["screening"]}
    assert parts["text"]["decision"] == "allow"
    image_part = parts["attachment:0"]
    assert image_part["decision"] == "block"
    assert image_part["matches"][0]["bank"] == "terror"
    assert image_part["matches"][0]["entry"] == entry["id"]
    decision = client.get(f"/v1/decisions/{image_part['decision_id']}", headers=chat.headers)
    assert decision.json()["user_id"] == "recruiter"
    assert decision.json()["reasons"][0]["label"] == "terrorism"
    report_id = response.json()["id"]
    assert told == [(report_id, [parts["text"]["decision_id"], image_part["decision_id"]])]
    queue = client.get("/v1/review/cases", headers=auth("moderator")).json()
    cases = queue["cases"] if isinstance(queue, dict) else queue
    reported = [c for c in cases if c["kind"] == "report"]
    assert reported, queue
    detail = client.get(f"/v1/review/cases/{reported[0]['id']}", headers=auth("moderator")).json()
    assert "recruiter" in str(detail) and "terror" in str(detail)
    with db.session() as session:
        assert [r.id for r in verified_reports_for(session, image_part["decision_id"])] == [
            report_id
        ]
        assert get_report(session, report_id).reporter_id == "victim"


def test_attachments_must_be_the_committed_plaintext(chat, members) -> None:
    members.add("room-1", "alice", "bob")
    sent = chat.send("alice", "bob", "room-1", "", [(b"first file", "text/plain")])
    missing = sent.item(attachments=[])
    assert _code(chat.report("bob", missing)) == "attachment_mismatch"
    swapped = sent.item(attachments=[b64(b"first filf")])
    response = chat.report("bob", swapped)
    assert _code(response) == "attachment_mismatch"
    assert response.json()["error"]["detail"]["attachment_index"] == 0
    assert chat.report("bob", sent.item()).status_code == 201


def test_malformed_input_and_roles(chat, members, auth) -> None:
    members.add("room-1", "alice", "bob")
    sent = chat.send("alice", "bob", "room-1", "hello")
    item = sent.item()
    cases = [
        ({**item, "body": "not base64!"}, "invalid_input"),
        ({**item, "franking_key": b64(os.urandom(16))}, "malformed_franking_key"),
        ({**item, "context": b64(b"\x01garbage")}, "malformed_context"),
        ({**item, "stamp": b64(b"short")}, "malformed_stamp"),
    ]
    for bad, code in cases:
        assert _code(chat.report("bob", bad)) == code
    assert _code(chat.report("bob", item, item)) == "invalid_input"  # same message twice
    assert _code(chat.report("bob")) == "invalid_input"  # no messages
    bad_tag = chat.client.post(
        "/v1/franking/stamp",
        json={"tag": b64(b"x" * 16), "sender_id": "a", "conversation_id": "c"},
        headers=chat.headers,
    )
    assert _code(bad_tag) == "invalid_input"
    tag = {"tag": b64(os.urandom(32)), "sender_id": "a", "conversation_id": "c"}
    assert _code(chat.client.post("/v1/franking/stamp", json=tag), 401) == "unauthorized"
    for role in ("moderator", "auditor"):
        assert (
            chat.client.post("/v1/franking/stamp", json=tag, headers=auth(role)).status_code == 403
        )
        body = {"reporter_id": "bob", "messages": [item]}
        assert chat.client.post("/v1/reports/e2e", json=body, headers=auth(role)).status_code == 403
    assert chat.client.post("/v1/franking/stamp", json=tag, headers=auth("lead")).status_code == 200


class _Membership(BaseHTTPRequestHandler):
    members: set[tuple[str, str]] = set()
    requests: list[dict] = []

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload["authorization"] = self.headers.get("Authorization")
        self.requests.append(payload)
        answer = {"member": (payload["conversation_id"], payload["user_id"]) in self.members}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def membership_server():
    _Membership.members, _Membership.requests = {("room-h", "bob")}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Membership)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/membership"
    server.shutdown()
    server.server_close()


def test_membership_by_http_callback(settings, db, auth, membership_server) -> None:
    configured = settings.model_copy(
        update={
            "membership_callback_url": membership_server,
            "membership_callback_token": _secret("s3cret"),
        }
    )
    with TestClient(create_app(configured, db), raise_server_exceptions=False) as client:
        chat = Chat(client, auth("integrator"))
        sent = chat.send("alice", "bob", "room-h", "over http")
        assert _code(chat.report("eve", sent.item()), 403) == "not_a_member"
        assert chat.report("bob", sent.item()).status_code == 201
    asked = _Membership.requests[-1]
    assert (asked["conversation_id"], asked["user_id"]) == ("room-h", "bob")
    assert asked["at_ms"] == sent.stamp_json["server_ts_ms"]
    assert asked["at"].endswith("Z") and asked["authorization"] == "Bearer s3cret"
    down = settings.model_copy(update={"membership_callback_url": "http://127.0.0.1:9/none"})
    with TestClient(create_app(down, db), raise_server_exceptions=False) as client:
        chat = Chat(client, auth("integrator"))
        sent = chat.send("alice", "bob", "room-h", "callback down")
        assert _code(chat.report("bob", sent.item()), 503) == "membership_check_unavailable"
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        chat = Chat(client, auth("integrator"))
        sent = chat.send("alice", "bob", "room-h", "nothing configured")
        assert _code(chat.report("bob", sent.item()), 503) == "membership_check_unavailable"


def test_the_recipient_library_verifies_signed_stamps(chat) -> None:
    franked = Sender("alice").compose("room-1", "signed")
    stamped = chat.stamp(franked.tag, "alice", "room-1", sign=True)
    keys = chat.client.get("/v1/franking/keys", headers=chat.headers).json()
    public = {k["key_id"]: unb64(k["public_key"]) for k in keys}
    message = verify_received(
        franked, Stamp.from_json(stamped), "alice", "room-1", platform_public_keys=public
    )
    assert message.context == StampContext.decode(unb64(stamped["context"]))
    assert MessageBody.decode(franked.body).content == "signed"


def test_odd_content_is_still_reported(chat, members) -> None:
    """A verified report stays verified even when its content cannot be stored verbatim in a
    column (NUL) or an attachment cannot be screened."""
    members.add("room-1", "alice", "bob")
    blob = os.urandom(300)
    sent = chat.send("alice", "bob", "room-1", "nul\x00inside", [(blob, "application/x-odd")])
    response = chat.report("bob", sent.item())
    assert response.status_code == 201, response.text
    message = response.json()["messages"][0]
    assert message["content"] == "nul\ufffdinside"
    parts = {p["part"]: p for p in message["screening"]}
    assert parts["text"]["decision_id"] and "error" not in parts["text"]
    assert parts["attachment:0"]["decision"] is None and parts["attachment:0"]["error"]
