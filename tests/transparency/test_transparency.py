"""Statements of reasons for every restrictive decision, checked against the DSA schema by an
independent validator; the TCO report against the recorded events; CSAM bundles under a hold;
charts decoded as images; the CLI as a real process; the UI page."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta

import jsonschema_rs
import pytest
from PIL import Image
from sqlalchemy import select, update
from typer.testing import CliRunner

from prescreen.audit.models import AuditEntry
from prescreen.cli import app as cli_app
from prescreen.core import cli_context
from prescreen.core.db import utcnow
from prescreen.legal import service as legal
from prescreen.legal.models import PreservationHold
from prescreen.review import users
from prescreen.review.models import StatementOfReasons
from prescreen.screening.models import Content, Decision
from prescreen.transparency import charts, statements

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SCHEMA = json.loads(statements.SCHEMA_PATH.read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)
USER_IDS = ("user-a", "user-b", "user-c", "user-d", "user-e", "user-f")
TODAY = utcnow().date()
PERIOD = {"from": (TODAY - timedelta(days=6)).isoformat(), "to": TODAY.isoformat()}


def _get(world, path: str, role: str = "legal", **params):
    response = world.review.client.get(path, params=params, headers=world.review.headers(role))
    assert response.status_code == 200, response.text
    return response


def _every_restrictive_decision_has_a_statement_valid_against_the_schema(world, db) -> None:
    with db.session() as session:  # the removal order was executed ten days ago
        session.execute(
            update(Decision)
            .where(Decision.policy_version == "removal-order")
            .values(created_at=utcnow() - timedelta(days=10))
        )
    recent = _get(world, "/v1/transparency/dsa/export", **PERIOD).json()
    assert recent["statements"] == 9
    wider = {**PERIOD, "from": (TODAY - timedelta(days=12)).isoformat()}
    export = _get(world, "/v1/transparency/dsa/export", **wider).json()
    with db.session() as session:
        restrictive = session.scalars(
            select(Decision).where(Decision.outcome.in_(["hold", "block"]))
        ).all()
        stored = {s.id: s for s in session.scalars(select(StatementOfReasons))}
    # 2 automatic blocks, 4 automatic holds, 3 human blocks, 1 removal-order block
    assert len(restrictive) == 10
    assert {d.statement_of_reasons_id for d in restrictive} <= set(stored)
    assert export["statements"] == 10 and len(export["batches"]) == 1
    for batch in export["batches"]:
        VALIDATOR.validate(batch)  # an independent validator
        assert statements.batch_errors(batch) == []  # the one exports use
    text = json.dumps(export)
    assert not any(user in text for user in USER_IDS), "no personal data in the export"
    by_puid = {s["puid"]: s for s in export["batches"][0]["statements"]}
    automatic = next(s for p, s in by_puid.items() if p.startswith("upload-csam-block-"))
    assert automatic["automated_detection"] == "Yes"
    assert automatic["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    assert automatic["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    assert automatic["category_specification"] == ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]
    assert automatic["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    ordered = next(s for p, s in by_puid.items() if p.startswith("post-77-"))
    assert ordered["source_type"] == "SOURCE_TYPE_OTHER_NOTIFICATION"
    assert ordered["category_specification"] == ["KEYWORD_TERRORIST_CONTENT"]
    assert ordered["illegal_content_legal_ground"].startswith("Regulation (EU) 2021/784")
    assert ordered["automated_detection"] == "No" and ordered["content_language"] == "DE"
    held = [s for p, s in by_puid.items() if p.startswith("upload-hold-2-")]
    assert held[0]["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    hate = [s for p, s in by_puid.items() if p.startswith("upload-hate-")]
    assert {s["decision_ground"] for s in hate} == {"DECISION_GROUND_INCOMPATIBLE_CONTENT"}


def _without(record: dict, name: str) -> dict:
    return {k: v for k, v in record.items() if k != name}


def _batches_hold_at_most_100_and_broken_statements_are_refused(world, db) -> None:
    with db.session() as session:
        rows = statements.statements_between(session)
        batch = {"statements": [statements.dsa_statement(session, rows[0])] * 101}
    assert any("more than 100" in e for e in statements.batch_errors(batch))
    assert not VALIDATOR.is_valid(batch)
    one = dict(batch["statements"][0])
    for broken in (
        {**one, "user_id": "user-a"},  # unknown field: personal data has no place
        {**one, "puid": "has spaces"},
        {**one, "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT", "category": "X"},
        {k: v for k, v in one.items() if k != "decision_visibility"},
        {**one, "content_type": ["CONTENT_TYPE_OTHER"], "content_type_other": ""},
        {**_without(one, "content_type_other"), "content_type": ["CONTENT_TYPE_OTHER"]},
        {**_without(one, "illegal_content_legal_ground")},  # the ground needs its legal basis
    ):
        assert statements.batch_errors({"statements": [broken]})
        assert not VALIDATOR.is_valid({"statements": [broken]})


def _the_user_sees_the_statement_of_their_decision(world) -> None:
    block = world.contents["csam_block"]
    sid = block["statement_of_reasons_id"]
    shown = _get(world, f"/v1/transparency/statements/{sid}", "integrator").json()
    assert shown["content_id"] == "upload-csam-block" and shown["in_force"]
    assert shown["statement"]["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert "appeal" in shown["redress"]["internal_complaint"]
    listed = _get(world, "/v1/transparency/statements", "integrator", content_id="upload-hold-1")
    kinds = [s["statement"]["automated_decision"] for s in listed.json()["statements"]]
    assert kinds == ["AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_NOT_AUTOMATED"]
    reversed_ = _get(world, "/v1/transparency/statements", "integrator",
                     content_id="upload-terror-block").json()["statements"]  # fmt: skip
    assert [s["in_force"] for s in reversed_] == [False]  # the appeal reinstated it
    client, other = world.review.client, world.review.key("other-platform", "integrator")
    hidden = client.get(
        f"/v1/transparency/statements/{sid}", headers={"Authorization": f"Bearer {other}"}
    )
    assert hidden.status_code == 404


def _tco_report_counts_match_the_recorded_events(world) -> None:
    year = TODAY.year
    tco = _get(world, "/v1/transparency/tco", "auditor", year=year).json()
    lists = {b["name"]: b["entries"] for b in tco["a_measures"]["hash_lists"]}
    assert lists == {"review-violating": 1, "terror-block": 1, "terror-hold": 3}
    assert tco["b_reappearance"] == {
        **tco["b_reappearance"],
        "uploads_matched_known_material": 4,  # 1 terror block + 3 terror holds
        "blocked": 1,
        "held_for_review": 3,
    }
    c = tco["c_removed_or_disabled"]
    assert c["following_removal_orders"] == 1
    assert c["following_specific_measures"] == 2  # the automatic block and hold 1 confirmed
    orders = c["removal_orders"]
    assert orders["received"] == 3 and orders["executed_within_one_hour"] == 1
    assert orders["not_executed"] == 2 and orders["items_removed"] == 1
    reasons = {r["status"]: r["reason"] for r in orders["not_executed_reasons"]}
    assert reasons["unable"].startswith("manifest error")
    assert reasons["invalid"] == "the order failed validation"
    assert tco["d_complaints"] == {
        "complaints": 2, "outcomes": {"upheld": 1, "reversed": 1, "pending": 0}
    }  # fmt: skip
    assert tco["e_review_proceedings"]["brought"] == 1
    assert tco["e_review_proceedings"]["outcomes"] == {"annulled": 1}
    assert tco["f_reinstatements_after_proceedings"] == 1
    assert tco["g_reinstatements_after_complaints"] == 1
    html = _get(world, "/v1/transparency/tco", year=year, format="html").text
    assert "(g) Reinstatements by the provider after a complaint" in html
    earlier = _get(world, "/v1/transparency/tco", year=year - 1).json()
    assert earlier["c_removed_or_disabled"]["removal_orders"]["received"] == 0


def _csam_bundles_carry_the_report_fields_and_a_one_year_hold(world, db) -> None:
    client, headers = world.review.client, world.review.headers("legal")
    body = {"reporter": {"name": "Example Platform", "email": "safety@example.org"}}
    created = client.post("/v1/transparency/csam-reports", json=body, headers=headers)
    assert created.status_code == 201, created.text
    reports = {
        r["bundle"]["fileDetails"][0]["platformContentId"]: r for r in created.json()["created"]
    }
    assert set(reports) == {"upload-csam-block", "upload-hold-3"}
    by_hash = reports["upload-csam-block"]["bundle"]
    assert by_hash["reporter"]["name"] == "Example Platform"
    assert by_hash["incidentSummary"]["incidentDateTime"].endswith("+00:00")
    assert by_hash["personOrUserReported"]["espIdentifier"] == "user-b"
    details = by_hash["fileDetails"][0]
    assert {"md5", "sha256", "pdq"} <= set(details["hashes"])
    assert details["detection"]["method"] == "hash_match"
    assert details["detection"]["matches"][0]["bank"] == "csam-known"
    assert details["fileViewedByEsp"] is False
    by_person = reports["upload-hold-3"]["bundle"]["fileDetails"][0]["detection"]
    assert by_person["method"] == "human_review" and by_person["reviewLabel"] == "csam"
    again = client.post("/v1/transparency/csam-reports", json=body, headers=headers)
    assert again.json()["created"] == []
    with db.session() as session:
        for report in reports.values():
            hold = session.get(PreservationHold, report["hold_id"])
            assert 364 <= (hold.expires_at - utcnow()).days <= 365
        content = session.scalar(select(Content).where(Content.content_id == "upload-csam-block"))
        assert legal.is_preserved(session, content)
        actions = session.scalars(select(AuditEntry.action)).all()
    assert actions.count("transparency.csam.bundle") == 2
    rid = reports["upload-csam-block"]["id"]
    done = client.post(f"/v1/transparency/csam-reports/{rid}/submitted",
                       json={"ncmec_report_id": "123456"}, headers=headers)  # fmt: skip
    assert done.status_code == 200 and done.json()["status"] == "submitted"
    read = _get(world, f"/v1/transparency/csam-reports/{rid}", "auditor").json()
    assert read["ncmec_report_id"] == "123456" and read["bundle"] == by_hash
    with db.session() as session:
        reads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "transparency.csam.read")
        ).all()
    assert len(reads) == 1
    forbidden = client.post("/v1/transparency/csam-reports", json=body,
                            headers=world.review.headers("moderator"))  # fmt: skip
    assert forbidden.status_code == 403


def _assert_chart(png: bytes, svg: bytes) -> None:
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.size == (800, 400)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 8, "the chart is not blank"
    assert ET.fromstring(svg).tag.endswith("svg")


def _charts_render_as_images(world) -> None:
    for name in charts.CHARTS:
        png = _get(world, f"/v1/transparency/charts/{name}.png", "lead", **PERIOD).content
        svg = _get(world, f"/v1/transparency/charts/{name}.svg", "lead", **PERIOD).content
        _assert_chart(png, svg)
    figures = _get(world, "/v1/transparency/report", "lead", **PERIOD).json()
    totals = figures["decisions"]["totals"]
    assert totals["restrictive"] == 10 and totals["restrictive_automated"] == 6
    assert figures["appeals"]["reversal_rate"] == 0.5
    assert figures["removal_orders"]["within_deadline"] == 1
    assert 19 < figures["removal_orders"]["orders"][0]["minutes_to_removal"] < 22


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the CLI is the same on both
def test_cli_writes_the_report_and_charts(world, settings, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out" / "report.csv"
    env = {**os.environ, "PRESCREEN_DATABASE_URL": settings.database_url,
           "PRESCREEN_DATA_DIR": str(tmp_path)}  # fmt: skip
    command = [sys.executable, "-m", "prescreen.cli", "transparency", "report",
               "--from", PERIOD["from"], "--to", PERIOD["to"], "--format", "csv",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = out.read_text().splitlines()
    assert rows[0] == "metric,bucket,value"
    assert "decisions.totals.restrictive,,10" in rows
    assert "tco.g_reinstatements_after_complaints,,1" in rows
    folder = out.parent / "charts"
    for name in charts.CHARTS:
        _assert_chart((folder / f"{name}.png").read_bytes(), (folder / f"{name}.svg").read_bytes())
    for name, value in env.items():
        if name.startswith("PRESCREEN_"):
            monkeypatch.setenv(name, value)
    cli_context.reset()
    bad = CliRunner().invoke(
        cli_app, ["transparency", "report", "--from", "2026-02-01", "--to", "2026-01-01"]
    )
    cli_context.reset()
    assert bad.exit_code == 1 and "must not be after" in bad.output


def _bad_input_and_roles(world) -> None:
    client, review = world.review.client, world.review
    assert (
        client.get("/v1/transparency/report", headers=review.headers("moderator")).status_code
        == 403
    )
    assert client.get("/v1/transparency/report").status_code == 401
    reversed_period = client.get("/v1/transparency/report", params={"from": "2026-02-01",
                                 "to": "2026-01-01"}, headers=review.headers("lead"))  # fmt: skip
    assert reversed_period.status_code == 422
    assert reversed_period.json()["error"]["message"]
    unknown = client.post("/v1/transparency/tco/proceedings",
                          json={"order_id": world.orders["executed"]["order_id"],
                                "kind": "judicial", "extra": 1},
                          headers=review.headers("legal"))  # fmt: skip
    assert unknown.status_code == 422
    missing = client.get("/v1/transparency/statements/" + "0" * 36,
                         headers=review.headers("auditor"))  # fmt: skip
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    assert (
        client.get("/v1/transparency/charts/nope.png", headers=review.headers("lead")).status_code
        == 422
    )


def test_statements_of_reasons(world, db) -> None:
    _every_restrictive_decision_has_a_statement_valid_against_the_schema(world, db)
    _batches_hold_at_most_100_and_broken_statements_are_refused(world, db)
    _the_user_sees_the_statement_of_their_decision(world)


def test_reports_bundles_and_charts(world, db) -> None:
    _tco_report_counts_match_the_recorded_events(world)
    _csam_bundles_carry_the_report_fields_and_a_one_year_hold(world, db)
    _charts_render_as_images(world)
    _bad_input_and_roles(world)


def _user(db, name: str, role: str) -> None:
    with db.session() as session:
        users.create_user(session, name, PASSWORD, role)


def _login(client, name: str):
    token = CSRF.search(client.get("/ui/login").text).group(1)
    form = {"username": name, "password": PASSWORD, "csrf_token": token}
    return client.post("/ui/login", data=form, follow_redirects=False)


def test_dashboard_page(world, db) -> None:
    client = world.review.client
    for role in ("lead", "legal"):
        client.cookies.clear()
        _user(db, f"t-{role}", role)
        assert _login(client, f"t-{role}").status_code == 303
        page = client.get("/ui/transparency", params=PERIOD)
        assert page.status_code == 200, page.text
        for name in charts.CHARTS:
            assert f"/ui/transparency/charts/{name}.png?" in page.text
        assert 'href="/ui/transparency" aria-current="page"' in page.text
    png = client.get("/ui/transparency/charts/decisions_by_outcome.png", params=PERIOD).content
    assert Image.open(io.BytesIO(png)).size == (800, 400)
    download = client.get("/ui/transparency/report.html", params=PERIOD)
    assert download.status_code == 200 and "data:image/png;base64," in download.text
    client.cookies.clear()
    _user(db, "t-moderator", "moderator")
    _login(client, "t-moderator")
    assert client.get("/ui/transparency").status_code == 403
