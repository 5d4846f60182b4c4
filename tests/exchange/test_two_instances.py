"""Two prescreen instances, each a real `prescreen serve` process with its own SQLite database,
on loopback: A shares a bank, B follows it through a proxy the test controls (to tamper with
pages and to slow them down), and everything is checked over HTTP."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from prescreen.banks import service as banks
from prescreen.core.auth import Role, create_api_key
from prescreen.core.db import Database
from prescreen.core.schema import upgrade
from prescreen.exchange.feedformat import raw_public_key

ENTRIES = 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One server process; `kill` is SIGKILL (no clean shutdown), `start` restarts it."""

    def __init__(self, name: str, root: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data = root / name
        self.url = url = f"sqlite:///{data / 'prescreen.db'}"
        db = Database(url)
        upgrade(db)
        with db.session() as session:
            self.admin = create_api_key(session, Role.admin, "admin")[1]
            self.peer_key = create_api_key(session, Role.integrator, "peer")[1]
        db.dispose()
        self.env = {
            **os.environ,
            "PRESCREEN_DATABASE_URL": url,
            "PRESCREEN_DATA_DIR": str(data),
            "PRESCREEN_PORT": str(self.port),
            "PRESCREEN_LOG_LEVEL": "WARNING",
            "PRESCREEN_JOB_LEASE_SECONDS": "2",
            "PRESCREEN_EXCHANGE_PULL_INTERVAL_SECONDS": "1",
            "PRESCREEN_EXCHANGE_MAX_BACKOFF_SECONDS": "1",
            "PRESCREEN_EXCHANGE_PAGE_SIZE": "20",
            "PRESCREEN_EXCHANGE_ALLOW_PRIVATE_PEERS": "true",
        }
        self.process: subprocess.Popen | None = None
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.admin}"}, timeout=30
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prescreen.cli", "serve"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process and self.process.poll() is None, self.process.stderr.read()
            time.sleep(0.1)
        pytest.fail(f"{self.base} did not become ready")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.http.close()

    def stored_entries(self, bank: str) -> int:
        """Entries in the database itself (while the process is down)."""
        db = Database(self.url)
        try:
            with db.session(readonly=True) as session:
                return len(banks.list_entries(session, banks.get_bank(session, bank), limit=10**6))
        finally:
            db.dispose()

    def entries(self, bank: str) -> list[dict]:
        response = self.http.get(f"/v1/banks/{bank}/entries", params={"limit": 1000})
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return response.json()["entries"]


class Proxy:
    """Forwards B's feed requests to A; `mode` may tamper with pages or slow them down."""

    def __init__(self, target: str) -> None:
        self.mode, self.target = "pass", target
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {"Authorization": self.headers.get("Authorization", "")}
                upstream = httpx.get(proxy.target + self.path, headers=headers, timeout=30)
                body = upstream.content
                if proxy.mode == "tamper" and upstream.status_code == 200:
                    page = upstream.json()
                    if page.get("items"):
                        page["items"][0]["body"]["labels"] = ["benign"]
                    body = json.dumps(page).encode()
                if proxy.mode == "slow":
                    time.sleep(0.15)
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[Instance, Instance, Proxy]]:
    a, b = Instance("a", tmp_path), Instance("b", tmp_path)
    proxy = Proxy(a.base)
    try:
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        yield a, b, proxy
    finally:
        for instance in (a, b):
            instance.stop()
        proxy.close()


def _rejections(b: Instance) -> list[dict]:
    return b.http.get("/v1/exchange/peers/a/rejections").json()["rejections"]


