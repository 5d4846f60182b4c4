"""The HTTP API as an integrator, a lead and an outsider see it."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from tests.media import encode, jpeg, photo

from prescreen.banks.models import Bank
from prescreen.banks.service import NewEntry, add_entries
from prescreen.core.db import Database
from prescreen.screening.models import Content, Decision
from prescreen.signals.image import decode_image, pdq_hash


def _bank(client, auth, name="terror", **fields):
    response = client.post("/v1/banks", json={"name": name, **fields}, headers=auth("lead"))
    assert response.status_code == 201, response.text
    return response.json()


def _add_image(client, auth, bank, data, labels="terrorism"):
    response = client.post(
        f"/v1/banks/{bank}/content",
        files={"file": ("x.jpg", data, "image/jpeg")},
        data={"labels": labels},
        headers=auth("lead"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _screen_image(client, auth, data, **fields):
    return client.post(
        "/v1/screen",
        files={"file": ("upload.jpg", data, "image/jpeg")},
        data=fields,
        headers=auth("integrator"),
    )


def test_screen_blocks_an_edited_copy_and_allows_other_content(client, auth) -> None:
    _bank(client, auth, labels=["terrorism"])
    original = photo(1)
    entry = _add_image(client, auth, "terror", encode(original, quality=95))
    edited = encode(original.resize((400, 300)), quality=40)
    response = _screen_image(client, auth, edited, content_id="c-1", user_id="u-1")
    assert response.status_code == 200
    body = response.json()
    assert body["decision"] == "block"
    assert body["content_id"] == "c-1" and body["user_id"] == "u-1"
    assert body["matches"][0]["bank"] == "terror"
    assert body["matches"][0]["entry"] == entry["id"]
    assert body["matches"][0]["signal_type"] == "pdq"
    assert body["reasons"][0]["label"] == "terrorism"
    assert body["statement_of_reasons_id"]
    assert set(body["signals"]) >= {"pdq", "pdq_quality", "md5", "sha256"}
    other = _screen_image(client, auth, jpeg(99)).json()
    assert other["decision"] == "allow" and other["matches"] == []


def test_repeat_content_id_returns_the_stored_decision(client, auth, db) -> None:
    data = jpeg(2)
    first = _screen_image(client, auth, data, content_id="same").json()
    second = _screen_image(client, auth, data, content_id="same").json()
    assert first == second
    conflict = _screen_image(client, auth, jpeg(3), content_id="same")
    assert conflict.status_code == 409
    assert "different content" in conflict.json()["error"]["message"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1


def test_text_url_and_hash_screening(client, auth) -> None:
    _bank(client, auth, "texts", kind="hold", labels=["hate"])
    text = "An example propaganda slogan"
    response = client.post(
        "/v1/banks/texts/entries",
        json={"signals": {"text": client.post(
            "/v1/hash", json={"text": text}, headers=auth("integrator")
        ).json()["signals"]["text"]}, "labels": ["hate"]},
        headers=auth("lead"),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    held = client.post(
        "/v1/screen", json={"text": "AN  EXAMPLE propaganda slogan!!"}, headers=auth("integrator")
    ).json()
    assert held["decision"] == "hold" and held["content_type"] == "text"

    _bank(client, auth, "links", labels=["terrorism"])
    url_hash = client.post(
        "/v1/hash", json={"url": "https://bad.example/post?id=1"}, headers=auth("integrator")
    ).json()["signals"]["url"]
    client.post(
        "/v1/banks/links/entries", json={"signals": {"url": url_hash}}, headers=auth("lead")
    )
    blocked = client.post(
        "/v1/screen",
        json={"url": "HTTPS://www.BAD.example/post?id=1&utm_source=feed#x"},
        headers=auth("integrator"),
    ).json()
    assert blocked["decision"] == "block" and blocked["matches"][0]["bank"] == "links"

    pdq, quality = pdq_hash(decode_image(jpeg(4), 10**8))
    hashes = client.post(
        "/v1/screen",
        json={"hashes": {"pdq": pdq, "pdq_quality": quality}},
        headers=auth("integrator"),
    ).json()
    assert hashes["decision"] == "allow" and hashes["signals"]["pdq"] == pdq


def test_allow_list_wins_and_strictest_action_wins(client, auth) -> None:
    data = jpeg(5)
    _bank(client, auth, "held", kind="hold")
    _add_image(client, auth, "held", data, labels="hate")
    assert _screen_image(client, auth, data).json()["decision"] == "hold"
    _bank(client, auth, "blocked", kind="block")
    _add_image(client, auth, "blocked", data)
    assert _screen_image(client, auth, data).json()["decision"] == "block"
    _bank(client, auth, "known-good", kind="allow")
    _add_image(client, auth, "known-good", data, labels="news")
    result = _screen_image(client, auth, data).json()
    assert result["decision"] == "allow"
    assert {r["kind"] for r in result["reasons"]} == {"allow_list"}


def test_per_bank_threshold(client, auth) -> None:
    original = photo(6)
    _bank(client, auth, "strict", pdq_threshold=0)
    _add_image(client, auth, "strict", encode(original, quality=95))
    edited = encode(original.resize((320, 240)), quality=30)
    distance = client.post(
        "/v1/lookup",
        json={"signals": {"pdq": client.post(
            "/v1/hash", files={"file": ("e.jpg", edited, "image/jpeg")}, headers=auth("integrator")
        ).json()["signals"]["pdq"]}},
        headers=auth("integrator"),
    ).json()["matches"]  # fmt: skip
    assert distance == []  # the edit is more than 0 bits away
    client.patch("/v1/banks/strict", json={"pdq_threshold": 31}, headers=auth("lead"))
    assert _screen_image(client, auth, edited).json()["decision"] == "block"


def test_disable_entry_until_a_time(client, auth) -> None:
    data = jpeg(8)
    _bank(client, auth)
    entry = _add_image(client, auth, "terror", data)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = client.patch(
        f"/v1/banks/terror/entries/{entry['id']}",
        json={"enabled": False, "disabled_until": later},
        headers=auth("lead"),
    )
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert _screen_image(client, auth, data).json()["decision"] == "allow"
    earlier = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    client.patch(
        f"/v1/banks/terror/entries/{entry['id']}",
        json={"disabled_until": earlier},
        headers=auth("lead"),
    )
    assert _screen_image(client, auth, data).json()["decision"] == "block"
    client.patch(
        f"/v1/banks/terror/entries/{entry['id']}", json={"enabled": False}, headers=auth("lead")
    )
    assert _screen_image(client, auth, data).json()["decision"] == "allow"
    client.delete(f"/v1/banks/terror/entries/{entry['id']}", headers=auth("lead"))
    assert (
        client.get(f"/v1/banks/terror/entries/{entry['id']}", headers=auth("lead")).status_code
        == 404
    )


def test_bank_crud_and_provenance(client, auth, keys) -> None:
    created = _bank(client, auth, "crud", labels=["csam"], description="test")
    assert created["kind"] == "block" and created["pdq_threshold"] == 31
    entry = _add_image(client, auth, "crud", jpeg(9), labels="csam")
    assert entry["provenance"]["added_by"].startswith("apikey:")
    assert entry["provenance"]["created_at"]
    listed = client.get("/v1/banks", headers=auth("moderator")).json()
    assert [(b["name"], b["entries"]) for b in listed] == [("crud", 1)]
    updated = client.patch("/v1/banks/crud", json={"kind": "hold"}, headers=auth("lead")).json()
    assert updated["kind"] == "hold"
    assert client.post("/v1/banks", json={"name": "crud"}, headers=auth("lead")).status_code == 409
    assert client.delete("/v1/banks/crud", headers=auth("lead")).status_code == 204
    assert client.get("/v1/banks/crud", headers=auth("lead")).status_code == 404
    assert _screen_image(client, auth, jpeg(9)).json()["decision"] == "allow"


def test_ndjson_export_then_import_round_trips(client, auth) -> None:
    _bank(client, auth, "source", labels=["terrorism"])
    for seed in (10, 11, 12):
        _add_image(client, auth, "source", jpeg(seed))
    exported = client.get("/v1/banks/source/export", headers=auth("lead")).text.splitlines()
    header = json.loads(exported[0])
    assert header["format"] == "prescreen-bank/1" and header["bank"]["name"] == "source"
    assert len(exported) == 4
    _bank(client, auth, "copy")
    report = client.post(
        "/v1/banks/copy/import",
        content="\n".join(exported),
        headers={**auth("lead"), "Content-Type": "application/x-ndjson"},
    ).json()
    assert report == {"added": 3, "skipped": 0, "errors": []}
    copied = client.get("/v1/banks/copy/entries", headers=auth("lead")).json()["entries"]
    originals = [json.loads(line) for line in exported[1:]]
    assert [e["signals"] for e in copied] == [o["signals"] for o in originals]


def test_import_with_a_bad_line_changes_nothing_unless_skipping(client, auth) -> None:
    _bank(client, auth, "imp")
    good = json.dumps({"signals": {"pdq": "0f" * 32}, "labels": ["terrorism"]})
    lines = "\n".join([good, '{"signals": {"pdq": "zz"}}', "not json", good.replace("0f", "f0")])
    headers = {**auth("lead"), "Content-Type": "application/x-ndjson"}
    refused = client.post("/v1/banks/imp/import", content=lines, headers=headers)
    assert refused.status_code == 422
    assert [e["line"] for e in refused.json()["error"]["detail"]["errors"]] == [2, 3]
    assert client.get("/v1/banks/imp/entries", headers=auth("lead")).json()["entries"] == []
    skipped = client.post("/v1/banks/imp/import?skip_invalid=true", content=lines, headers=headers)
    assert skipped.json()["added"] == 2 and skipped.json()["skipped"] == 2


def test_lookup_filters_by_bank(client, auth) -> None:
    _bank(client, auth, "a")
    _bank(client, auth, "b")
    data = jpeg(13)
    _add_image(client, auth, "a", data)
    _add_image(client, auth, "b", data)
    pdq = client.post(
        "/v1/hash", files={"file": ("x.jpg", data, "image/jpeg")}, headers=auth("integrator")
    ).json()["signals"]["pdq"]
    both = client.post("/v1/lookup", json={"signals": {"pdq": pdq}}, headers=auth("integrator"))
    assert sorted(m["bank"] for m in both.json()["matches"]) == ["a", "b"]
    only_b = client.post(
        "/v1/lookup", json={"signals": {"pdq": pdq}, "banks": ["b"]}, headers=auth("integrator")
    )
    assert [m["bank"] for m in only_b.json()["matches"]] == ["b"]


def _image_pdq(client, auth, data) -> str:
    hashed = client.post(
        "/v1/hash", files={"file": ("x.jpg", data, "image/jpeg")}, headers=auth("integrator")
    )
    return hashed.json()["signals"]["pdq"]


def test_a_lookup_matches_what_another_process_added_a_moment_before(client, auth, db) -> None:
    _bank(client, auth, "shared")
    body = {"signals": {"pdq": _image_pdq(client, auth, jpeg(22))}}
    missed = client.post("/v1/lookup", json=body, headers=auth("integrator"))
    assert missed.json() == {"matches": []}
    other_process = Database(db.url)  # the CLI, another worker: its own engine and pool
    with other_process.session() as session:
        bank = session.scalars(select(Bank).where(Bank.name == "shared")).one()
        add_entries(session, bank, [NewEntry({"pdq": body["signals"]["pdq"]})], added_by="cli")
    other_process.dispose()
    for _ in range(2):  # the first applies the change, the second reads the index as it is
        found = client.post("/v1/lookup", json=body, headers=auth("integrator")).json()
        assert [(m["bank"], m["distance"]) for m in found["matches"]] == [("shared", 0)]


def test_requests_are_answered_while_a_lookup_waits_for_a_busy_index(client, auth) -> None:
    """A lookup that finds the index held by another thread (one applying a bulk import holds
    it for seconds) waits in a request thread, not on the event loop: health checks and other
    requests go on being answered, and the lookup is answered once the index is free."""
    _bank(client, auth, "busy")
    data = jpeg(21)
    _add_image(client, auth, "busy", data)
    body = {"signals": {"pdq": _image_pdq(client, auth, data)}}
    assert client.post("/v1/lookup", json=body, headers=auth("integrator")).status_code == 200
    index = client.app.state.matcher._lock
    with ThreadPoolExecutor(2) as pool:
        index.acquire()
        try:
            waiting = pool.submit(client.post, "/v1/lookup", json=body, headers=auth("integrator"))
            time.sleep(0.3)
            assert not waiting.done()
            health = pool.submit(client.get, "/healthz").result(timeout=5)
            assert health.json() == {"status": "ok"}
        finally:
            index.release()
        found = waiting.result(timeout=10).json()
    assert [m["bank"] for m in found["matches"]] == ["busy"]


def test_every_decision_is_stored_and_readable(client, auth, db) -> None:
    decision = _screen_image(client, auth, jpeg(14), user_id="u-9").json()
    fetched = client.get(f"/v1/decisions/{decision['id']}", headers=auth("auditor")).json()
    assert fetched == decision
    with db.session() as session:
        content = session.scalars(select(Content)).one()
        assert content.user_id == "u-9" and content.signals["pdq"] == decision["signals"]["pdq"]


def test_operations_endpoints(client, auth) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    _screen_image(client, auth, jpeg(15))
    metrics = client.get("/metrics").text
    assert 'prescreen_http_requests_total{method="POST",route="/v1/screen",status="200"}' in metrics
    assert 'prescreen_decisions_total{outcome="allow"}' in metrics
    assert client.get("/openapi.json").json()["info"]["title"] == "prescreen"


def test_low_quality_pdq_match_holds_but_never_blocks(client, auth) -> None:
    _bank(client, auth, "flat")
    flat = "0" * 64
    client.post("/v1/banks/flat/entries", json={"signals": {"pdq": flat}}, headers=auth("lead"))
    weak = client.post(
        "/v1/screen", json={"hashes": {"pdq": flat, "pdq_quality": 10}}, headers=auth("integrator")
    ).json()
    assert weak["decision"] == "hold"
    assert weak["reasons"][0]["kind"] == "bank_match_low_quality"
    strong = client.post(
        "/v1/screen", json={"hashes": {"pdq": flat, "pdq_quality": 90}}, headers=auth("integrator")
    ).json()
    assert strong["decision"] == "block"


def test_patch_with_null_fields_leaves_them_unchanged(client, auth) -> None:
    _bank(client, auth, "nulls", labels=["hate"])
    response = client.patch(
        "/v1/banks/nulls", json={"labels": None, "kind": None}, headers=auth("lead")
    )
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["hate"] and response.json()["kind"] == "block"


def test_text_classifier_scores_and_model_version_are_in_the_reasons(client, auth) -> None:
    held = client.post(
        "/v1/screen",
        json={"text": "Join us, brothers, the day is coming"},
        headers=auth("integrator"),
    ).json()
    assert held["decision"] == "hold"  # by default a classifier alone holds, never blocks
    terrorism = next(r for r in held["reasons"] if r.get("head") == "terrorism")
    assert terrorism["kind"] == "classifier" and terrorism["action"] == "hold"
    assert terrorism["model_version"].startswith("prescreen-text-")
    calm = client.post(
        "/v1/screen", json={"text": "hello world"}, headers=auth("integrator")
    ).json()
    assert calm["decision"] == "allow"
    assert {r["head"] for r in calm["reasons"]} == {"terrorism", "hate"}
    assert all(0 <= r["score"] <= 1 for r in calm["reasons"])


def test_bank_changes_through_the_api_are_audited_with_the_calling_key(client, auth, keys) -> None:
    _bank(client, auth, "audited")
    client.patch("/v1/banks/audited", json={"kind": "hold"}, headers=auth("lead"))
    client.delete("/v1/banks/audited", headers=auth("lead"))
    entries = client.get("/v1/audit/entries?action=bank.*", headers=auth("auditor")).json()
    actions = {e["action"]: e["actor"] for e in entries["entries"]}
    lead_key_id = keys["lead"].split("_")[1]
    for action in ("bank.create", "bank.update", "bank.delete"):
        assert actions[action].startswith(f"apikey:{lead_key_id}"), (action, actions)


def test_a_write_is_answered_only_once_it_is_committed(client, auth, db, caplog) -> None:
    """The transaction commits before the response goes out: a 2xx means stored (the next
    request sees it), and a commit that fails is a 503, never a success that was not kept; the
    operator's log says why it failed."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    def refuse(_session) -> None:
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    assert client.get("/v1/banks", headers=auth("lead")).status_code == 200
    event.listen(db.sessions, "before_commit", refuse)
    try:
        failed = client.post("/v1/banks", json={"name": "never"}, headers=auth("lead"))
    finally:
        event.remove(db.sessions, "before_commit", refuse)
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "database_unavailable"
    logged = [r for r in caplog.records if r.getMessage().startswith("database error")]
    # (the app's in-process job worker may commit meanwhile and be refused too)
    assert ("database is locked", True) in [(r.error, r.committing) for r in logged]
    assert client.get("/v1/banks/never", headers=auth("lead")).status_code == 404
    created = client.post("/v1/banks", json={"name": "kept"}, headers=auth("lead"))
    assert created.status_code == 201
    assert client.get("/v1/banks/kept", headers=auth("lead")).status_code == 200


