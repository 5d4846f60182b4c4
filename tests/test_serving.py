"""The service around screening: background bank imports with progress, bulk-inserted rows that
read back like any other, settings and key changes that apply at once despite caching, and
`prescreen serve` keeping its workers up."""

from __future__ import annotations

import collections
import json
import mmap
import os
import select as io_select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import httpx
import psutil
import pytest
from sqlalchemy import select
from tests.media import encode, photo

from prescreen.banks import service as banks
from prescreen.banks.models import BankEntry
from prescreen.core.auth import ApiKey, revoke_api_key
from prescreen.core.db import utcnow
from prescreen.matching.service import Matcher

PDQ = "f" * 64


def _ndjson(count: int, planted: str | None = None) -> bytes:
    lines = [json.dumps({"format": "prescreen-bank/1"})]
    for i in range(count):
        value = planted if planted and i == count // 2 else f"{i:064x}"
        lines.append(json.dumps({"signals": {"pdq": value}, "labels": ["terrorism"]}))
    return ("\n".join(lines) + "\n").encode()


def _wait_job(client, auth, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth("lead")).json()
        if job["status"] in ("done", "dead"):
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not finish")


def test_background_import_reports_a_job_then_matches(client, auth) -> None:
    client.post("/v1/banks", json={"name": "gifct", "labels": ["terrorism"]}, headers=auth())
    queued = client.post(
        "/v1/banks/gifct/import?background=true",
        content=_ndjson(20_000, planted=PDQ),
        headers={**auth("lead"), "Content-Type": "application/x-ndjson"},
    )
    assert queued.status_code == 202, queued.text
    job = _wait_job(client, auth, queued.json()["job_id"])
    assert job["status"] == "done", job
    assert job["result"] == {"added": 20_000, "skipped": 0, "errors": []}
    found = client.post("/v1/lookup", json={"signals": {"pdq": PDQ}}, headers=auth("integrator"))
    assert [m["bank"] for m in found.json()["matches"]] == ["gifct"]


def test_background_import_with_a_bad_line_names_it_and_adds_nothing(client, auth) -> None:
    client.post("/v1/banks", json={"name": "gifct", "labels": ["terrorism"]}, headers=auth())
    body = _ndjson(100) + b'{"signals": {"pdq": "not-a-hash"}}\n'
    queued = client.post(
        "/v1/banks/gifct/import?background=true",
        content=body,
        headers={**auth("lead"), "Content-Type": "application/x-ndjson"},
    )
    job = _wait_job(client, auth, queued.json()["job_id"])
    assert job["status"] == "dead"
    assert "line 102" in job["error"] and "64 hex digits" in job["error"]
    listed = client.get("/v1/banks/gifct/entries", headers=auth()).json()
    assert listed["entries"] == []


def test_bulk_rows_read_back_like_orm_rows(db) -> None:
    """Entries written through the driver (executemany / COPY) have the same stored forms:
    labels as JSON, timestamps in UTC, and `disabled_until` compared as a time."""
    past, future = utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1)
    with db.session() as session:
        bank = banks.create_bank(session, "imported", labels=["terrorism"], actor="test")
        new = [
            banks.NewEntry.validated({"pdq": f"{i:064x}"}, labels=["terrorism", "isis"],
                                     enabled=False, disabled_until=until)
            for i, until in enumerate((past, future))
        ]  # fmt: skip
        rows = banks.add_entries(session, bank, new, added_by="test")
        assert [r.labels for r in rows] == [["terrorism", "isis"]] * 2
    with db.session(readonly=True) as session:
        stored = session.scalars(select(BankEntry).order_by(BankEntry.id)).all()
        now = utcnow()
        assert [e.is_active(now) for e in stored] == [True, False]
        assert all(e.created_at.tzinfo is not None and e.created_at <= now for e in stored)
        due = session.scalars(select(BankEntry.id).where(BankEntry.disabled_until <= now)).all()
        assert due == [stored[0].id]


