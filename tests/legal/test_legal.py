"""Legal requests: validation with reasons, two-person approval, scoped signed productions that
nothing outside the scope can enter, preservation against the retention sweep, emergency
disclosure with its second review, user notice, and removal orders on a one-hour clock.
Every refused attempt is itself in the audit log."""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from prescreen.audit import service as audit
from prescreen.audit.models import AuditEntry
from prescreen.core.auth import create_api_key
from prescreen.core.db import utcnow
from prescreen.jobs.models import Job
from prescreen.legal import service
from prescreen.legal.models import LegalRequest
from prescreen.legal.production import verify_bundle
from prescreen.screening.models import Content, Decision
from prescreen.webhooks.models import WebhookEndpoint

NOW = utcnow()


@pytest.fixture
def second_legal(db) -> dict[str, str]:
    with db.session() as session:
        key = create_api_key(session, "legal", "second legal officer")[1]
    return {"Authorization": f"Bearer {key}"}


def _content(db, user: str, content_id: str, days_ago: float = 1, owner: str | None = None) -> str:
    at = utcnow() - timedelta(days=days_ago)
    with db.session() as session:
        content = Content(
            id=str(uuid.uuid4()), content_id=content_id, user_id=user, kind="text",
            fingerprint=uuid.uuid4().hex, signals={"text": uuid.uuid4().hex},
            meta={"surface": "post", "who": user}, submitted_by="test", owner_key_id=owner,
            created_at=at,
        )  # fmt: skip
        session.add(content)
        session.flush()
        session.add(
            Decision(id=str(uuid.uuid4()), content_pk=content.id, outcome="allow", created_at=at)
        )
    return content.id


def _request(**overrides) -> dict:
    body = {
        "type": "search_warrant",
        "authority": "District Court, Northern District",
        "jurisdiction": "US-CA",
        "legal_basis": "18 U.S.C. 2703(a)",
        "reference": "2026-SW-0042",
        "expires_at": (NOW + timedelta(days=14)).isoformat(),
        "accounts": ["alice"],
        "data_categories": ["account", "decisions", "content"],
        "start": (NOW - timedelta(days=30)).isoformat(),
        "end": (NOW + timedelta(days=1)).isoformat(),
        "contact": {"officer": "Det. Smith", "email": "smith@example.gov"},
    }
    return {**body, **overrides}


def _create(client, auth, **overrides) -> dict:
    response = client.post("/v1/legal/requests", json=_request(**overrides), headers=auth("legal"))
    assert response.status_code == 201, response.text
    return response.json()


def _actions(db, action: str) -> list[dict]:
    with db.session() as session:
        return [
            audit.entry_to_dict(e) for e in audit.list_entries(session, action=action, limit=1000)
        ]


def _produce(client, headers, request_id: str, **ask):
    return client.post(f"/v1/legal/requests/{request_id}/productions", json=ask, headers=headers)


def test_intake_validates_with_reasons(client, auth) -> None:
    assert _create(client, auth)["status"] == "pending"
    cases = {
        "scope_too_broad": {"type": "subpoena"},  # a subpoena cannot compel content
        "out_of_jurisdiction": {"jurisdiction": "RU"},
        "expired": {"expires_at": (NOW - timedelta(days=1)).isoformat()},
        "no_accounts": {"accounts": []},
        "emergency_details": {"type": "emergency_disclosure"},
    }
    for code, overrides in cases.items():
        body = _create(client, auth, **overrides)
        assert body["status"] == "invalid" and code in [p["code"] for p in body["problems"]], code
    wildcard = _create(client, auth, accounts=["al*"])
    assert "scope_too_broad" in [p["code"] for p in wildcard["problems"]]


