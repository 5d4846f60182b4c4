"""The web UI without a browser: login, sessions, CSRF, roles, media rules, form decisions; and
the `prescreen user` commands."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.review.conftest import edited
from typer.testing import CliRunner

from prescreen.app import create_app
from prescreen.cli import app as cli_app
from prescreen.core import cli_context
from prescreen.core.db import utcnow
from prescreen.review import users
from prescreen.review.models import UiSession, UiUser

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _user(db, name: str, role: str) -> None:
    with db.session() as session:
        users.create_user(session, name, PASSWORD, role)


def _login(client: TestClient, name: str, password: str = PASSWORD):
    page = client.get("/ui/login")
    assert page.status_code == 200
    token = CSRF.search(page.text).group(1)
    return client.post(
        "/ui/login",
        data={"username": name, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def _csrf(client: TestClient, path: str = "/ui/queue") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


@pytest.fixture
def ui(client, db):
    _user(db, "mod", "moderator")
    _user(db, "boss", "admin")
    return client


def test_passwords_are_scrypt_hashed_with_salt_and_parameters(db) -> None:
    _user(db, "alice", "moderator")
    _user(db, "bob", "moderator")
    with db.session() as session:
        hashes = session.scalars(select(UiUser.password_hash)).all()
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert hashes[0] != hashes[1] and PASSWORD not in hashes[0]
    assert users.verify_password(PASSWORD, hashes[0])
    assert not users.verify_password(PASSWORD + "x", hashes[0])


def test_login_sets_a_strict_http_only_cookie(ui) -> None:
    response = _login(ui, "mod")
    assert response.status_code == 303 and response.headers["location"] == "/ui/queue"
    cookie = response.headers["set-cookie"]
    assert "prescreen_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie
    page = ui.get("/ui/queue")
    assert page.status_code == 200 and "Review queue" in page.text
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "https://" not in page.text and "http://" not in page.text  # no CDN, no web fonts
    assert '<script src="/ui/static/htmx.min.js"' in page.text


def test_secure_cookie_flag_when_configured(settings, db) -> None:
    _user(db, "mod", "moderator")
    secure = settings.model_copy(update={"ui_cookie_secure": True})
    with TestClient(create_app(secure, db), base_url="https://testserver") as client:
        response = _login(client, "mod")
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


def test_the_session_secret_is_generated_once_and_kept_private(settings) -> None:
    first = users.session_secret(settings)
    path = settings.data_dir / users.SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert users.session_secret(settings) == first and len(first) >= 32


def test_wrong_passwords_and_lockout(ui) -> None:
    failed = _login(ui, "mod", "wrong password!!")
    assert failed.status_code == 401 and "Wrong username or password" in failed.text
    assert _login(ui, "nobody", PASSWORD).status_code == 401
    for _ in range(4):
        _login(ui, "mod", "wrong password!!")
    assert _login(ui, "mod").status_code == 401  # locked for a while, even with the password


def test_login_form_needs_its_csrf_token(ui) -> None:
    ui.get("/ui/login")
    response = ui.post(
        "/ui/login",
        data={"username": "mod", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 401 and "expired" in response.text


def test_pages_need_a_login(ui) -> None:
    for path in ("/ui/queue", "/ui/dashboard", "/ui/admin/users"):
        response = ui.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    htmx = ui.get("/ui/queue/rows", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/ui/login"


def test_every_post_needs_the_csrf_token(ui, review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    _, summary = review.held_case(1)
    _login(ui, "mod")
    token = _csrf(ui)
    claim = f"/ui/cases/{summary['id']}/claim"
    assert ui.post(claim, follow_redirects=False).status_code == 403
    assert ui.post(claim, data={"csrf_token": "nope"}, follow_redirects=False).status_code == 403
    cross = ui.post(
        claim,
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    assert ui.post(claim, data={"csrf_token": token}, follow_redirects=False).status_code == 303
    htmx = ui.post(
        f"/ui/cases/{summary['id']}/release",
        headers={"X-CSRF-Token": token},
        follow_redirects=False,
    )
    assert htmx.status_code == 303
    assert ui.post("/ui/logout", follow_redirects=False).status_code == 403


def test_idle_and_absolute_session_timeouts(ui, db) -> None:
    _login(ui, "mod")
    assert ui.get("/ui/queue").status_code == 200
    with db.session() as session:
        session.execute(update(UiSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    expired = ui.get("/ui/queue", follow_redirects=False)
    assert expired.headers["location"] == "/ui/login?expired=1"
    _login(ui, "mod")
    with db.session() as session:
        session.execute(update(UiSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert ui.get("/ui/queue", follow_redirects=False).status_code == 303


def test_logout_ends_the_session(ui) -> None:
    _login(ui, "mod")
    token = _csrf(ui)
    cookie = ui.cookies.get("prescreen_session")
    assert (
        ui.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    )
    ui.cookies.set("prescreen_session", cookie, path="/ui")
    assert ui.get("/ui/queue", follow_redirects=False).status_code == 303


def test_moderators_cannot_reach_admin_pages_and_see_no_admin_link(ui, auth) -> None:
    _login(ui, "mod")
    queue = ui.get("/ui/queue")
    assert 'id="admin-link"' not in queue.text and "/ui/admin/users" not in queue.text
    assert ui.get("/ui/admin/users").status_code == 403
    token = _csrf(ui)
    created = ui.post(
        "/ui/admin/users",
        data={"csrf_token": token, "username": "eve", "password": PASSWORD, "role": "admin"},
    )
    assert created.status_code == 403
    # ...and no /v1 route restricted to admins answers a moderator's key.
    assert ui.get("/v1/review/users", headers=auth("moderator")).status_code == 403


def test_admins_manage_users_in_the_ui(ui, db) -> None:
    _login(ui, "boss")
    queue = ui.get("/ui/queue")
    assert 'id="admin-link"' in queue.text
    page = ui.get("/ui/admin/users")
    assert page.status_code == 200 and "mod" in page.text
    token = CSRF.search(page.text).group(1)
    created = ui.post(
        "/ui/admin/users",
        data={"csrf_token": token, "username": "lee", "password": PASSWORD, "role": "lead"},
    )
    assert created.status_code == 200 and "lee" in created.text
    short = ui.post(
        "/ui/admin/users",
        data={"csrf_token": token, "username": "kim", "password": "short", "role": "lead"},
    )
    assert short.status_code == 422 and "at least 12" in short.text
    with db.session() as session:
        lee = session.scalar(select(UiUser).where(UiUser.username == "lee"))
    ui.post(f"/ui/admin/users/{lee.id}/disable", data={"csrf_token": token})
    with db.session() as session:
        assert session.get(UiUser, lee.id).disabled is True


def test_legal_and_auditor_users_cannot_review(ui, db) -> None:
    _user(db, "lex", "legal")
    _login(ui, "lex")
    assert ui.get("/ui/queue").status_code == 403
    assert ui.get("/ui/admin/users").status_code == 403


def test_case_page_blurs_media_and_decides_with_a_form(ui, review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    decision, summary = review.held_case(1)
    _login(ui, "mod")
    page = ui.get(f"/ui/cases/{summary['id']}")
    assert page.status_code == 200
    media_url = re.search(r'<img src="([^"]+)"', page.text).group(1)
    assert "data-reveal" in page.text and 'class="media"' in page.text
    assert "terror-hold" in page.text  # the match, explained
    media = ui.get(media_url)
    assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"
    assert media.headers["cache-control"] == "no-store"
    token = CSRF.search(page.text).group(1)
    decided = ui.post(
        f"/ui/cases/{summary['id']}/decide",
        data={"csrf_token": token, "verdict": "violating", "label": "terrorism", "bank": ""},
        follow_redirects=False,
    )
    assert decided.status_code == 303 and "done=violating" in decided.headers["location"]
    assert ui.get(media_url).status_code == 404
    assert decision["decision"] == "hold"
    assert review.screen(edited(1, variant=1), user_id="x")["decision"] == "block"


def test_csam_case_page_renders_no_media(ui, review) -> None:
    review.bank("csam-hold", "hold", ["csam"], [3])
    _, summary = review.held_case(3)
    _login(ui, "mod")
    page = ui.get(f"/ui/cases/{summary['id']}")
    assert page.status_code == 200
    assert "<img" not in page.text and "<video" not in page.text and "/media/" not in page.text
    assert "never displayed" in page.text
    content_pk = review.case(summary["id"])["items"][0]["content_pk"]
    assert ui.get(f"/ui/cases/{summary['id']}/media/{content_pk}").status_code == 404


def test_dashboard_shows_queue_and_decisions(ui, review) -> None:
    review.bank("terror-hold", "hold", ["terrorism"], [1])
    review.held_case(1)
    _login(ui, "mod")
    page = ui.get("/ui/dashboard")
    assert page.status_code == 200
    assert "Decisions per hour" in page.text and "past SLA now" in page.text
    assert ui.get("/ui/dashboard?partial=1").text.startswith('<div id="dashboard-panel"')


def test_user_cli(db, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_LOG_JSON", "false")
    monkeypatch.setenv("PRESCREEN_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    cli_context.reset()
    runner = CliRunner()
    try:
        result = runner.invoke(
            cli_app, ["user", "create", "--username", "Mo", "--role", "moderator"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.splitlines()[0])["username"] == "mo"
        bad = runner.invoke(cli_app, ["user", "create", "--username", "x!", "--role", "lead"])
        assert bad.exit_code == 1
        listed = runner.invoke(cli_app, ["user", "list"])
        assert [json.loads(line)["role"] for line in listed.stdout.splitlines()] == ["moderator"]
        assert PASSWORD not in listed.stdout
    finally:
        cli_context.reset()