def test_bank_setting_changes_apply_to_the_next_lookup(client, auth) -> None:
    client.post("/v1/banks", json={"name": "gifct", "labels": ["terrorism"]}, headers=auth())
    near = "0" * 63 + "f"  # 4 bits from the bank's hash
    client.post(
        "/v1/banks/gifct/entries", json={"signals": {"pdq": "0" * 64}}, headers=auth("lead")
    )

    def banks_matched() -> list[str]:
        found = client.post("/v1/lookup", json={"signals": {"pdq": near}}, headers=auth())
        return [m["bank"] for m in found.json()["matches"]]

    assert banks_matched() == ["gifct"]
    client.patch("/v1/banks/gifct", json={"pdq_threshold": 2}, headers=auth("lead"))
    assert banks_matched() == []
    client.patch("/v1/banks/gifct", json={"pdq_threshold": 31, "enabled": False}, headers=auth())
    assert banks_matched() == []
    client.patch("/v1/banks/gifct", json={"enabled": True}, headers=auth())
    assert banks_matched() == ["gifct"]


def test_a_revoked_key_is_refused_at_once(client, auth, db, keys) -> None:
    body = {"signals": {"md5": "0" * 32}}
    assert client.post("/v1/lookup", json=body, headers=auth("integrator")).status_code == 200
    with db.session() as session:
        key_id = keys["integrator"].split("_")[1]
        assert session.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) is not None
        revoke_api_key(session, key_id, actor="test")
    assert client.post("/v1/lookup", json=body, headers=auth("integrator")).status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_replaces_a_killed_worker(tmp_path) -> None:
    env = _server_env(tmp_path)
    with _served(env) as (server, url):
        workers = psutil.Process(server.pid).children()
        assert len(workers) == 2
        os.kill(workers[0].pid, signal.SIGKILL)
        killed = workers[0].pid
        _until(lambda: _replaced(server.pid, killed), 30, "a replacement worker")
        _until(lambda: _ready(url), 30, "the replacement to serve")
        answered = [httpx.get(f"{url}/healthz", timeout=5).status_code for _ in range(20)]
        assert answered == [200] * 20
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert (
            'prescreen_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
        )
    assert server.returncode == 0


def test_a_pool_of_keep_alive_connections_is_spread_over_the_workers(tmp_path) -> None:
    """An upload service opens its pool of connections at once and keeps them: each worker
    must get its share, or one core does all the screening while the other idles."""
    env = _server_env(tmp_path)
    port = _free_port()
    server = _serve(env, port)
    pool = []
    try:
        _until(lambda: _ready(f"http://127.0.0.1:{port}"), 60, "the server to start")
        pool = _open_at_once(("127.0.0.1", port), 8)
        for connection in pool:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: prescreen\r\n\r\n")
        for connection in pool:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        ours = {connection.getsockname()[1] for connection in pool}
        held = sorted(
            sum(1 for c in worker.net_connections("tcp") if c.raddr and c.raddr.port in ours)
            for worker in psutil.Process(server.pid).children()
        )
        assert held == [4, 4]
    finally:
        for connection in pool:
            connection.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0