def test_export_needs_two_distinct_approvals(client, auth, db, second_legal, settings) -> None:
    _content(db, "alice", "a-1")
    request = _create(client, auth)
    rid = request["id"]
    refused = _produce(client, auth("legal"), rid)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_approved"
    assert (
        client.post(f"/v1/legal/requests/{rid}/approve", headers=auth("legal")).status_code == 200
    )
    again = client.post(f"/v1/legal/requests/{rid}/approve", headers=auth("legal"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "same_approver"
    one = _produce(client, auth("legal"), rid)
    assert one.status_code == 403 and "has 1" in one.json()["error"]["message"]
    approved = client.post(f"/v1/legal/requests/{rid}/approve", headers=second_legal).json()
    assert approved["status"] == "approved" and len(approved["approvals"]) == 2
    produced = _produce(client, auth("legal"), rid)
    assert produced.status_code == 200 and produced.headers["content-type"] == "application/zip"
    refusals = _actions(db, "legal.export.refused")
    assert [r["details"]["code"] for r in refusals] == [
        "not_approved",
        "not_approved",
    ]
    assert all(r["target"] == f"legal_request:{rid}" for r in refusals)
    assert _actions(db, "legal.request.approve.refused")[0]["details"]["code"] == "same_approver"
    (export,) = _actions(db, "legal.export")
    assert export["details"]["production"] == produced.headers["X-Prescreen-Production-Id"]
    assert export["details"]["manifest_sha256"] == produced.headers["X-Prescreen-Manifest-SHA256"]


def _approved(client, auth, second_legal, **overrides) -> str:
    rid = _create(client, auth, **overrides)["id"]
    client.post(f"/v1/legal/requests/{rid}/approve", headers=auth("legal"))
    assert client.post(f"/v1/legal/requests/{rid}/approve", headers=second_legal).status_code == 200
    return rid


def test_nothing_outside_the_scope_is_exported(client, auth, db, second_legal, settings) -> None:
    _content(db, "alice", "alice-recent", days_ago=2)
    _content(db, "alice", "alice-old", days_ago=60)  # before the approved range
    _content(db, "bob", "bob-recent", days_ago=2)  # another account
    rid = _approved(client, auth, second_legal, data_categories=["account", "decisions"])
    for ask in (
        {"accounts": ["bob"]},
        {"accounts": ["alice", "bob"]},
        {"categories": ["content"]},  # not approved
        {"start": (NOW - timedelta(days=90)).isoformat()},
    ):
        response = _produce(client, auth("legal"), rid, **ask)
        assert response.status_code == 403, ask
        assert response.json()["error"]["code"] == "out_of_scope"
    assert [r["details"]["code"] for r in _actions(db, "legal.export.refused")] == [
        "out_of_scope"
    ] * 4
    response = _produce(client, auth("legal"), rid)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"alice-recent" in everything
    assert b"bob" not in everything and b"alice-old" not in everything
    assert "content.ndjson" not in archive.namelist()
    pinned = base64.b64decode(audit.public_key_info(settings)["public_key"])
    manifest, problems = verify_bundle(response.content, pinned)
    assert problems == [] and manifest["request"]["id"] == rid
    assert {f["path"] for f in manifest["files"]} == {"account.ndjson", "decisions.ndjson"}
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as out:
        for name in archive.namelist():
            data = archive.read(name)
            out.writestr(
                name,
                data.replace(b"alice-recent", b"alice-forged")
                if name == "decisions.ndjson"
                else data,
            )
    assert "decisions.ndjson does not match" in verify_bundle(tampered.getvalue())[1][0]


def test_export_after_expiry_is_refused(client, auth, db, second_legal) -> None:
    rid = _approved(client, auth, second_legal)
    with db.session() as session:  # time passes
        session.execute(
            update(LegalRequest)
            .where(LegalRequest.id == rid)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    response = _produce(client, auth("legal"), rid)
    assert response.status_code == 403 and response.json()["error"]["code"] == "expired"
    assert _actions(db, "legal.export.refused")[-1]["details"]["code"] == "expired"


@pytest.mark.parametrize("role", ["moderator", "auditor", "lead", "integrator"])
def test_export_by_a_non_legal_role_is_refused(client, auth, db, second_legal, role) -> None:
    rid = _approved(client, auth, second_legal)
    response = _produce(client, auth(role), rid)
    assert response.status_code == 403 and "may not" in response.json()["error"]["message"]
    (refusal,) = _actions(db, "legal.export.refused")
    assert refusal["target"] == f"legal_request:{rid}" and refusal["details"]["code"] == "forbidden"
    assert f"test-{role}" in refusal["actor"]


def test_preserved_records_survive_the_retention_sweep(client, auth, db, settings) -> None:
    kept = _content(db, "carol", "carol-old", days_ago=400)
    gone = _content(db, "dave", "dave-old", days_ago=400)
    fresh = _content(db, "dave", "dave-new", days_ago=1)
    preservation = _create(
        client, auth, type="preservation_request", accounts=["carol"], data_categories=[],
        start=(NOW - timedelta(days=500)).isoformat(), legal_basis="18 U.S.C. 2703(f)",
    )  # fmt: skip
    assert preservation["status"] == "approved"  # a hold discloses nothing: in force at once
    (hold,) = client.get("/v1/legal/holds", headers=auth("legal")).json()["holds"]
    assert hold["accounts"] == ["carol"]
    assert datetime.fromisoformat(hold["expires_at"]) - utcnow() > timedelta(
        days=89
    )  # 90 days, renewable
    renewed = client.post(f"/v1/legal/holds/{hold['id']}/renew", headers=auth("legal")).json()
    assert renewed["renewals"] == 1 and renewed["expires_at"] > hold["expires_at"]
    settings.retention_days = 365
    with db.session() as session:
        result = service.retention_sweep(session, settings)
    assert result["deleted"] == 1 and result["kept_for_holds"] == 1
    with db.session() as session:
        assert session.get(Content, kept) is not None
        assert session.get(Content, gone) is None and session.get(Content, fresh) is not None
        assert session.scalar(select(Decision).where(Decision.content_pk == gone)) is None
    assert _actions(db, "retention.sweep")[0]["details"]["kept_for_holds"] == 1
    client.post(f"/v1/legal/holds/{hold['id']}/release", headers=auth("legal"))
    with db.session() as session:
        assert service.retention_sweep(session, settings)["deleted"] == 1


def test_emergency_disclosure_one_approval_and_a_second_review(
    client, auth, db, second_legal
) -> None:
    emergency = {"threat": "credible threat to life tonight", "supervisor": "Sgt. Jones"}
    rid = _create(client, auth, type="emergency_disclosure", emergency=emergency)["id"]
    approved = client.post(f"/v1/legal/requests/{rid}/approve", headers=auth("legal")).json()
    assert approved["status"] == "approved" and approved["second_review"]["due_at"]
    assert _produce(client, auth("legal"), rid).status_code == 200
    notices = client.get("/v1/legal/notices", headers=auth("legal")).json()["notices"]
    assert [(n["status"], n["reason"]) for n in notices] == [("withheld", "emergency")]
    with db.session() as session:  # 72 hours pass without a second review
        session.execute(
            update(LegalRequest)
            .where(LegalRequest.id == rid)
            .values(review_due_at=utcnow() - timedelta(hours=1))
        )
        service.tick(session)
    overdue = client.get("/v1/legal/emergency/overdue", headers=auth("auditor")).json()["overdue"]
    assert [r["id"] for r in overdue] == [rid] and overdue[0]["second_review"]["overdue"]
    assert len(_actions(db, "legal.emergency.overdue")) == 1
    same = client.post(
        f"/v1/legal/requests/{rid}/emergency-review",
        json={"outcome": "confirmed"},
        headers=auth("legal"),
    )
    assert same.status_code == 409
    review = client.post(
        f"/v1/legal/requests/{rid}/emergency-review",
        json={"outcome": "confirmed"},
        headers=second_legal,
    ).json()
    assert review["second_review"]["outcome"] == "confirmed"
    assert _actions(db, "legal.emergency.review")[0]["details"]["late"] is True
    notices = client.get("/v1/legal/notices", headers=auth("legal")).json()["notices"]
    assert notices[0]["status"] == "scheduled"


def test_user_notice_waits_for_a_non_disclosure_order(client, auth, db, second_legal) -> None:
    until = NOW + timedelta(days=180)
    _approved(client, auth, second_legal, accounts=["erin"])
    _approved(client, auth, second_legal, accounts=["frank"], non_disclosure=True)
    _approved(client, auth, second_legal, accounts=["gina"], non_disclosure_until=until.isoformat())
    notices = {
        n["user_id"]: n
        for n in client.get("/v1/legal/notices", headers=auth("legal")).json()["notices"]
    }
    assert notices["erin"]["status"] == "scheduled"
    assert notices["frank"]["status"] == "withheld" and notices["frank"]["send_after"] is None
    assert notices["gina"]["status"] == "scheduled"
    assert datetime.fromisoformat(notices["gina"]["send_after"]) == until
    with db.session() as session:
        service.tick(session)
    after = {
        n["user_id"]: n["status"]
        for n in client.get("/v1/legal/notices", headers=auth("legal")).json()["notices"]
    }
    assert after == {"erin": "due", "frank": "withheld", "gina": "scheduled"}


def test_removal_order_one_hour_clock_and_report(client, auth, db, keys) -> None:
    owner = keys["integrator"].split("_")[1]
    with db.session() as session:
        session.add(WebhookEndpoint(owner_key_id=owner, url="https://example.org/h", secret="s"))
    content_pk = _content(db, "mallory", "post-77", owner=owner)
    order = {
        "authority": "Bundeskriminalamt",
        "jurisdiction": "DE",
        "reference": "TCO-2026-17",
        "received_at": (utcnow() - timedelta(minutes=20)).isoformat(),
        "statement": "Incitement to commit terrorist offences (Art. 2(7)(a))",
        "items": [{"content_id": "post-77"}, {"url": "https://example.org/missing"}],
    }
    bad = client.post(
        "/v1/legal/removal-orders", json={**order, "jurisdiction": "US"}, headers=auth("legal")
    ).json()
    assert bad["status"] == "invalid"
    created = client.post("/v1/legal/removal-orders", json=order, headers=auth("legal")).json()
    assert created["status"] == "received" and 2300 < created["seconds_left"] <= 2400
    done = client.post(
        f"/v1/legal/removal-orders/{created['order_id']}/execute", headers=auth("legal")
    ).json()
    assert done["status"] == "partial" and done["within_deadline"]
    assert [i["status"] for i in done["items"]] == ["removed", "not_found"]
    with db.session() as session:
        decision = session.scalars(
            select(Decision).where(Decision.content_pk == content_pk, Decision.outcome == "block")
        ).one()
        assert decision.automated is False and decision.reasons[0]["kind"] == "removal_order"
        (job,) = session.scalars(select(Job).where(Job.kind == "deliver_webhook")).all()
        assert job.payload["event"] == "removal"
        assert job.payload["data"]["decision_id"] == decision.id
        assert service.is_preserved(session, session.get(Content, content_pk))  # Art. 6
    confirmation = client.get(
        f"/v1/legal/removal-orders/{created['order_id']}/confirmation", headers=auth("legal")
    ).json()
    assert 1150 < confirmation["seconds_to_removal"] < 1300
    report = client.get("/v1/legal/removal-orders/report", headers=auth("auditor")).json()
    assert report["received"] == 2 and report["executed_within_deadline"] == 1
    assert report["invalid"] == 1 and report["items_removed"] == 1
    actions = {e.action for e in _entries(db)}
    assert {"legal.removal.receive", "legal.removal.execute", "legal.removal.confirm"} <= actions


def _entries(db) -> list[AuditEntry]:
    with db.session() as session:
        return audit.list_entries(session, limit=1000)


def test_every_step_is_in_the_audit_log_and_the_log_verifies(
    client, auth, db, second_legal, settings
) -> None:
    rid = _approved(client, auth, second_legal)
    _produce(client, auth("legal"), rid)
    with db.session() as session:
        audit.sign_tree_head(session, settings, force=True)
        lines = list(audit.export_lines(session, settings))
    from prescreen.audit.verify import verify_export

    report = verify_export(lines)
    assert report.ok and report.covered == report.entries
    steps = [e.action for e in _entries(db) if e.target == f"legal_request:{rid}"]
    assert steps == [
        "legal.request.receive",
        "legal.request.approve",
        "legal.request.approve",
        "legal.request.executable",
        "legal.notice.schedule",
        "legal.export",
    ]
    assert datetime.fromisoformat(_entries(db)[-1].logged_at.replace("Z", "+00:00")).tzinfo == UTC