def test_every_route_commits_its_session_before_answering(settings, db) -> None:
    """A route that took the session with FastAPI's default scope would commit after its
    response was sent (see the test above); none may."""
    from fastapi.routing import APIRoute

    from prescreen.app import create_app
    from prescreen.core.deps import get_session

    def sessions(dependant):
        for sub in dependant.dependencies:
            if sub.call is get_session:
                yield sub
            yield from sessions(sub)

    def routes(items):
        for item in items:
            if isinstance(item, APIRoute):
                yield item
            included = getattr(item, "original_router", None)  # an included APIRouter
            if included is not None:
                yield from routes(included.routes)

    taken = [
        (route.path, sub.scope)
        for route in routes(create_app(settings, db).routes)
        for sub in sessions(route.dependant)
    ]
    assert len(taken) >= 50
    assert [path for path, scope in taken if scope != "function"] == []


def test_uploads_racing_on_one_content_id_get_one_stored_decision(db, settings) -> None:
    """Every request has looked for a stored decision before any stores one (the matcher's
    annotator hook holds each until all have): one is stored, and every caller gets it."""
    from threading import Barrier, Thread

    from prescreen.banks.service import create_bank
    from prescreen.matching import service as matching
    from prescreen.screening.service import ScreenRequest, hash_given, screen

    with db.session() as session:
        create_bank(session, "racing", kind="block", labels=["terrorism"])
    matcher, racers = matching.Matcher(), 4
    all_looked = Barrier(racers, timeout=30)

    def hold_until_all_looked(_session, matches):
        all_looked.wait()
        return matches

    results: list[dict] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            request = ScreenRequest(hash_given({"pdq": "ab" * 32}), content_id="raced")
            results.append(screen(db, matcher, settings, request))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    matching._annotators.append(hold_until_all_looked)
    try:
        threads = [Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        matching._annotators.remove(hold_until_all_looked)
    assert not errors, errors
    assert len(results) == racers and all(r == results[0] for r in results)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1
        assert session.scalar(select(func.count()).select_from(Content)) == 1
