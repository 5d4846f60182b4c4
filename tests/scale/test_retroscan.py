"""Retro-scans: content allowed before a bank gained an entry is found again, decided by the
bank's policy, and the platform is told through its signed webhook."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.webhook_receiver import WebhookReceiver

from prescreen.app import create_app
from prescreen.banks.service import NewEntry, add_entries, create_bank, get_bank
from prescreen.core.auth import Role, create_api_key
from prescreen.core.db import Database
from prescreen.jobs.service import Worker
from prescreen.matching.service import Matcher
from prescreen.review.models import ReviewCase
from prescreen.screening.retroscan import list_hits, scan_bank, scan_feed
from prescreen.screening.service import ScreenRequest, hash_given, screen
from prescreen.webhooks.service import SIGNATURE_HEADER, TIMESTAMP_HEADER, set_endpoint, verify


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def _near(hex_hash: str, bits: int) -> str:
    """The hash with its `bits` lowest bits flipped (a near-duplicate at that distance)."""
    return f"{int(hex_hash, 16) ^ ((1 << bits) - 1):064x}"


def _screen(db, settings, matcher, content_id: str, pdq: str, owner: str | None = None) -> dict:
    hashed = hash_given({"pdq": pdq, "pdq_quality": 100})
    request = ScreenRequest(hashed, content_id=content_id, submitted_by="t", owner_key_id=owner)
    return screen(db, matcher, settings, request)


def _bank_add(db, bank: str, pdq: str) -> int:
    with db.session() as session:
        (entry,) = add_entries(
            session, get_bank(session, bank), [NewEntry.validated({"pdq": pdq})], "test"
        )
        return entry.id


def test_allowed_copies_are_taken_down_or_held_by_bank_policy(db, settings) -> None:
    matcher = Matcher()
    with db.session() as session:
        create_bank(session, "terror", kind="block", labels=["terrorism"])
        create_bank(session, "review-me", kind="hold", labels=["hate"])
    original, other, unrelated = _pdq(1), _pdq(2), _pdq(3)
    assert _screen(db, settings, matcher, "up-1", _near(original, 6))["decision"] == "allow"
    assert _screen(db, settings, matcher, "up-2", other)["decision"] == "allow"
    assert _screen(db, settings, matcher, "up-3", unrelated)["decision"] == "allow"

    block_entry = _bank_add(db, "terror", original)
    hold_entry = _bank_add(db, "review-me", _near(other, 3))
    run = scan_feed(db, matcher, settings)
    assert run is not None and (run.entries, run.hits, run.contents_scanned) == (2, 2, 3)
    with db.session() as session:
        hits = {hit.content_id: hit for hit in list_hits(session, run.id)}
    assert set(hits) == {"up-1", "up-2"}
    assert (hits["up-1"].outcome, hits["up-1"].entries) == ("block", [block_entry])
    assert (hits["up-2"].outcome, hits["up-2"].entries) == ("hold", [hold_entry])

    # The platform now gets the new decision for a repeat of the same upload.
    again = _screen(db, settings, matcher, "up-1", _near(original, 6))
    assert again["decision"] == "block" and again["reasons"][0]["kind"] == "retroscan"
    assert _screen(db, settings, matcher, "up-3", unrelated)["decision"] == "allow"
    with db.session() as session:  # the held copy went to the review queue
        assert session.scalar(select(func.count()).select_from(ReviewCase)) == 1
    # Only new entries are scanned: nothing new, no run; a later entry, a new run.
    assert scan_feed(db, matcher, settings) is None
    _bank_add(db, "terror", unrelated)
    run = scan_feed(db, matcher, settings)
    assert (run.entries, run.hits) == (1, 1)


def test_allow_list_and_already_restricted_content_are_left_alone(db, settings) -> None:
    matcher = Matcher()
    with db.session() as session:
        create_bank(session, "terror", kind="block", labels=["terrorism"])
        create_bank(session, "known-good", kind="allow")
    safe, held = _pdq(10), _pdq(11)
    _bank_add(db, "known-good", safe)
    assert _screen(db, settings, matcher, "safe", safe)["decision"] == "allow"
    _bank_add(db, "terror", held)
    assert _screen(db, settings, matcher, "blocked", held)["decision"] == "block"
    _bank_add(db, "terror", _near(safe, 2))
    _bank_add(db, "terror", _near(held, 2))
    assert scan_feed(db, matcher, settings).hits == 0
    # An on-demand scan of a whole bank finds nothing new either.
    assert scan_bank(db, matcher, settings, "terror").hits == 0


def test_the_platform_is_notified_through_its_signed_webhook(db, settings, receiver) -> None:
    matcher = Matcher()
    with db.session() as session:
        key_row, _key = create_api_key(session, Role.integrator, "platform")
        _endpoint, secret = set_endpoint(session, key_row.key_id, receiver)
        create_bank(session, "terror", kind="block", labels=["terrorism"])
    image = _pdq(20)
    first = _screen(db, settings, matcher, "post-9", image, owner=key_row.key_id)
    assert first["decision"] == "allow"
    _bank_add(db, "terror", _near(image, 4))
    worker = Worker(db, context={"settings": settings, "matcher": matcher})
    scan_feed(db, matcher, settings)
    deadline = time.monotonic() + 20
    while not WebhookReceiver.received:
        assert time.monotonic() < deadline, "no webhook delivery"
        worker.run_one() or time.sleep(0.05)
    headers, body = WebhookReceiver.received[0]
    assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    event = json.loads(body)
    assert event["event"] == "decision" and event["data"]["content_id"] == "post-9"
    assert event["data"]["decision"] == "block"
    assert event["data"]["retroscan"]["action"] == "take_down"
    assert event["data"]["retroscan"]["previous_decision"] == first["id"]


# Run in a fresh process, so that what the scan leaves behind is all that grows.
MEMORY_PROBE = """
import sys
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.memory import release_free_memory
from prescreen.matching.service import Matcher
from prescreen.screening.retroscan import scan_bank