def test_served_workers_hash_and_match_after_the_parent_gives_back_library_code(tmp_path) -> None:
    """`prescreen serve` imports and warms everything in its parent (the hashing and index
    kernels compiled, the OCR readers loaded), gives back the library code pages only it holds
    (LLVM's 55-70 MB, and about 40 MB of the other libraries' start-up code), and forks: the
    workers still hash an uploaded photo and search the bank."""
    env = _server_env(tmp_path)
    cli = [sys.executable, "-m", "prescreen.cli"]
    picture = photo(5, (1200, 900))
    (tmp_path / "known.jpg").write_bytes(encode(picture, "JPEG", quality=90))
    upload = encode(picture, "JPEG", quality=75)  # other bytes: only PDQ can match it
    for command in (
        ["bank", "create", "known", "--kind", "block"],
        ["bank", "add", "known", str(tmp_path / "known.jpg")],
    ):
        subprocess.run([*cli, *command], env=env, check=True, capture_output=True)
    auth = _integrator_auth(env)
    with _served(env) as (server, url):
        assert _private_mb(server.pid, "libllvmlite") < 4
        assert _private_mb(server.pid, ".so") < 8  # every library's code, LLVM's included
        for number in range(6):  # several, so that both workers take some
            answer = httpx.post(
                f"{url}/v1/screen", headers=auth, timeout=30,
                files={"file": ("a.jpg", upload, "image/jpeg")},
                data={"content_id": f"upload-{number}"},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["decision"] == "block"
            assert body["matches"][0]["signal_type"] == "pdq"


def test_a_worker_gives_back_the_memory_of_a_burst_once_quiet(tmp_path) -> None:
    """After a burst of 2 MP uploads a worker holds the buffers it freed (glibc keeps them for
    the next allocations); once no request has come for a second it hands them back, so an
    idle service is not sized by its last burst."""
    env = _server_env(tmp_path)
    auth = _integrator_auth(env)
    uploads = [encode(photo(seed, (1632, 1224)), "JPEG", quality=85) for seed in range(4)]
    with _served(env) as (server, url):
        workers = psutil.Process(server.pid).children()

        def screen(number: int) -> int:
            return httpx.post(
                f"{url}/v1/screen", headers=auth, timeout=60,
                files={"file": ("a.jpg", uploads[number % 4], "image/jpeg")},
                data={"content_id": f"burst-{number}"},
            ).status_code  # fmt: skip

        def held() -> float:
            return sum(_private_anon_mb(worker.pid) for worker in workers)

        with ThreadPoolExecutor(4) as pool:
            uploaded = [pool.submit(screen, number) for number in range(24)]
            busy = [held()]  # sampled throughout: on a loaded host a worker may trim in a pause
            while not all(future.done() for future in uploaded):
                busy.append(held())
                time.sleep(0.1)
            busy.append(held())
        assert {future.result() for future in uploaded} == {200}
        time.sleep(3)  # quiet for a second, then trimmed
        quiet = held()
        assert quiet < max(busy) - 4, (max(busy), quiet)


def test_a_worker_that_kept_memory_of_a_long_job_is_replaced_and_the_job_is_not_lost(
    tmp_path,
) -> None:
    """A retro-scan of many bank entries leaves memory behind in the worker that ran it. Past
    its limit (here any growth at all), that worker takes no further job and hands over to a
    fresh fork once idle: the scan it ran is complete, and the service answers throughout,
    every new connection included (clients here open one per request, as many do)."""
    env = {
        **_server_env(tmp_path),
        "PRESCREEN_WORKER_REFRESH_MB": "0.001",
        "PRESCREEN_RETROSCAN_INTERVAL_SECONDS": "0",  # this test asks for its scan itself
    }
    cli = [sys.executable, "-m", "prescreen.cli"]
    subprocess.run([*cli, "bank", "create", "big", "--kind", "block"], env=env, check=True)
    lines = tmp_path / "big.ndjson"
    hashes = os.urandom(32 * 200_000).hex()  # about 50 MB left behind
    rows = (json.dumps({"signals": {"pdq": hashes[i : i + 64]}}) for i in range(0, len(hashes), 64))
    lines.write_text("\n".join([json.dumps({"format": "prescreen-bank/1"}), *rows]) + "\n")
    subprocess.run([*cli, "bank", "import", "big", str(lines)], env=env, check=True)
    created = subprocess.run(
        [*cli, "apikey", "create", "--role", "lead", "--name", "lead"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    auth = {"authorization": f"Bearer {json.loads(created.stdout)['key']}"}
    with _served(env) as (server, url):
        started = {worker.pid for worker in psutil.Process(server.pid).children()}
        queued = httpx.post(f"{url}/v1/retroscans", json={"bank": "big"}, headers=auth, timeout=10)
        assert queued.status_code == 202, queued.text
        job_url = f"{url}{queued.json()['status_url']}"
        replaced = threading.Event()

        def keep_asking() -> list[int | str]:
            answers: list[int | str] = []
            while not replaced.is_set() or len(answers) < 20:
                try:
                    answers.append(httpx.get(f"{url}/healthz", timeout=10).status_code)
                except httpx.HTTPError as exc:  # a connection dropped in the handover
                    answers.append(type(exc).__name__)
            return answers

        with ThreadPoolExecutor(4) as pool:
            asking = [pool.submit(keep_asking) for _ in range(4)]
            try:
                _until(lambda: _fresh_workers(server.pid, started), 120, "a worker replaced")
                _until(lambda: _ready(url), 30, "the fresh worker to serve")
            finally:
                replaced.set()
            answered = [answer for future in asking for answer in future.result()]
        assert set(answered) == {200}, collections.Counter(answered)
        job = httpx.get(job_url, headers=auth, timeout=10).json()
        assert job["status"] == "done", job
        assert job["result"]["contents_scanned"] == 0 and job["attempts"] == 1, job
    assert server.returncode == 0


def _fresh_workers(parent: int, started: set[int]) -> bool:
    """Two workers, at least one forked since `started` was taken."""
    alive = {c.pid for c in psutil.Process(parent).children() if c.status() != "zombie"}
    return len(alive) == 2 and bool(alive - started)


@contextmanager
def _served(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """`prescreen serve` with two workers, ready; stopped afterwards."""
    port = _free_port()
    server = _serve(env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _ready(url), 60, "the server to start")
        yield server, url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _integrator_auth(env: dict[str, str]) -> dict[str, str]:
    created = subprocess.run(
        [sys.executable, "-m", "prescreen.cli", "apikey", "create", "--role", "integrator",
         "--name", "t"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {"authorization": f"Bearer {json.loads(created.stdout)['key']}"}


def _private_anon_mb(pid: int) -> float:
    """Private memory not backed by a file: the heap and anonymous mappings."""
    total = 0
    anonymous = True
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                anonymous = len(fields) < 6 or fields[5].startswith("[")
            elif anonymous and fields[0] in ("Private_Clean:", "Private_Dirty:"):
                total += int(fields[1])
    return total / 1024


def _server_env(tmp_path) -> dict[str, str]:
    env = {
        **os.environ,
        "PRESCREEN_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "PRESCREEN_DATA_DIR": str(tmp_path / "data"),
        "PRESCREEN_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _serve(env: dict[str, str], port: int) -> subprocess.Popen:
    """`prescreen serve` with two workers, as a user starts it."""
    command = [sys.executable, "-m", "prescreen.cli", "serve", "--port", str(port)]
    return subprocess.Popen([*command, "--workers", "2"], env=env, start_new_session=True)


def _open_at_once(address: tuple[str, int], count: int) -> list[socket.socket]:
    """`count` connections started together, as a client's connection pool starts them."""
    pool = [socket.socket() for _ in range(count)]
    for connection in pool:
        connection.setblocking(False)
        connection.connect_ex(address)
    for connection in pool:
        io_select.select([], [connection], [], 10)
        connection.setblocking(True)
    return pool


def _private_mb(pid: int, library: str) -> float:
    """Resident memory of `library`'s mappings that process `pid` alone holds (pages another
    process maps too, such as this test's own, are not the parent's to give back)."""
    maps = psutil.Process(pid).memory_maps(grouped=True)
    return sum(m.private_clean + m.private_dirty for m in maps if library in m.path) / 2**20


def _replaced(pid: int, killed: int) -> bool:
    alive = set()
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:  # the killed worker, reaped between the two calls
            continue
    return killed not in alive and len(alive) == 2


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _mapped(array) -> bool:
    """Whether `array`'s memory is a memory-mapped file (shared between processes)."""
    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_a_bulk_import_is_indexed_once_and_mapped_by_every_process(db, tmp_path) -> None:
    """Two matchers stand for two worker processes on one host: the first to see a large import
    builds the index and saves a snapshot; the other maps that snapshot instead of building its
    own copy. Both then match the new entries."""
    first, second = (Matcher(snapshot_dir=tmp_path / "index") for _ in range(2))
    with db.session(readonly=True) as session:
        first.rebuild(session)
        second.rebuild(session)
    with db.session() as session:
        bank = banks.create_bank(session, "bulk", labels=["terrorism"], actor="test")
        new = [banks.NewEntry.validated({"pdq": f"{i:064x}"}) for i in range(60_000)]
        new.append(banks.NewEntry.validated({"pdq": PDQ}))
        banks.add_entries(session, bank, new, added_by="test", return_rows=False)
    for matcher in (first, second):
        with db.session(readonly=True) as session:
            found = matcher.lookup(session, {"pdq": PDQ})
        assert [m.bank for m in found] == ["bulk"]
        main = matcher._indexes["pdq"].index._state.main
        assert _mapped(main.codes) and _mapped(main.perms)


def test_metrics_of_workers_skip_a_file_left_empty_by_a_killed_worker(tmp_path) -> None:
    """A worker killed between creating its metrics file and sizing it leaves the file empty;
    scraping the other workers' figures still works."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from prescreen.core.http import WorkerMetrics

    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("prescreen_test", "prescreen_test_total", ["route"], ["/healthz"], "a test")
    written.write_value(key, 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # the killed worker's
    registry = CollectorRegistry()
    WorkerMetrics(registry, path=str(tmp_path))
    assert 'prescreen_test_total{route="/healthz"} 3.0' in generate_latest(registry).decode()
