"""A realistic month of activity for transparency tests: screenings that are allowed, held and
blocked (terrorism, CSAM, hate), reviews, appeals (one upheld, one reversed), removal orders
(executed, not executable, invalid) and a judicial review of an order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from tests.media import jpeg
from tests.review.conftest import Review, edited

from prescreen.core.config import reset_settings
from prescreen.core.db import utcnow


@dataclass
class World:
    """What the scenario did, to compare every report against."""

    review: Review
    contents: dict[str, dict] = field(default_factory=dict)  # name -> screening decision
    appeals: dict[str, dict] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    proceeding: dict = field(default_factory=dict)


def _decide_held(review: Review, decision: dict, role: str = "moderator", **body) -> dict:
    (case,) = [
        c
        for c in review.cases("admin", status="all")
        if any(
            i["content_id"] == decision["content_id"]
            for i in review.case(c["id"], "admin")["items"]
        )
    ]
    response = review.decide(case["id"], role, **body)
    assert response.status_code == 201, response.text
    return response.json()


def _appeal(review: Review, content_id: str, user_id: str) -> dict:
    response = review.client.post(
        "/v1/appeals",
        json={"content_id": content_id, "user_id": user_id, "reason": "this is news reporting"},
        headers=review.headers("integrator"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _decide_appeal(review: Review, appeal: dict, role: str, outcome: str) -> None:
    response = review.client.post(
        f"/v1/review/cases/{appeal['case_id']}/appeal-decision",
        json={"outcome": outcome},
        headers=review.headers(role),
    )
    assert response.status_code == 201, response.text


def _order(review: Review, **overrides) -> dict:
    body = {
        "authority": "Bundeskriminalamt",
        "jurisdiction": "DE",
        "reference": "TCO-2026-17",
        "received_at": (utcnow() - timedelta(minutes=20)).isoformat(),
        "statement": "Incitement to commit terrorist offences (Art. 2(7)(a))",
        "items": [{"content_id": "post-77"}],
        **overrides,
    }
    response = review.client.post(
        "/v1/legal/removal-orders", json=body, headers=review.headers("legal")
    )
    assert response.status_code == 201, response.text
    return response.json()


def build_world(review: Review) -> World:
    world = World(review)
    review.bank("terror-hold", "hold", ["terrorism"], [1, 2, 3])
    review.bank("terror-block", "block", ["terrorism"], [4])
    review.bank("csam-known", "block", ["csam"], [5])
    review.bank("hate-hold", "hold", ["hate"], [6])
    review.key("moderator-2", "moderator")
    screen = review.screen
    world.contents["terror_block"] = screen(edited(4), "user-a", "upload-terror-block")
    world.contents["csam_block"] = screen(edited(5), "user-b", "upload-csam-block")
    for seed, user in ((1, "user-a"), (2, "user-e"), (3, "user-f")):
        world.contents[f"terror_hold_{seed}"] = screen(edited(seed), user, f"upload-hold-{seed}")
    world.contents["hate_hold"] = screen(edited(6), "user-d", "upload-hate")
    world.contents["allowed"] = screen(jpeg(77), "user-a", "upload-ok")
    url = review.client.post(
        "/v1/screen",
        json={"url": "https://example.org/recruitment-video", "content_id": "post-77",
              "user_id": "user-c", "locale": "de-DE"},
        headers=review.headers("integrator"),
    )  # fmt: skip
    assert url.status_code == 200 and url.json()["decision"] == "allow", url.text
    world.contents["ordered"] = url.json()
    assert [world.contents[k]["decision"] for k in ("terror_block", "csam_block")] == ["block"] * 2
    _decide_held(review, world.contents["terror_hold_1"], verdict="violating", label="terrorism")
    _decide_held(review, world.contents["terror_hold_2"], verdict="not_violating")
    _decide_held(review, world.contents["terror_hold_3"], verdict="violating", label="csam")
    _decide_held(review, world.contents["hate_hold"], verdict="violating", label="hate")
    world.appeals["reversed"] = _appeal(review, "upload-terror-block", "user-a")
    _decide_appeal(review, world.appeals["reversed"], "moderator", "reversed")
    world.appeals["upheld"] = _appeal(review, "upload-hold-1", "user-a")
    _decide_appeal(review, world.appeals["upheld"], "moderator-2", "upheld")
    executed = _order(review, execute=True)
    assert executed["status"] == "executed", executed
    world.orders["executed"] = executed
    unable = _order(review, reference="TCO-2026-18", items=[{"url": "https://example.org/x"}])
    response = review.client.post(
        f"/v1/legal/removal-orders/{unable['order_id']}/unable",
        json={"reason": "manifest error: the URL is not on this service"},
        headers=review.headers("legal"),
    )
    assert response.status_code == 200, response.text
    world.orders["unable"] = response.json()
    world.orders["invalid"] = _order(review, reference="TCO-2026-19", jurisdiction="US")
    assert world.orders["invalid"]["status"] == "invalid"
    proceeding = review.client.post(
        "/v1/transparency/tco/proceedings",
        json={"order_id": executed["order_id"], "kind": "judicial", "note": "satire, not terror"},
        headers=review.headers("legal"),
    )
    assert proceeding.status_code == 201, proceeding.text
    decided = review.client.patch(
        f"/v1/transparency/tco/proceedings/{proceeding.json()['id']}",
        json={"outcome": "annulled", "reinstated": True},
        headers=review.headers("legal"),
    )
    assert decided.status_code == 200, decided.text
    world.proceeding = decided.json()
    return world


@pytest.fixture
def world(client, db, keys) -> World:
    reset_settings()
    return build_world(Review(client, db, keys))
