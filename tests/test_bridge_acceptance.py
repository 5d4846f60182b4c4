"""A bank built from one photo catches its edits and nothing unrelated (through the HTTP API).

Measured distances from bridge-1-original at threshold 31 are recorded in docs/matching.md:
every bridge-mods edit is 0-16 bits away (blocked); the 7 rotations and mirrors are 106-128 bits
away with plain PDQ and are caught through the upload's rotation/mirror variants.
"""

from __future__ import annotations

import pytest
from tests.conftest import PDQ_DATA, needs_pdq_data

DATA = PDQ_DATA / "pdq/data"
UNRELATED = [
    "reg-test-input/labelme-subset/q0122.jpg",
    "reg-test-input/labelme-subset/q0291.jpg",
    "reg-test-input/labelme-subset/q0746.jpg",
    "reg-test-input/labelme-subset/q1050.jpg",
    "reg-test-input/labelme-subset/q2821.jpg",
    "misc-images/c.png",
    "misc-images/wee.jpg",
    "reg-test-input/pen-and-coaster.png",
    "reg-test-input/exif-rotn/exif-rotn-1.jpg",
    "reg-test-input/exif-rotn/exif-rotn-6.jpg",
]


def _screen(client, auth, path):
    with path.open("rb") as f:
        response = client.post(
            "/v1/screen", files={"file": (path.name, f, "image/jpeg")}, headers=auth("integrator")
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def bridge_bank(client, auth):
    response = client.post(
        "/v1/banks", json={"name": "bridge", "labels": ["terrorism"]}, headers=auth("lead")
    )
    assert response.status_code == 201, response.text
    original = DATA / "reg-test-input/dih/bridge-1-original.jpg"
    with original.open("rb") as f:
        added = client.post(
            "/v1/banks/bridge/content",
            files={"file": (original.name, f, "image/jpeg")},
            data={"labels": "terrorism"},
            headers=auth("lead"),
        )
    assert added.status_code == 201, added.text
    return added.json()


@needs_pdq_data()
def test_every_bridge_edit_is_blocked(client, auth, bridge_bank) -> None:
    edits = sorted((DATA / "bridge-mods").glob("*.jpg"))
    assert len(edits) == 12
    for path in edits:
        result = _screen(client, auth, path)
        assert result["decision"] == "block", path.name
        (match,) = result["matches"]
        assert match["bank"] == "bridge" and match["entry"] == bridge_bank["id"]
        assert match["label"] == "terrorism" and match["distance"] <= 16


@needs_pdq_data()
def test_rotations_and_mirrors_are_caught_through_their_variants(client, auth, bridge_bank) -> None:
    variants = sorted((DATA / "reg-test-input/dih").glob("bridge-[2-8]-*.jpg"))
    assert len(variants) == 7
    for path in variants:
        result = _screen(client, auth, path)
        assert result["decision"] == "block", path.name
        (reason,) = result["reasons"]
        assert reason["query_variant"] != "original" and reason["distance"] <= 31


@needs_pdq_data()
def test_a_bank_can_turn_rotation_matching_off(client, auth, bridge_bank) -> None:
    client.patch("/v1/banks/bridge", json={"match_dihedral": False}, headers=auth("lead"))
    rotated = _screen(client, auth, DATA / "reg-test-input/dih/bridge-2-rotate-90.jpg")
    assert rotated["decision"] == "allow"


@needs_pdq_data()
def test_unrelated_images_are_allowed(client, auth, bridge_bank) -> None:
    for name in UNRELATED:
        result = _screen(client, auth, DATA / name)
        assert result["decision"] == "allow", name
        assert result["reasons"] == [{"kind": "no_match"}]


@needs_pdq_data()
def test_a_corner_badge_is_caught_unless_the_bank_turns_overlay_matching_off(
    client, auth, tmp_path
) -> None:
    from PIL import Image, ImageDraw

    original = DATA / "reg-test-input/labelme-subset/q0746.jpg"
    created = client.post("/v1/banks", json={"name": "badges"}, headers=auth("lead"))
    assert created.status_code == 201, created.text
    with original.open("rb") as f:
        added = client.post(
            "/v1/banks/badges/content", files={"file": ("q.jpg", f)}, headers=auth("lead")
        )
    assert added.status_code == 201, added.text
    stamped = Image.open(original).convert("RGB")
    ImageDraw.Draw(stamped).ellipse((215, 8, 248, 41), fill=(220, 20, 30), outline="white")
    path = tmp_path / "stamped.jpg"
    stamped.save(path, quality=90)

    caught = _screen(client, auth, path)
    assert caught["decision"] == "block"
    assert caught["reasons"][0]["query_variant"] == "corner_tr"
    turned_off = client.patch(
        "/v1/banks/badges", json={"match_overlays": False}, headers=auth("lead")
    )
    assert turned_off.status_code == 200 and turned_off.json()["match_overlays"] is False
    assert _screen(client, auth, path)["decision"] == "allow"
