"""PostgreSQL restarted under load: the server recovers by itself, requests during the outage
get a clear 503 (never a 500), and no request fails once the database is back.

Restarting the database disturbs everything else using it, so this runs only when
PRESCREEN_TEST_PG_RESTART=1 (CI sets it). The restart command defaults to the first cluster
`pg_lsclusters` lists; PRESCREEN_TEST_PG_RESTART_COMMAND overrides it."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import threading
import time

import httpx
import pytest
from sqlalchemy import select
from tests.scale.processes import Server, environment

from prescreen.screening.models import Decision

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("PRESCREEN_TEST_PG_RESTART") != "1",
        reason="set PRESCREEN_TEST_PG_RESTART=1 to restart PostgreSQL under load",
    ),
]
GRACE_SECONDS = 0.5  # from the restart command's return to the first request that must pass


def _restart_command() -> list[str]:
    if command := os.environ.get("PRESCREEN_TEST_PG_RESTART_COMMAND"):
        return shlex.split(command)
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    version, name = clusters.stdout.split()[:2]
    return ["pg_ctlcluster", version, name, "restart"]


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def test_the_service_recovers_by_itself_after_a_database_restart(db, keys, tmp_path) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL restart")
    server = Server(environment(db.url, tmp_path), tmp_path / "server")
    headers = {"Authorization": f"Bearer {keys['integrator']}"}
    results: list[tuple[float, float, int, str]] = []  # start, end, status, body
    stop = threading.Event()

    def load(thread: int) -> None:
        n = 0
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                n += 1
                content_id = f"t{thread}-{n}"
                body = {"hashes": {"pdq": _pdq(thread * 100_000 + n)}, "content_id": content_id}
                start = time.monotonic()
                try:
                    response = http.post(f"{server.url}/v1/screen", json=body, headers=headers)
                    status, text = response.status_code, response.text
                except httpx.TransportError as exc:
                    status, text = 0, repr(exc)
                results.append((start, time.monotonic(), status, text))
                time.sleep(0.02)

    try:
        server.wait_ready()
        threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        down = time.monotonic()
        subprocess.run(_restart_command(), check=True, timeout=120)
        back = time.monotonic()
        time.sleep(5.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
    finally:
        stop.set()
        server.stop()
    assert ready.status_code == 200
    statuses = {status for *_, status, _ in results}
    assert statuses <= {200, 503}, [r for r in results if r[2] not in (200, 503)][:3]
    after = [r for r in results if r[0] >= back + GRACE_SECONDS]
    assert len(after) > 20 and all(r[2] == 200 for r in after), [r for r in after if r[2] != 200]
    during = [r for r in results if r[1] >= down and r[0] < back + GRACE_SECONDS]
    unavailable = [r for r in during if r[2] == 503]
    assert all("database_unavailable" in r[3] for r in unavailable)
    accepted = {json.loads(r[3])["id"] for r in results if r[2] == 200}
    with db.session() as session:
        stored = set(session.scalars(select(Decision.id)))
    assert accepted <= stored, "an accepted decision was lost"
    print(
        f"restart took {back - down:.1f} s; {len(results)} requests, {len(accepted)} accepted, "
        f"{len(unavailable)} answered 503 during the outage"
    )