def _screen(instance: Instance, pdq: str, content_id: str) -> dict:
    response = instance.http.post(
        "/v1/screen", json={"hashes": {"pdq": pdq}, "content_id": content_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_b_follows_a(pair) -> None:
    a, b, proxy = pair
    hashes = [secrets.token_hex(32) for _ in range(ENTRIES)]
    assert a.http.post(
        "/v1/banks", json={"name": "terror", "labels": ["terrorism"], "shared": True}
    ).status_code == 201  # fmt: skip
    lines = [json.dumps({"signals": {"pdq": h}, "labels": ["terrorism"]}) for h in hashes]
    imported = a.http.post(
        "/v1/banks/terror/import",
        content="\n".join(lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.json()["added"] == ENTRIES, imported.text
    a_key = a.http.get("/v1/exchange/identity").json()["keys"][0]["public_key"]

    # A wrong key: every page is rejected, nothing is applied, and B says why.
    stranger = base64.b64encode(raw_public_key(Ed25519PrivateKey.generate())).decode()
    created = b.http.post(
        "/v1/exchange/peers",
        json={
            "name": "a",
            "base_url": proxy.base,
            "api_key": a.peer_key,
            "public_keys": [stranger],
            "follows": [{"remote": "terror", "local": "from-a"}],
            "trust": "act",
        },
    )
    assert created.status_code == 201, created.text
    eventually(lambda: any(r["reason"] == "unknown_key" for r in _rejections(b)), "key rejection")
    assert b.entries("from-a") == []

    # The right key, but a tampered page: rejected whole.
    proxy.mode = "tamper"
    assert b.http.patch("/v1/exchange/peers/a", json={"public_keys": [a_key]}).status_code == 200
    eventually(lambda: any(r["reason"] == "bad_signature" for r in _rejections(b)), "tampering")
    assert b.entries("from-a") == []
    assert b.http.get("/v1/exchange/peers/a").json()["cursors"].get("terror", 0) == 0

    # Genuine pages, slowly: B is killed mid-pull, restarted, and ends with exactly A's entries.
    proxy.mode = "slow"
    eventually(lambda: len(b.entries("from-a")) > 0, "the pull to start", timeout=30)
    b.kill()
    assert 0 < b.stored_entries("from-a") < ENTRIES  # it really was interrupted
    proxy.mode = "pass"
    b.start()
    b.wait_ready()
    eventually(lambda: len(b.entries("from-a")) == ENTRIES, "the pull to finish", timeout=60)
    copies = b.entries("from-a")
    assert sorted(e["signals"]["pdq"] for e in copies) == sorted(hashes)
    assert all(e["provenance"]["source"] == "peer:a" for e in copies)

    # A removes one entry and calls another a false positive: both reach B.
    a_entries = a.entries("terror")
    removed, wrong = a_entries[0], a_entries[1]
    assert a.http.delete(f"/v1/banks/terror/entries/{removed['id']}").status_code == 204
    opinion = a.http.post(
        "/v1/exchange/opinions",
        json={"bank": "terror", "entry": wrong["id"], "opinion": "false_positive"},
    )
    assert opinion.status_code == 201 and opinion.json()["published"], opinion.text

    def arrived() -> bool:
        by_hash = {e["signals"]["pdq"]: e for e in b.entries("from-a")}
        gone = removed["signals"]["pdq"] not in by_hash
        return gone and by_hash[wrong["signals"]["pdq"]]["enabled"] is False

    eventually(arrived, "the removal and the opinion")
    assert len(b.entries("from-a")) == ENTRIES - 1
    assert _screen(b, wrong["signals"]["pdq"], "fp-1")["decision"] == "allow"

    # Trust `act`: B blocks on A's entry, saying where it came from; trust `review`: held.
    kept = a_entries[2]["signals"]["pdq"]
    blocked = _screen(b, kept, "up-1")
    assert blocked["decision"] == "block"
    provenance = blocked["reasons"][0]["provenance"]
    assert provenance["peer"] == "a" and provenance["peer_bank"] == "terror"
    assert b.http.patch("/v1/exchange/peers/a", json={"trust": "review"}).status_code == 200
    held = _screen(b, kept, "up-2")
    assert held["decision"] == "hold"
    assert held["reasons"][0]["kind"] == "bank_match_held"
