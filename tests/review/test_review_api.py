"""The review API: queue, claims, decisions feeding the banks, appeals, strikes, CSAM handling."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from tests.media import jpeg
from tests.review.conftest import edited

from prescreen.core.db import utcnow
from prescreen.jobs.models import Job
from prescreen.review.models import ReviewCase, ReviewMedia, Strike


def _entries(review, bank: str) -> list[dict]:
    response = review.client.get(f"/v1/banks/{bank}/entries", headers=review.headers("lead"))
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def _webhook(review, env_settings) -> None:
    env_settings(webhook_allow_private="true")
    response = review.client.put(
        "/v1/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=review.headers("integrator")
    )
    assert response.status_code in (200, 201), response.text


def _events(review, event: str) -> list[dict]:
    with review.db.session() as session:
        jobs = session.scalars(select(Job).where(Job.kind == "deliver_webhook")).all()
        return [j.payload["data"] for j in jobs if j.payload.get("event") == event]


def test_held_upload_opens_a_case_with_media_for_reviewers_only(review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    decision, summary = review.held_case(1)
    assert summary["priority"] == "high" and summary["kind"] == "held"
    assert summary["labels"] == ["terrorism"] and not summary["sla_breached"]
    case = review.case(summary["id"])
    item = case["items"][0]
    assert item["decision"]["id"] == decision["id"]
    match = item["matches"][0]
    assert match["bank"] == "terror-hold" and match["bank_kind"] == "hold"
    assert match["entry_exists"] and isinstance(match["distance"], int)
    media = review.client.get(item["media_url"], headers=review.headers("moderator"))
    assert media.status_code == 200
    assert media.headers["content-type"] == "image/jpeg"
    assert media.headers["cache-control"] == "no-store"
    assert media.content[:3] == b"\xff\xd8\xff"
    for role in ("integrator", "auditor", "legal"):
        assert review.client.get(item["media_url"], headers=review.headers(role)).status_code == 403
    assert review.client.get(item["media_url"]).status_code == 401


def test_violating_banks_the_content_and_blocks_edited_copies(review, env_settings) -> None:
    _webhook(review, env_settings)
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    decision, summary = review.held_case(1, user_id="uploader-9")
    media_url = review.case(summary["id"])["items"][0]["media_url"]
    decided = review.decide(
        summary["id"], verdict="violating", label="terrorism", share=True, reason="ISIS logo"
    )
    assert decided.status_code == 201, decided.text
    body = decided.json()["decision"]
    assert body["verdict"] == "violating" and body["share"] is True
    assert body["reviewer"].startswith("apikey:") and body["bank"] == "review-violating"
    entries = _entries(review, "review-violating")
    assert [e["id"] for e in entries] == [body["bank_entries"][0]["entry"]]
    assert entries[0]["labels"] == ["terrorism"]
    assert entries[0]["signals"]["pdq"] == decision["signals"]["pdq"]
    # The media is gone with the decision.
    assert review.client.get(media_url, headers=review.headers("moderator")).status_code == 404
    # A differently edited copy is now blocked by the bank the decision fed.
    again = review.screen(edited(1, variant=2), user_id="someone-else")
    assert again["decision"] == "block"
    assert any(m["bank"] == "review-violating" for m in again["matches"])
    # The same content_id now answers with the human decision and its statement of reasons.
    latest = review.screen(edited(1), content_id=decision["content_id"], user_id="uploader-9")
    assert latest["decision"] == "block" and latest["automated"] is False
    sor = review.client.get(
        f"/v1/review/statements/{latest['statement_of_reasons_id']}",
        headers=review.headers("integrator"),
    ).json()
    assert sor["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert sor["category"] == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
    assert sor["automated_detection"] is True
    assert sor["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert "ISIS logo" in sor["decision_facts"] and sor["content_type"] == ["CONTENT_TYPE_IMAGE"]
    # The platform is told to remove it.
    [event] = _events(review, "review_decision")
    assert event["action"] == "remove" and event["content_id"] == decision["content_id"]
    assert event["statement_of_reasons_id"] == sor["id"]
    with review.db.session() as session:
        assert session.scalars(select(Strike.user_id)).all() == ["uploader-9"]


def test_violating_into_a_chosen_bank(review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    review.bank("terror-block", "block", ["terrorism"], [5])
    _, summary = review.held_case(1)
    unknown = review.decide(summary["id"], verdict="violating", label="terrorism", bank="new")
    assert unknown.status_code == 404  # reviewers do not create banks
    allow = review.client.post(
        "/v1/banks", json={"name": "ok", "kind": "allow"}, headers=review.headers("lead")
    )
    assert allow.status_code == 201
    wrong = review.decide(summary["id"], verdict="violating", label="terrorism", bank="ok")
    assert wrong.status_code == 422
    assert review.decide(summary["id"], verdict="violating").status_code == 422  # no label
    chosen = review.decide(
        summary["id"], verdict="violating", label="terrorism", bank="terror-block"
    )
    assert chosen.status_code == 201
    assert len(_entries(review, "terror-block")) == 2


def test_not_violating_allow_lists_the_content(review, env_settings) -> None:
    _webhook(review, env_settings)
    review.bank("hate-hold", "hold", ["hate"], [2])
    _, summary = review.held_case(2)
    assert summary["priority"] == "normal"
    assert review.decide(summary["id"], verdict="not_violating").status_code == 201
    assert len(_entries(review, "review-allow-list")) == 1
    assert review.screen(edited(2), user_id="user-2")["decision"] == "allow"
    [event] = _events(review, "review_decision")
    assert event["action"] == "publish" and event["statement_of_reasons_id"] is None


def test_claims_are_exclusive(review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    _, summary = review.held_case(1)
    review.key("mod-b", "moderator")
    case_id = summary["id"]
    claimed = review.client.post(
        f"/v1/review/cases/{case_id}/claim", headers=review.headers("moderator")
    )
    assert claimed.status_code == 200 and claimed.json()["claimed_by"].startswith("apikey:")
    other = review.client.post(f"/v1/review/cases/{case_id}/claim", headers=review.headers("mod-b"))
    assert other.status_code == 409
    assert review.decide(case_id, "mod-b", verdict="not_violating").status_code == 409
    assert (
        review.client.post(
            f"/v1/review/cases/{case_id}/release", headers=review.headers("mod-b")
        ).status_code
        == 403
    )
    released = review.client.post(
        f"/v1/review/cases/{case_id}/release", headers=review.headers("moderator")
    )
    assert released.status_code == 200 and released.json()["claimed_by"] is None
    assert review.decide(case_id, "mod-b", verdict="not_violating").status_code == 201
    assert review.decide(case_id, "moderator", verdict="violating", label="x").status_code == 409


def test_expired_claims_lapse(review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    _, summary = review.held_case(1)
    review.key("mod-b", "moderator")
    review.client.post(
        f"/v1/review/cases/{summary['id']}/claim", headers=review.headers("moderator")
    )
    with review.db.session() as session:
        session.execute(update(ReviewCase).values(claim_expires_at=utcnow() - timedelta(seconds=1)))
    taken = review.client.post(
        f"/v1/review/cases/{summary['id']}/claim", headers=review.headers("mod-b")
    )
    assert taken.status_code == 200


def test_escalated_cases_are_for_leads(review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    _, summary = review.held_case(1)
    escalated = review.decide(summary["id"], verdict="escalate", reason="unsure: news footage?")
    assert escalated.status_code == 201 and escalated.json()["case"]["status"] == "escalated"
    assert review.cases("moderator") == []
    forbidden = review.client.get(
        f"/v1/review/cases/{summary['id']}", headers=review.headers("moderator")
    )
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert review.decide(summary["id"], verdict="not_violating").status_code == 403
    assert [c["id"] for c in review.cases("lead")] == [summary["id"]]
    assert review.decide(summary["id"], "lead", verdict="escalate").status_code == 409
    assert review.decide(summary["id"], "lead", verdict="not_violating").status_code == 201


def test_appeal_goes_to_another_reviewer_and_reversal_removes_the_bank_entry(
    review, env_settings
) -> None:
    _webhook(review, env_settings)
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    decision, summary = review.held_case(1, user_id="uploader-7")
    review.key("mod-b", "moderator")
    assert review.decide(summary["id"], verdict="violating", label="terrorism").status_code == 201
    assert len(_entries(review, "review-violating")) == 1
    appeal = {"content_id": decision["content_id"], "user_id": "uploader-7", "reason": "satire"}
    wrong_user = review.client.post(
        "/v1/appeals", json={**appeal, "user_id": "someone"}, headers=review.headers("integrator")
    )
    assert wrong_user.status_code == 403
    assert (
        review.client.post(
            "/v1/appeals", json=appeal, headers=review.headers("moderator")
        ).status_code
        == 403
    )
    created = review.client.post("/v1/appeals", json=appeal, headers=review.headers("integrator"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "open" and body["first_reviewer"].startswith("apikey:")
    again = review.client.post("/v1/appeals", json=appeal, headers=review.headers("integrator"))
    assert again.status_code == 409
    # The first reviewer does not get the appeal; another moderator does.
    assert all(c["id"] != body["case_id"] for c in review.cases("moderator"))
    assert review.case(body["case_id"], "mod-b")["appeal"]["reason"] == "satire"
    denied = review.client.post(
        f"/v1/review/cases/{body['case_id']}/appeal-decision",
        json={"outcome": "reversed"},
        headers=review.headers("moderator"),
    )
    assert denied.status_code == 403
    assert (
        review.client.post(
            f"/v1/review/cases/{body['case_id']}/claim", headers=review.headers("moderator")
        ).status_code
        == 403
    )
    reversed_ = review.client.post(
        f"/v1/review/cases/{body['case_id']}/appeal-decision",
        json={"outcome": "reversed", "reason": "satire, not propaganda"},
        headers=review.headers("mod-b"),
    )
    assert reversed_.status_code == 201, reversed_.text
    assert _entries(review, "review-violating") == []
    outcome = review.client.get(
        f"/v1/appeals/{body['id']}", headers=review.headers("integrator")
    ).json()
    assert outcome["outcome"] == "reversed" and outcome["decided_by"].startswith("apikey:")
    # Copies are no longer blocked (the original hold bank still holds them for review).
    assert review.screen(edited(1, variant=2), user_id="x")["decision"] == "hold"
    with review.db.session() as session:
        assert session.scalar(select(Strike.revoked_at)) is not None
    [event] = _events(review, "appeal_decision")
    assert event["action"] == "publish" and event["outcome"] == "reversed"
    latest = review.screen(edited(1), content_id=decision["content_id"], user_id="uploader-7")
    assert latest["decision"] == "allow"


def test_appeal_rules(review) -> None:
    review.bank("terror-block", "block", ["terrorism"], [1])
    allowed = review.screen(jpeg(50), user_id="u1")
    assert allowed["decision"] == "allow"
    nothing = review.client.post(
        "/v1/appeals",
        json={"decision_id": allowed["id"], "user_id": "u1"},
        headers=review.headers("integrator"),
    )
    assert nothing.status_code == 409
    blocked = review.screen(edited(1), user_id="u1")
    assert blocked["decision"] == "block"
    review.key("other-platform", "integrator")
    foreign = review.client.post(
        "/v1/appeals",
        json={"decision_id": blocked["id"], "user_id": "u1"},
        headers=review.headers("other-platform"),
    )
    assert foreign.status_code == 404
    both = review.client.post(
        "/v1/appeals",
        json={"decision_id": blocked["id"], "content_id": "x", "user_id": "u1"},
        headers=review.headers("integrator"),
    )
    assert both.status_code == 422
    extra = review.client.post(
        "/v1/appeals",
        json={"decision_id": blocked["id"], "user_id": "u1", "surprise": 1},
        headers=review.headers("integrator"),
    )
    assert extra.status_code == 422
    nul = review.client.post(
        "/v1/appeals",
        json={"decision_id": blocked["id"], "user_id": "u1", "reason": "a\x00b"},
        headers=review.headers("integrator"),
    )
    assert nul.status_code == 422
    # An automated block can be appealed; reversing it allow-lists the content.
    created = review.client.post(
        "/v1/appeals",
        json={"decision_id": blocked["id"], "user_id": "u1", "reason": "my own photo"},
        headers=review.headers("integrator"),
    )
    assert created.status_code == 201, created.text
    assert created.json()["first_reviewer"] is None
    case_id = created.json()["case_id"]
    done = review.client.post(
        f"/v1/review/cases/{case_id}/appeal-decision",
        json={"outcome": "reversed"},
        headers=review.headers("moderator"),
    )
    assert done.status_code == 201, done.text
    assert review.screen(edited(1, variant=1), user_id="u1")["decision"] == "allow"


def test_repeat_offenders_are_held(review, env_settings) -> None:
    env_settings(strike_count=2, strike_window_days=30)
    review.bank("terror-hold", "hold", ["terrorism"], [1, 2])
    for seed in (1, 2):
        _, summary = review.held_case(seed, user_id="offender")
        assert (
            review.decide(summary["id"], verdict="violating", label="terrorism").status_code == 201
        )
    held = review.screen(jpeg(77), user_id="offender")
    assert held["decision"] == "hold"
    assert held["reasons"][0]["kind"] == "repeat_offender" and held["reasons"][0]["strikes"] == 2
    assert review.screen(jpeg(78), user_id="someone-else")["decision"] == "allow"
    history = review.case(review.cases()[0]["id"])["uploader_history"]
    assert history["strikes"] == 2 and len(history["decisions"]) == 2
    # Strikes outside the window do not count.
    with review.db.session() as session:
        session.execute(update(Strike).values(created_at=utcnow() - timedelta(days=31)))
    assert review.screen(jpeg(79), user_id="offender")["decision"] == "allow"


def test_csam_cases_keep_no_media(review) -> None:
    review.bank("csam-hold", "hold", ["csam"], [3])
    decision, summary = review.held_case(3)
    assert summary["csam"] is True and summary["priority"] == "critical"
    case = review.case(summary["id"])
    assert case["items"][0]["media_url"] is None and case["items"][0]["media_type"] is None
    assert case["items"][0]["signals"]["pdq"] == decision["signals"]["pdq"]
    with review.db.session() as session:
        assert session.scalars(select(ReviewMedia)).all() == []
    url = f"/v1/review/cases/{summary['id']}/media/{case['items'][0]['content_pk']}"
    assert review.client.get(url, headers=review.headers("admin")).status_code == 404
    decided = review.decide(summary["id"], verdict="violating", label="csam")
    assert decided.status_code == 201
    sor_id = review.screen(edited(3), content_id=decision["content_id"])["statement_of_reasons_id"]
    sor = review.client.get(
        f"/v1/review/statements/{sor_id}", headers=review.headers("lead")
    ).json()
    assert sor["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    assert sor["category_specification"] == ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]


def test_queue_order_grouping_sla_and_stats(review) -> None:
    review.bank("hate-hold", "hold", ["hate"], [2])
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    review.bank("csam-hold", "hold", ["csam"], [3])
    review.held_case(2, user_id="a")
    review.held_case(1, user_id="b")
    review.held_case(3, user_id="c")
    # The same content from another uploader joins the open case.
    review.screen(edited(1), user_id="d")
    queue = review.cases()
    assert [c["priority"] for c in queue] == ["critical", "high", "normal"]
    assert queue[1]["items"] == 2
    with review.db.session() as session:
        session.execute(
            update(ReviewCase)
            .where(ReviewCase.priority == 2)
            .values(due_at=utcnow() - timedelta(minutes=5))
        )
    stats = review.client.get("/v1/review/stats", headers=review.headers("moderator")).json()
    assert stats["queue"]["total"] == 3 and stats["sla"]["breaching_now"] == 1
    assert stats["queue"]["by_priority"] == {"critical": 1, "high": 1, "normal": 1, "low": 0}
    late = [c for c in review.cases() if c["sla_breached"]]
    assert [c["priority"] for c in late] == ["normal"]
    assert review.decide(late[0]["id"], verdict="not_violating").status_code == 201
    stats = review.client.get("/v1/review/stats", headers=review.headers("lead")).json()
    assert stats["sla"] == {"breaching_now": 0, "decided_late_24h": 1}
    assert stats["decisions_24h"]["total"] == 1
    assert stats["decisions_24h"]["per_hour"][-1] == {"hours_ago": 0, "count": 1}
    decided = review.cases(status="decided")
    assert decided[0]["sla_breached"] is True and decided[0]["outcome"] == "not_violating"


def test_user_reports_enter_the_queue(review) -> None:
    allowed = review.screen(jpeg(60), user_id="poster")
    report = review.client.post(
        "/v1/reports",
        json={"content_id": allowed["content_id"], "reporter_id": "r1", "category": "terrorism"},
        headers=review.headers("integrator"),
    )
    assert report.status_code == 201, report.text
    assert report.json()["priority"] == "high"
    case = review.case(report.json()["case_id"])
    assert case["kind"] == "report" and case["items"][0]["report_category"] == "terrorism"
    assert case["items"][0]["media_url"] is None
    assert review.decide(case["id"], verdict="violating", label="terrorism").status_code == 201
    again = review.screen(jpeg(60), user_id="other")
    assert again["decision"] == "block"


def test_roles_on_review_routes(review) -> None:
    moderator, integrator = review.headers("moderator"), review.headers("integrator")
    for path in ("/v1/review/users",):
        assert review.client.get(path, headers=moderator).status_code == 403
        assert review.client.get(path, headers=review.headers("lead")).status_code == 403
        assert review.client.get(path, headers=review.headers("admin")).status_code == 200
    created = review.client.post(
        "/v1/review/users",
        json={"username": "mia", "password": "a long passphrase", "role": "moderator"},
        headers=moderator,
    )
    assert created.status_code == 403
    for path in ("/v1/review/cases", "/v1/review/stats"):
        assert review.client.get(path, headers=integrator).status_code == 403
        assert review.client.get(path, headers=review.headers("auditor")).status_code == 403
        assert review.client.get(path, headers=moderator).status_code == 200
    assert review.client.post("/v1/reports", json={}, headers=moderator).status_code == 403
    bad = review.client.post(
        "/v1/review/cases/00000000-0000-0000-0000-000000000000/decision",
        json={"verdict": "violating", "label": "x", "oops": True},
        headers=moderator,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    missing = review.decide("00000000-0000-0000-0000-000000000000", verdict="not_violating")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_admins_manage_ui_users_through_the_api(review) -> None:
    admin = review.headers("admin")
    created = review.client.post(
        "/v1/review/users",
        json={"username": "Mia", "password": "a long passphrase", "role": "moderator"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "mia" and "password" not in created.text
    short = review.client.post(
        "/v1/review/users",
        json={"username": "bo", "password": "short", "role": "moderator"},
        headers=admin,
    )
    assert short.status_code == 422
    dup = review.client.post(
        "/v1/review/users",
        json={"username": "mia", "password": "a long passphrase", "role": "lead"},
        headers=admin,
    )
    assert dup.status_code == 409
    user_id = created.json()["id"]
    disabled = review.client.patch(
        f"/v1/review/users/{user_id}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
