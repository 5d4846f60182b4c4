"""The review UI in a real browser (Debian's Chromium driven by Playwright) against a real server
process with its own database: moderators decide held uploads, the decisions feed the banks,
appeals go to a different moderator, and CSAM is never rendered.

Set PRESCREEN_SCREENSHOTS_DIR (e.g. docs/screenshots) to also write the documentation's
screenshots of the queue, a case and the dashboard.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.media import jpeg
from tests.review.conftest import edited

from prescreen.core.auth import create_api_key
from prescreen.core.db import Database
from prescreen.core.schema import upgrade
from prescreen.review import users

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "a long and careful passphrase"
SCREENSHOTS = os.environ.get("PRESCREEN_SCREENSHOTS_DIR")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"browser tests need Debian's Chromium at {CHROMIUM} (CI installs it: apt-get install "
    "chromium)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    """A running server, its API keys, and the cases made for the tests."""

    base: str
    keys: dict[str, str]
    http: httpx.Client
    cases: dict[str, str] = field(default_factory=dict)
    content_ids: dict[str, str] = field(default_factory=dict)
    uploads: int = 0

    def api(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def bank(self, name: str, kind: str, label: str, seeds: list[int]) -> None:
        response = self.http.post(
            "/v1/banks",
            json={"name": name, "kind": kind, "labels": [label]},
            headers=self.api("lead"),
        )
        assert response.status_code == 201, response.text
        for seed in seeds:
            added = self.http.post(
                f"/v1/banks/{name}/content",
                files={"file": ("b.jpg", jpeg(seed), "image/jpeg")},
                data={"labels": label},
                headers=self.api("lead"),
            )
            assert added.status_code == 201, added.text

    def screen(self, data: bytes, user_id: str, content_id: str | None = None) -> dict:
        self.uploads += 1
        response = self.http.post(
            "/v1/screen",
            files={"file": ("u.jpg", data, "image/jpeg")},
            data={"content_id": content_id or f"post-{self.uploads}", "user_id": user_id},
            headers=self.api("integrator"),
        )
        assert response.status_code == 200, response.text
        return response.json()

    def hold(self, name: str, data: bytes, user_id: str) -> None:
        decision = self.screen(data, user_id)
        assert decision["decision"] == "hold", decision
        cases = self.http.get("/v1/review/cases", headers=self.api("admin")).json()["cases"]
        for case in cases:
            detail = self.http.get(f"/v1/review/cases/{case['id']}", headers=self.api("admin"))
            if any(i["content_id"] == decision["content_id"] for i in detail.json()["items"]):
                self.cases[name], self.content_ids[name] = case["id"], decision["content_id"]
                return
        raise AssertionError(f"no case for {name}")

    def entries(self, bank: str) -> list[dict]:
        response = self.http.get(f"/v1/banks/{bank}/entries", headers=self.api("lead"))
        return response.json()["entries"] if response.status_code == 200 else []


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("review-browser")
    url = f"sqlite:///{home / 'prescreen.db'}"
    db = Database(url)
    upgrade(db)
    with db.session() as session:
        keys = {role: create_api_key(session, role, f"browser-{role}")[1] for role in
                ("integrator", "lead", "admin")}  # fmt: skip
        for name, role in (("mod", "moderator"), ("mod2", "moderator"), ("admin", "admin")):
            users.create_user(session, name, PASSWORD, role)
    db.dispose()
    port = _free_port()
    env = {
        **os.environ,
        "PRESCREEN_DATABASE_URL": url,
        "PRESCREEN_PORT": str(port),
        "PRESCREEN_DATA_DIR": str(home),
        "PRESCREEN_WORKERS_IN_PROCESS": "0",
        "PRESCREEN_LOG_JSON": "false",
        "PRESCREEN_LOG_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prescreen.cli", "serve"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (home / "server.log").read_text()
            time.sleep(0.2)
        else:
            pytest.fail("server did not become ready in 60 s")
        with httpx.Client(base_url=base, timeout=30) as client:
            w = World(base, keys, client)
            w.bank("terror-hold", "hold", "terrorism", [1, 4])
            w.bank("hate-hold", "hold", "hate", [2])
            w.bank("csam-hold", "hold", "csam", [3])
            w.hold("terror", edited(1), "uploader-1")
            w.hold("appealed", edited(4), "uploader-4")
            w.hold("hate", edited(2), "uploader-2")
            w.hold("csam", edited(3), "uploader-3")
            reported = w.screen(jpeg(60), "uploader-5")
            w.http.post(
                "/v1/reports",
                json={"content_id": reported["content_id"], "category": "hate", "reason": "slur"},
                headers=w.api("integrator"),
            )
            yield w
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _login(browser, world: World, username: str):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{world.base}/ui/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/queue$"))
    return context, page


def _filter(page, selector: str) -> str:
    return page.eval_on_selector(selector, "el => getComputedStyle(el).filter")


def _shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=False)


def test_moderator_marks_a_held_image_violating_and_copies_are_then_blocked(browser, world) -> None:
    context, page = _login(browser, world, "mod")
    try:
        assert page.locator(f"tr[data-case='{world.cases['terror']}']").count() == 1
        assert page.locator("#admin-link").count() == 0
        _shot(page, "queue.png")
        page.click(f"tr[data-case='{world.cases['terror']}'] a.case-link")
        page.wait_for_url(re.compile(rf".*/ui/cases/{world.cases['terror']}$"))
        image = page.locator("figure.media img")
        image.wait_for()
        page.wait_for_function("document.querySelector('figure.media img').complete")
        assert "blur" in _filter(page, "figure.media img")
        assert "grayscale" in _filter(page, "figure.media img")
        assert page.locator("text=terror-hold").count() >= 1  # the match, explained
        _shot(page, "case.png")
        image.click()
        page.wait_for_selector("figure.media.revealed")
        assert _filter(page, "figure.media img") == "grayscale(1)"
        page.keyboard.press("c")  # claim
        page.wait_for_selector("text=Claimed by you")
        page.keyboard.press("v")
        assert page.is_checked("input[value=violating]")
        page.select_option("#label-select", "terrorism")
        page.fill("textarea[name=reason]", "Propaganda video still with a group logo")
        page.keyboard.press("Control+Enter")
        page.wait_for_url(re.compile(r".*/ui/queue\?done=violating$"))
        assert page.locator(f"tr[data-case='{world.cases['terror']}']").count() == 0
    finally:
        context.close()
    copy = world.screen(edited(1, variant=2), "someone-else")
    assert copy["decision"] == "block"
    assert any(m["bank"] == "review-violating" for m in copy["matches"])


def test_moderator_marks_a_case_not_violating_and_it_is_allowed_again(browser, world) -> None:
    context, page = _login(browser, world, "mod")
    try:
        page.goto(f"{world.base}/ui/cases/{world.cases['hate']}")
        page.keyboard.press("n")
        assert page.is_checked("input[value=not_violating]")
        page.click("#decide-button")
        page.wait_for_url(re.compile(r".*/ui/queue\?done=not_violating$"))
    finally:
        context.close()
    assert world.screen(edited(2), "uploader-2")["decision"] == "allow"
    assert world.screen(edited(2, variant=1), "another")["decision"] == "allow"


def test_an_appeal_goes_to_another_moderator_and_reversal_removes_the_bank_entry(
    browser, world
) -> None:
    case_id = world.cases["appealed"]
    context, page = _login(browser, world, "mod")
    try:
        page.goto(f"{world.base}/ui/cases/{case_id}")
        page.check("input[value=violating]")
        page.select_option("#label-select", "terrorism")
        page.click("#decide-button")
        page.wait_for_url(re.compile(r".*/ui/queue\?done=violating$"))
        banked = [
            e for e in world.entries("review-violating") if case_id in e["provenance"]["note"]
        ]
        assert len(banked) == 1
        assert world.screen(edited(4, variant=2), "x")["decision"] == "block"
        appeal = world.http.post(
            "/v1/appeals",
            json={
                "content_id": world.content_ids["appealed"],
                "user_id": "uploader-4",
                "reason": "This is a news report about the attack.",
            },
            headers=world.api("integrator"),
        )
        assert appeal.status_code == 201, appeal.text
        appeal_case = appeal.json()["case_id"]
        assert appeal.json()["first_reviewer"] == "user:mod"
        page.goto(f"{world.base}/ui/queue")
        assert page.locator(f"tr[data-case='{appeal_case}']").count() == 0
        denied = page.goto(f"{world.base}/ui/cases/{appeal_case}")
        assert denied is not None and denied.status == 403
    finally:
        context.close()
    context, page = _login(browser, world, "mod2")
    try:
        row = page.locator(f"tr[data-case='{appeal_case}']")
        assert row.count() == 1
        row.locator("a.case-link").click()
        page.wait_for_selector("text=news report about the attack")
        page.keyboard.press("x")
        assert page.is_checked("input[value=reversed]")
        page.click("#decide-button")
        page.wait_for_url(re.compile(r".*/ui/queue\?done=reversed$"))
    finally:
        context.close()
    assert [e for e in world.entries("review-violating") if e["id"] == banked[0]["id"]] == []
    assert world.screen(edited(4, variant=2), "y")["decision"] == "hold"
    outcome = world.http.get(
        f"/v1/appeals/{appeal.json()['id']}", headers=world.api("integrator")
    ).json()
    assert outcome["outcome"] == "reversed" and outcome["decided_by"] == "user:mod2"


def test_a_csam_case_renders_no_image_and_no_media_url_answers(browser, world) -> None:
    case_id = world.cases["csam"]
    detail = world.http.get(f"/v1/review/cases/{case_id}", headers=world.api("admin")).json()
    content_pk = detail["items"][0]["content_pk"]
    context, page = _login(browser, world, "mod")
    try:
        first = page.locator("tr.case-row").first
        assert first.get_attribute("data-case") == case_id  # CSAM first in the queue
        page.goto(f"{world.base}/ui/cases/{case_id}")
        page.wait_for_selector("text=never displayed")
        assert page.locator("img").count() == 0 and page.locator("video").count() == 0
        assert "/media/" not in page.content()
        for url in (
            f"{world.base}/ui/cases/{case_id}/media/{content_pk}",
            f"{world.base}/v1/review/cases/{case_id}/media/{content_pk}",
        ):
            assert page.request.get(url).status in (401, 404)
        assert page.request.get(f"{world.base}/ui/cases/{case_id}/media/{content_pk}").status == 404
    finally:
        context.close()
    api = world.http.get(
        f"/v1/review/cases/{case_id}/media/{content_pk}", headers=world.api("admin")
    )
    assert api.status_code == 404


def test_moderators_see_no_admin_pages_and_admins_do(browser, world) -> None:
    context, page = _login(browser, world, "mod")
    try:
        assert page.locator("#admin-link").count() == 0
        response = page.goto(f"{world.base}/ui/admin/users")
        assert response is not None and response.status == 403
    finally:
        context.close()
    context, page = _login(browser, world, "admin")
    try:
        page.click("#admin-link")
        page.wait_for_url(re.compile(r".*/ui/admin/users$"))
        assert page.locator("td", has_text="mod2").count() == 1
        page.goto(f"{world.base}/ui/dashboard")
        page.wait_for_selector("text=Decisions per hour")
        _shot(page, "dashboard.png")
    finally:
        context.close()
