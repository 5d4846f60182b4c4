"""Several real server and worker processes on one database: bank changes reach every
process through the change feed, retro-scans run once across processes, and killing a
process with `kill -9` under load loses no accepted decision and duplicates none."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import httpx
import pytest
from sqlalchemy import func, select
from tests.scale.processes import JobWorker, Server, environment, wait_for

from prescreen.audit.periodic import arm_all
from prescreen.banks.service import NewEntry, add_entries, create_bank, get_bank
from prescreen.core.config import Settings
from prescreen.screening.models import Content, Decision
from prescreen.screening.retroscan_models import RetroscanHit, RetroscanRun
from prescreen.screening.service import ScreenRequest, hash_given, screen

pytestmark = pytest.mark.slow
UPLOADS = 100
ENTRIES = 24


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def _screen_body(content_id: str, seed: int) -> dict:
    return {"hashes": {"pdq": _pdq(seed), "pdq_quality": 100}, "content_id": content_id}


def _postgresql_only(db) -> None:
    if db.engine.dialect.name == "sqlite":
        pytest.skip("several processes: the scale-out setup runs on PostgreSQL")


def test_two_servers_share_bank_changes_and_survive_a_kill_9_under_load(db, keys, tmp_path):
    """An entry added through one server is matched by the other within 5 s (removals too),
    and a retro-scan takes down a copy allowed earlier. Then, under load, one server is
    killed with kill -9: clients retry on the other with the same content_id, every upload is
    accepted, each is stored once, and every accepted decision is the stored one."""
    _postgresql_only(db)
    env = environment(db.url, tmp_path, retroscan_interval_seconds="1")
    servers = [Server(env, tmp_path / name) for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_ready()
        _change_feed_reaches_the_other_server(db, keys, *servers)
        accepted, accepted_before_kill = _load_and_kill(keys, servers)
    finally:
        for server in servers:
            server.stop()
    assert accepted_before_kill < UPLOADS / 2, "the kill came under load"
    assert len(accepted) == UPLOADS, "every upload is accepted (retried on the survivor)"
    with db.session() as session:
        rows = session.execute(
            select(Content.content_id, Decision.id)
            .join(Decision, Decision.content_pk == Content.id)
            .where(Content.content_id.like("load-%"))
        ).all()
    stored = {}
    for content_id, decision_id in rows:
        assert content_id not in stored, f"two decisions for {content_id}"
        stored[content_id] = decision_id
    assert stored == accepted, "an accepted decision is not the stored one"


def _change_feed_reaches_the_other_server(db, keys, a: Server, b: Server) -> None:
    lead = {"Authorization": f"Bearer {keys['lead']}"}
    platform = {"Authorization": f"Bearer {keys['integrator']}"}
    with httpx.Client(timeout=30) as http:
        assert http.post(f"{a.url}/v1/banks", json={"name": "terror"}, headers=lead).is_success
        old = _screen_body("old-1", 1)
        assert http.post(f"{b.url}/v1/screen", json=old, headers=platform).json()["decision"] == (
            "allow"
        )
        delays = []
        for seed in range(1, 6):
            added = http.post(
                f"{a.url}/v1/banks/terror/entries",
                json={"signals": {"pdq": _pdq(seed)}}, headers=lead,
            )  # fmt: skip
            assert added.status_code == 201, added.text
            start = time.monotonic()
            lookup = {"signals": {"pdq": _pdq(seed)}}
            wait_for(
                lambda lookup=lookup: http.post(
                    f"{b.url}/v1/lookup", json=lookup, headers=platform
                ).json()["matches"], 5, "the other server to match the new entry",
            )  # fmt: skip
            delays.append(time.monotonic() - start)
        print("change feed: matched by the other server after", [round(d * 1000) for d in delays])
        entry = added.json()["id"]
        gone = http.delete(f"{a.url}/v1/banks/terror/entries/{entry}", headers=lead)
        assert gone.status_code == 204
        lookup = {"signals": {"pdq": _pdq(5)}}
        assert not http.post(f"{b.url}/v1/lookup", json=lookup, headers=platform).json()["matches"]
        wait_for(
            lambda: http.post(f"{b.url}/v1/screen", json=old, headers=platform).json()["decision"]
            == "block", 20, "a retro-scan to take the allowed copy down", interval=0.3,
        )  # fmt: skip
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RetroscanHit)) == 1


def _load_and_kill(keys, servers: list[Server]) -> tuple[dict[str, str], int]:
    headers = {"Authorization": f"Bearer {keys['integrator']}"}
    accepted: dict[str, str] = {}
    lock, killed = threading.Lock(), threading.Event()

    def upload(n: int) -> None:
        content_id = f"load-{n}"
        with httpx.Client(timeout=30) as http:
            for server in (servers[n % 2], servers[1]):
                if killed.is_set() and server is servers[0]:
                    continue
                try:
                    body = _screen_body(content_id, 1000 + n)
                    response = http.post(f"{server.url}/v1/screen", json=body, headers=headers)
                except httpx.TransportError:
                    continue  # the killed server: retry on the other with the same content_id
                assert response.status_code == 200, response.text
                with lock:
                    accepted[content_id] = response.json()["id"]
                return

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(upload, n) for n in range(UPLOADS)]
        wait_for(lambda: len(accepted) >= UPLOADS // 4, 60, "load to build up")
        servers[0].kill()
        killed.set()
        accepted_before_kill = len(accepted)
        for future in futures:
            future.result()
    return accepted, accepted_before_kill


def test_retro_scans_run_once_across_workers_when_one_is_killed(db, tmp_path) -> None:
    """Periodic retro-scans on two worker processes, one killed with kill -9 half-way:
    every allowed copy is taken down exactly once, and no change is scanned twice."""
    _postgresql_only(db)
    settings = Settings(database_url=db.url, data_dir=tmp_path, retroscan_interval_seconds=0.3,
                        _env_file=None)  # fmt: skip
    env = environment(db.url, tmp_path, retroscan_interval_seconds="0.3", job_lease_seconds="2")
    from prescreen.matching.service import Matcher

    matcher = Matcher()
    with db.session() as session:
        create_bank(session, "terror", labels=["terrorism"])
    for n in range(ENTRIES):
        request = ScreenRequest(hash_given({"pdq": _pdq(n), "pdq_quality": 100}), f"up-{n}")
        assert screen(db, matcher, settings, request)["decision"] == "allow"
    arm_all(db, settings)
    workers = [JobWorker(env), JobWorker(env)]
    try:
        for n in range(ENTRIES):
            with db.session() as session:
                add_entries(session, get_bank(session, "terror"),
                            [NewEntry.validated({"pdq": _pdq(n)})], "test")  # fmt: skip
            if n == ENTRIES // 3:
                workers[0].kill()
            if n == 2 * ENTRIES // 3:
                workers.append(JobWorker(env))
            time.sleep(0.1)

        def hits() -> int:
            with db.session() as session:
                return session.scalar(select(func.count()).select_from(RetroscanHit))

        wait_for(lambda: hits() >= ENTRIES, 60, "every copy to be found", interval=0.2)
        time.sleep(1.0)  # room for a duplicate to show up
    finally:
        for worker in workers:
            worker.stop()
    with db.session() as session:
        assert hits() == ENTRIES
        per_content = session.execute(
            select(RetroscanHit.content_id, func.count()).group_by(RetroscanHit.content_id)
        ).all()
        assert all(count == 1 for _, count in per_content) and len(per_content) == ENTRIES
        runs = session.scalars(select(RetroscanRun).order_by(RetroscanRun.first_change)).all()
        assert sum(run.entries for run in runs) == ENTRIES
        for earlier, later in pairwise(runs):
            assert earlier.last_change < later.first_change, "a change was scanned twice"
        blocked = session.scalar(
            select(func.count()).select_from(Decision).where(Decision.outcome == "block")
        )
        assert blocked == ENTRIES