def status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status")

settings = Settings(database_url=sys.argv[1], _env_file=None)
db, matcher = Database(settings.database_url), Matcher()
scan_bank(db, matcher, settings, "warm")  # the code paths and compiled kernels, loaded once
release_free_memory()
before = status_mb("VmRSS")
with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")  # the peak (VmHWM) starts again from here
run = scan_bank(db, matcher, settings, "big")
release_free_memory()
print(run.signals, round(status_mb("VmHWM") - before, 1), round(status_mb("VmRSS") - before, 1))
"""


def test_a_scan_of_100k_new_entries_leaves_the_process_memory_as_it_found_it(
    sqlite_template, tmp_path
) -> None:
    """A worker retro-scans each bulk import, 100,000 entries a run. Held as Python rows, a
    run's new signals left tens of MB of the interpreter's arenas pinned in the worker that
    ran it, for good (30 MB in a server's worker), on top of the service's memory budget."""
    path = tmp_path / "prescreen.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    rng = random.Random(7)
    with db.session() as session:
        for name, count in (("warm", 1_000), ("big", 100_000)):
            bank = create_bank(session, name, kind="block", labels=["terrorism"])
            entries = [
                NewEntry(signals={"pdq": f"{rng.getrandbits(256):064x}"}) for _ in range(count)
            ]
            add_entries(session, bank, entries, "test", return_rows=False)
    db.dispose()
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, db.url], capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    signals, peak_mb, kept_mb = probe.stdout.split()
    assert int(signals) == 100_000
    # Measured: 32 MB at the peak and 3-4 MB kept; held as rows, 60 MB and 14 MB.
    assert float(peak_mb) < 45, f"the scan's memory peaked {peak_mb} MB above where it started"
    assert float(kept_mb) < 8, f"the scan left {kept_mb} MB more resident memory"


@pytest.fixture
def on_demand_client(settings, db) -> Iterator[TestClient]:
    """The service with the periodic feed scan off, so only the requested scan acts (else
    the feed scan, when its first run comes after the entry is added, takes the hit)."""
    on_demand = settings.model_copy(update={"retroscan_interval_seconds": 0})
    with TestClient(create_app(on_demand, db), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_lead_queues_a_bank_scan_over_the_api_and_reads_its_hits(
    on_demand_client, auth, db, settings
) -> None:
    client = on_demand_client
    matcher = Matcher()
    with db.session() as session:
        create_bank(session, "terror", kind="block", labels=["terrorism"])
        create_bank(session, "good", kind="allow")
    image = _pdq(30)
    assert _screen(db, settings, matcher, "old-post", image)["decision"] == "allow"
    _bank_add(db, "terror", _near(image, 5))

    assert (
        client.post(
            "/v1/retroscans", json={"bank": "terror"}, headers=auth("integrator")
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/v1/retroscans", json={"bank": "terror", "x": 1}, headers=auth("lead")
        ).status_code
        == 422
    )
    assert (
        client.post("/v1/retroscans", json={"bank": "nope"}, headers=auth("lead")).status_code
        == 404
    )
    assert (
        client.post("/v1/retroscans", json={"bank": "good"}, headers=auth("lead")).status_code
        == 422
    )
    queued = client.post("/v1/retroscans", json={"bank": "terror"}, headers=auth("lead"))
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 30
    while (job := client.get(queued.json()["status_url"], headers=auth("lead")).json())[
        "status"
    ] != "done":
        assert time.monotonic() < deadline and job["status"] != "dead", job
        time.sleep(0.1)
    run_id = job["result"]["run"]
    runs = client.get("/v1/retroscans", headers=auth("auditor")).json()["runs"]
    assert runs[0]["id"] == run_id and runs[0]["hits"] == 1 and runs[0]["bank"] == "terror"
    hits = client.get(f"/v1/retroscans/{run_id}/hits", headers=auth("moderator")).json()["hits"]
    assert [(h["content_id"], h["outcome"]) for h in hits] == [("old-post", "block")]
    assert client.get("/v1/retroscans/999/hits", headers=auth("lead")).status_code == 404
